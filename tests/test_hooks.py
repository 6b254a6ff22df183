"""One test per hook (`test_hook_<name>`), plus the datasette-style meta-tests."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dife_core import hookimpl, hookspecs
from dife_core.plugins import get_registry
from dife_core.types import Attack, AttackCard, Dataset, Interface, InterfaceCard, Metric, ModelLoader, Scanner, Trigger

from .plugin_fixtures import run_dife

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_"))


def _roundtrip(register_plugin, hook, kind, obj):
    class P:
        pass

    def impl(register):
        register(obj)

    setattr(P, hook, staticmethod(hookimpl(impl)))
    # pluggy inspects the signature: a staticmethod taking `register` is fine
    register_plugin(P(), f"test-{hook}")
    reg = get_registry()
    assert reg.get(kind, obj.name) is obj
    assert reg.owner(kind, obj.name) == f"test-{hook}"
    assert obj.name in reg.infos[f"test-{hook}"].provides[kind]


def test_hook_register_model_loaders(register_plugin):
    _roundtrip(register_plugin, "register_model_loaders", "model_loaders",
               ModelLoader(name="test-loader", description="d", load=lambda s, **k: None))


def test_hook_register_attacks(register_plugin):
    card = AttackCard(name="test-attack", title="T", route="data poisoning", modifies="both towers",
                      trigger_channel="image", native_protocol="zero-shot TS")
    _roundtrip(register_plugin, "register_attacks", "attacks",
               Attack(card=card, config=dict, build=lambda ctx: None))


def test_hook_register_triggers(register_plugin):
    _roundtrip(register_plugin, "register_triggers", "triggers",
               Trigger(name="test-trigger", channel="text", description="d",
                       make=lambda **p: (lambda xs: ["xbtd " + x for x in xs])))


def test_hook_register_interfaces(register_plugin):
    card = InterfaceCard(name="test-interface", title="T", readout="score", trigger_channels=["text"],
                         target_event="target wins", population="classification", reference=None,
                         metric="target-success")
    _roundtrip(register_plugin, "register_interfaces", "interfaces",
               Interface(card=card, evaluate=lambda ctx: None))


def test_hook_register_metrics(register_plugin):
    _roundtrip(register_plugin, "register_metrics", "metrics",
               Metric(name="test-metric", formula="1", compute=lambda: 1.0))


def test_hook_register_datasets(register_plugin):
    _roundtrip(register_plugin, "register_datasets", "datasets",
               Dataset(name="test-dataset", description="d", load=lambda **o: None))


def test_hook_register_scanners(register_plugin):
    _roundtrip(register_plugin, "register_scanners", "scanners",
               Scanner(name="test-scanner", channel="image", description="d", run=lambda ctx: []))


def test_hook_register_commands(tmp_path):
    from .plugin_fixtures import make_dist

    make_dist(tmp_path, "dife-hello", "dife_hello", """
        import click
        from dife_core import hookimpl
        @hookimpl
        def register_commands(cli):
            @cli.command("hello")
            @click.argument("who")
            def hello(who):
                click.echo(f"hello {who}")
    """)
    r = run_dife("hello", "auditor", pythonpath=[tmp_path])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hello auditor"


def test_registered_types_are_validated():
    with pytest.raises(ValueError, match="lower-case id"):
        Metric(name="Bad Name", formula="x", compute=lambda: 0)
    with pytest.raises(ValueError, match="readout"):
        InterfaceCard(name="x", title="x", readout="pixels", trigger_channels=[], target_event="",
                      population="classification", reference=None, metric="m")


# -- meta-tests ---------------------------------------------------------------

def test_every_hook_has_a_test():
    names = {n for n in globals() if n.startswith("test_hook_")}
    missing = [h for h in HOOKS if f"test_hook_{h}" not in names]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_every_hook_signature_is_in_the_hook_reference():
    doc = (ROOT / "docs" / "hooks.md").read_text()
    for h in HOOKS:
        sig = f"{h}{inspect.signature(getattr(hookspecs, h))}"
        sig = re.sub(r"\s+", " ", sig).replace("'", "").replace("\"", "")
        assert sig in doc, f"docs/hooks.md lacks the signature {sig!r}"


def test_every_hook_has_a_docstring_saying_when_and_what():
    for h in HOOKS:
        doc = getattr(hookspecs, h).__doc__ or ""
        assert "Called" in doc and ":param" in doc, h


def test_contrib_template_is_discovered_through_its_entry_point(tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-q", "--target", str(target),
                        str(ROOT / "contrib" / "dife-plugin-template")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import json

    r = run_dife("list-plugins", "--json", pythonpath=[target])
    assert r.returncode == 0, r.stderr
    data = {d["name"]: d for d in json.loads(r.stdout)}
    tpl = data["dife-plugin-template"]
    assert tpl["version"] == "0.1.0"
    assert tpl["error"] is None
    assert tpl["provides"] == {"metrics": ["template-top1-margin"]}
    assert tpl["hooks"] == ["register_metrics"]


def test_dife_attacks_json_shows_config_defaults():
    import json

    from click.testing import CliRunner

    from dife_core.building import config_fields
    from dife_core.cli import build_cli
    from dife_core.plugins import get_registry

    r = CliRunner().invoke(build_cli(), ["attacks", "--json"])
    assert r.exit_code == 0, r.output
    recs = {a["name"]: a for a in json.loads(r.output)}
    attack = get_registry().get("attacks", "contrastive-poisoning")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    cfg = recs["contrastive-poisoning"]["config"]
    assert set(cfg) == set(fields)
    assert cfg["steps"]["default"] == fields["steps"]["default"] and cfg["steps"]["doc"] == fields["steps"]["doc"]
