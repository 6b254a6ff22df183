"""Built-in metrics (filled by the engine)."""
