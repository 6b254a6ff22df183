"""A minimal DIFE plugin."""

__version__ = "0.1.0"
