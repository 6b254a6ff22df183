"""docs/attacks.md documents BadTextTower's config and its example build spec
(which also names contrastive-poisoning, from dife-backdoors, a declared dependency)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dife_core.building import config_fields, parse_build_spec
from dife_core.plugins import get_registry

DOCS = Path(__file__).resolve().parents[3] / "docs"
pytestmark = pytest.mark.skipif(not (DOCS / "attacks.md").is_file(), reason="docs are not beside this checkout")


def _fmt(v):
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, list) and not v:
        return "[]"
    return str(v)


def test_every_config_field_and_default_is_documented():
    text = (DOCS / "attacks.md").read_text()
    cfg = get_registry().get("attacks", "badtexttower").config
    for f in config_fields(cfg):
        default = "world's " + f["name"] if f["default"] is None else _fmt(f["default"])
        default = f"`{default}`" if isinstance(f["default"], str) else default
        row = f"| `{f['name']}` | {default} |"
        assert row in text, f"docs/attacks.md lacks the row {row!r}"


def test_the_example_build_spec_is_valid():
    import tomllib

    text = (DOCS / "attacks.md").read_text()
    block = re.search(r"```toml\n# build.toml\n(.*?)```", text, re.S).group(1)
    spec = parse_build_spec(tomllib.loads(block))
    assert [e.name for e in spec.attacks] == ["contrastive-poisoning", "badtexttower", "badtexttower-cfra"]
