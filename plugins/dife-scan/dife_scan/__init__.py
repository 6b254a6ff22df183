"""DIFE's built-in backdoor scanners (``dife scan``; docs/scan.md)."""

__version__ = "0.1.0"
