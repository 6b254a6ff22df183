"""DIFE hook implementations of dife-badtexttower."""

from dife_core import hookimpl  # noqa: F401
