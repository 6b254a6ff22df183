"""The embedded default world for DIFE: synthetic shapes with captions and a tiny CLIP recipe"""

__version__ = "0.1.0"
