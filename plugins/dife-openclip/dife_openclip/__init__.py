"""open_clip model loader for DIFE"""

__version__ = "0.1.0"
