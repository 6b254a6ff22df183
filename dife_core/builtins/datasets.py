"""Built-in datasets (filled by the engine)."""
