"""`dife build`, `dife demo` (attacks issue)."""
