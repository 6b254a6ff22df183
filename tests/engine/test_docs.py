"""The engine docs are checked against the code, so they cannot drift."""

import re
import tomllib
from pathlib import Path

from dife_core.builtins.interfaces import BUILTIN_INTERFACES
from dife_core.engine import AuditSpec
from dife_core.engine.spec import FootprintParams, Thresholds

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(path: Path, lang: str) -> list:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def test_spec_example_is_a_valid_spec_with_the_default_thresholds():
    (example,) = _blocks(DOCS / "spec.md", "toml")
    data = tomllib.loads(example)
    spec = AuditSpec.from_dict(data)
    t = Thresholds()
    assert (spec.thresholds.exposed, spec.thresholds.exposed_delta, spec.thresholds.negative_delta) == \
        (t.exposed, t.exposed_delta, t.negative_delta)
    assert spec.footprint == FootprintParams()
    assert {c.name for c in spec.checkpoints} == {"badtexttower", "suspect"}


def test_every_builtin_interface_has_its_card_documented():
    from dife_core.plugins import get_registry

    text = (DOCS / "interfaces.md").read_text()
    reg = get_registry().all("interfaces")
    for name in BUILTIN_INTERFACES:
        assert f"## {name}\n" in text, name
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"`{reg[name].card.metric}`" in section, name


def test_every_builtin_metric_is_documented():
    from dife_core.metrics import CATALOGUE

    text = (DOCS / "metrics.md").read_text()
    for name in CATALOGUE:
        assert f"`{name}`" in text, name


def test_interface_plugin_example_runs(tmp_path, hand, register_plugin):
    from dife_core.engine import run_audit

    from .handmade import spec_dict

    (code,) = _blocks(DOCS / "interfaces.md", "python")
    ns: dict = {}
    exec(compile(code, "docs/interfaces.md", "exec"), ns)

    class Plugin:
        register_interfaces = staticmethod(ns["register_interfaces"])

    register_plugin(Plugin(), "docs-example")
    res = run_audit(spec_dict(interfaces=["my-interface"]), tmp_path, progress=False)
    cells = {c["checkpoint"]: c for c in res["cells"]}
    assert cells["visual"]["status"] == "exposed" and cells["clean@visual"]["status"] == "weak"


def test_dife_interfaces_lists_the_eight_builtin_cards():
    import json

    from click.testing import CliRunner

    from dife_core.cli import build_cli

    r = CliRunner().invoke(build_cli(), ["interfaces", "--json"])
    assert r.exit_code == 0, r.output
    cards = {c["name"]: c for c in json.loads(r.output)}
    assert set(BUILTIN_INTERFACES) <= set(cards)
    for name in BUILTIN_INTERFACES:
        c = cards[name]
        assert c["plugin"] == "dife_core.builtins.interfaces"
        assert c["readout"] and c["trigger_channels"] and c["target_event"] and c["metric"]
