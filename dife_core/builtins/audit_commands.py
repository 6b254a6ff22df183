"""`dife audit`, `dife report`, `dife validate` (engine issue)."""
