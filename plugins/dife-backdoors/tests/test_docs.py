"""docs/attacks.md, docs/attacks-suite.md and docs/triggers.md cannot drift from the code."""

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


ATTACK_DOCS = ("attacks.md", "attacks-suite.md")


def _backdoor_attacks() -> list:
    reg = get_registry()
    return sorted(n for n in reg.all("attacks") if reg.owner("attacks", n) == "dife-backdoors")


def _sections(text: str) -> list:
    """The ``## `` / ``### `` sections of a Markdown page, each with its body (up to the next such heading)."""
    return re.split(r"\n(?=###? )", "\n" + text)[1:]


# badtexttower's rows (and the example build spec naming it) are checked by dife-badtexttower's tests:
# this plugin's tests run without it installed.
@pytest.mark.parametrize("attack", ["contrastive-poisoning"])
def test_every_config_field_and_default_is_documented(attack):
    text = (DOCS / "attacks.md").read_text()
    cfg = get_registry().get("attacks", attack).config
    for f in config_fields(cfg):
        default = "world's " + f["name"] if f["default"] is None else _fmt(f["default"])
        default = f"`{default}`" if isinstance(f["default"], str) else default
        row = f"| `{f['name']}` | {default} |"
        assert row in text, f"docs/attacks.md lacks the row {row!r}"


def test_every_trigger_family_and_parameter_is_documented():
    from dife_backdoors.triggers import TRIGGERS

    text = (DOCS / "triggers.md").read_text()
    for trig in TRIGGERS:
        name = trig.name
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/triggers.md has no row for {name}"
        for param in trig.defaults:
            assert f"`{param}`" in row, f"docs/triggers.md: {name} row does not document {param}"


@pytest.mark.parametrize("attack", _backdoor_attacks())
def test_every_backdoor_attack_has_a_section_and_its_config_table(attack):
    """Each attack of dife-backdoors has a section naming its id in one of the attack
    docs, and that doc has a table row for every config key with its default (a
    ``None`` default, e.g. "world's target", is described in words and not checked)."""
    rows = []
    for f in config_fields(get_registry().get("attacks", attack).config):
        row = f"| `{f['name']}` |"
        if f["default"] is not None:
            default = _fmt(f["default"])
            row += f" `{default}` |" if isinstance(f["default"], str) else f" {default} |"
        rows.append(row)
    missing = {}
    for name in ATTACK_DOCS:
        text = (DOCS / name).read_text() if (DOCS / name).is_file() else ""
        if any(f"`{attack}`" in sec for sec in _sections(text)):
            lines = text.splitlines()
            missing[name] = [r for r in rows if not any(line.startswith(r) for line in lines)]
    assert missing, f"no ## or ### section of docs/{' or docs/'.join(ATTACK_DOCS)} mentions `{attack}`"
    best = min(missing, key=lambda name: len(missing[name]))
    assert not missing[best], f"docs/{best} ({attack}) lacks the rows {missing[best]}"


def test_the_suite_build_spec_is_valid():
    import tomllib

    text = (DOCS / "attacks-suite.md").read_text()
    block = re.search(r"```toml\n# suite.toml\n(.*?)```", text, re.S).group(1)
    spec = parse_build_spec(tomllib.loads(block))
    assert sorted(e.name for e in spec.attacks) == sorted(set(_backdoor_attacks()) - {"contrastive-poisoning"})
