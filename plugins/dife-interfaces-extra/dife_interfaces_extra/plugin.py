"""DIFE hook implementations of dife-interfaces-extra."""

from dife_core import hookimpl  # noqa: F401
