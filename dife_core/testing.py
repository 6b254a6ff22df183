"""Pytest fixtures for DIFE and its plugins (auto-loaded through ``pytest11``).

``register_plugin(obj, name)`` registers a plugin object for one test and
always unregisters it afterwards, so tests never leak plugins into each other.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def register_plugin():
    from dife_core.plugins import get_registry

    names = []

    def register(obj, name: str, version: str = "0"):
        get_registry().register_object(obj, name, version=version)
        names.append(name)
        return obj

    try:
        yield register
    finally:
        reg = get_registry()
        for n in reversed(names):
            reg.unregister_object(n)


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry rebuilt from scratch for this test (and dropped after it)."""
    from dife_core import plugins

    plugins.reset_registry()
    try:
        yield plugins.get_registry
    finally:
        plugins.reset_registry()
