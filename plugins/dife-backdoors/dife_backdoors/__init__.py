"""Existing CLIP backdoors and their trigger channels for DIFE"""

__version__ = "0.1.0"
