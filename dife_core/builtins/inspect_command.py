"""`dife inspect` (loaders issue)."""
