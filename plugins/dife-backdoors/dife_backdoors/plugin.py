"""DIFE hook implementations of dife-backdoors."""

from dife_core import hookimpl  # noqa: F401
