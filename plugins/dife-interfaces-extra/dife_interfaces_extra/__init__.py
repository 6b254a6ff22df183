"""Deployment interfaces beyond the paper's, for DIFE"""

__version__ = "0.1.0"
