"""DIFE hook implementations of dife-shapes."""

from dife_core import hookimpl  # noqa: F401
