"""BadTextTower: a text-tower-only CLIP backdoor, for DIFE"""

__version__ = "0.1.0"
