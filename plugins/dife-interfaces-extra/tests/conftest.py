"""Fixtures: the non-saturated hand-made world (``softworld.py``), registered per test."""

import importlib.util
import sys
from pathlib import Path

import pytest


def _helper(stem: str):
    # plugin test folders are not packages (import-mode importlib): load a helper by path, once
    name = f"dife_interfaces_extra_tests_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{stem}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture
def soft(register_plugin):
    """The soft world's loader, dataset and triggers, registered for one test; returns the module."""
    sw = _helper("softworld")
    sw.CALLS.clear()
    register_plugin(sw.SoftPlugin(), "soft-test")
    return sw


@pytest.fixture
def world(soft):
    return soft.make_world()


@pytest.fixture
def models(soft):
    return {k: soft.SoftEncoder(k) for k in ("clean", "visual", "textual")}


@pytest.fixture
def oracle():
    """Plain-Python oracles of the five definitions (``oracle.py``)."""
    return _helper("oracle")
