"""DIFE hook implementations of dife-openclip."""

from dife_core import hookimpl  # noqa: F401
