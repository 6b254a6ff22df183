"""Built-in interfaces (filled by the engine)."""
