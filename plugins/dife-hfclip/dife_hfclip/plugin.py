"""DIFE hook implementations of dife-hfclip."""

from dife_core import hookimpl  # noqa: F401
