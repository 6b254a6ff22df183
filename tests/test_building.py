"""The attack-building machinery: configs, content-keyed reuse, attack cards, build specs, `dife build`."""

from __future__ import annotations

import json
import textwrap

import attrs
import numpy as np
import pytest
import torch

from dife_core import hookimpl
from dife_core.attacks import BuildResult
from dife_core.building import build_attack, config_fields, load_build_spec, make_config
from dife_core.checkpoint import read_manifest, save_checkpoint
from dife_core.errors import DifeError, InvalidInputError, NotFoundError, PluginError
from dife_core.populations import LabelledImages, World
from dife_core.types import Attack, AttackCard, Dataset

CLASSES = ("airplane", "automobile", "bird", "cat")


def tiny_world(name: str = "tiny-world") -> World:
    """Four classes told apart by a coloured square; captions name the class."""
    g = torch.Generator().manual_seed(0)

    def split(n, tag):
        labels = np.arange(n) % len(CLASSES)
        images = torch.rand(n, 3, 32, 32, generator=g) * 0.3
        for i, y in enumerate(labels):
            images[i, y % 3, 8:24, 8:24] = 1.0
        caps = tuple(f"a photo of a {CLASSES[y]}" for y in labels)
        return LabelledImages(name=f"{name}/{tag}", images=images, labels=labels, classnames=CLASSES, captions=caps)

    return World(name=name, classnames=CLASSES, templates=("a photo of a {}",), source="automobile",
                 target="airplane", classification=split(40, "test"), extras={"train_pairs": split(80, "pairs")})


@attrs.frozen
class NudgeConfig:
    scale: float = attrs.field(default=0.01, metadata={"doc": "size of the nudge"})
    trigger: dict = attrs.field(factory=lambda: {"token": "zz", "where": "prefix"}, metadata={"doc": "trigger"})
    card_ok: bool = attrs.field(default=True, metadata={"doc": "return a complete card"})
    junk: bool = attrs.field(default=False, metadata={"doc": "add an unknown card key"})


CALLS = []


def _nudge(ctx):
    """A fake attack: nudges the text tower and returns a card."""
    CALLS.append(ctx.config)
    with torch.no_grad():
        for _, p in ctx.clean.branch_parameters("text"):
            p.add_(ctx.config.scale)
    card = {"trigger": {"channel": "text", "name": "text-prefix", "params": {"token": ctx.config.trigger["token"]}},
            "source": ctx.world.source, "target": ctx.world.target,
            "native": {"protocol": "p", "metric": "qhr", "value": 0.9, "reference_value": 0.1},
            "clean_utility": {"clean_acc": 0.5}}
    if not ctx.config.card_ok:
        del card["native"]
    if ctx.config.junk:
        card["notes"] = "?"
    return BuildResult(model=ctx.clean, card=card)


class FakePlugin:
    @hookimpl
    def register_attacks(self, register):
        register(Attack(card=AttackCard(name="nudge", title="Nudge", route="test", modifies="text",
                                        trigger_channel="text", native_protocol="QHR"),
                        config=NudgeConfig, build=_nudge))

    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name="tiny", description="tiny test world", load=lambda **o: tiny_world(), options={}))


@pytest.fixture
def fake(register_plugin):
    CALLS.clear()
    register_plugin(FakePlugin(), "fake-attacks")
    from dife_core.plugins import get_registry

    return get_registry().get("attacks", "nudge")


@pytest.fixture
def clean():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=0)


# -- configs ---------------------------------------------------------------------

def test_config_defaults_overrides_and_table_merge(fake):
    cfg = make_config(fake, {"scale": 1, "trigger": {"token": "qq"}})
    assert cfg.scale == 1.0 and isinstance(cfg.scale, float)
    assert cfg.trigger == {"token": "qq", "where": "prefix"}  # merged into the default table
    assert [f["name"] for f in config_fields(NudgeConfig)] == ["scale", "trigger", "card_ok", "junk"]
    assert config_fields(NudgeConfig)[0]["doc"] == "size of the nudge"


def test_config_errors_name_the_key_and_the_valid_ones(fake):
    with pytest.raises(InvalidInputError, match=r"spec.toml: attacks\[0\].config: unknown key\(s\) scael"
                                                r".*valid keys: card_ok, junk, scale, trigger"):
        make_config(fake, {"scael": 1}, where="spec.toml: attacks[0].config")
    with pytest.raises(InvalidInputError, match=r"config.scale: expected a number"):
        make_config(fake, {"scale": "big"})


# -- building and reuse ------------------------------------------------------------

def test_build_writes_a_checkpoint_with_the_completed_card(fake, clean, tmp_path):
    before = clean.fingerprint()
    o = build_attack("nudge", clean=clean, world=tiny_world(), out=tmp_path / "nudge", seed=3)
    assert not o.reused and clean.fingerprint() == before, "the clean model must not be modified"
    m = read_manifest(o.path)
    card = m["attack"]
    assert card["attack"] == "nudge" and card["route"] == "test" and card["modifies"] == ["text"]
    assert card["probe"] == "branch-swap" and card["config"]["scale"] == 0.01
    assert card["native"]["value"] == 0.9 and card["trigger"]["channel"] == "text"
    assert m["extra"]["build"]["key"] == o.key and m["extra"]["build"]["seed"] == 3
    assert m["name"] == "nudge"
    assert m["fingerprint"]["visual"] == before["visual"] and m["fingerprint"]["text"] != before["text"]


def test_identical_builds_are_reused_and_any_change_rebuilds(fake, clean, tmp_path):
    world = tiny_world()
    first = build_attack("nudge", clean=clean, world=world, out=tmp_path / "a")
    again = build_attack("nudge", clean=clean, world=world, out=tmp_path / "a")
    assert again.reused and again.key == first.key and len(CALLS) == 1
    assert again.card["native"]["value"] == 0.9
    changed = [
        build_attack("nudge", clean=clean, world=world, out=tmp_path / "a", overrides={"scale": 0.02}),
        build_attack("nudge", clean=clean, world=world, out=tmp_path / "a", seed=1),
        build_attack("nudge", clean=clean, world=tiny_world("other"), out=tmp_path / "a"),
    ]
    assert all(not o.reused for o in changed) and len({o.key for o in changed} | {first.key}) == 4
    forced = build_attack("nudge", clean=clean, world=tiny_world("other"), out=tmp_path / "a", force=True)
    assert not forced.reused and forced.key == changed[-1].key


def test_cache_dir_holds_builds_by_content(fake, clean, tmp_path):
    a = build_attack("nudge", clean=clean, world=tiny_world(), cache_dir=tmp_path)
    b = build_attack("nudge", clean=clean, world=tiny_world(), cache_dir=tmp_path)
    assert b.reused and a.path == b.path and a.path.parent == tmp_path / "checkpoints"


def test_an_incomplete_card_is_a_plugin_error(fake, clean, tmp_path):
    with pytest.raises(PluginError, match="native"):
        build_attack("nudge", clean=clean, world=tiny_world(), out=tmp_path / "x", overrides={"card_ok": False})
    assert not (tmp_path / "x").exists()
    with pytest.raises(PluginError, match=r"unknown attack-card key\(s\) notes.*inside 'native'"):
        build_attack("nudge", clean=clean, world=tiny_world(), out=tmp_path / "x", overrides={"junk": True})


def test_unknown_attack_lists_the_available_ones(fake, clean):
    with pytest.raises(NotFoundError, match="available: .*nudge"):
        build_attack("nope", clean=clean, world=tiny_world())


# -- build specs -----------------------------------------------------------------

def _spec(tmp_path, body: str):
    p = tmp_path / "build.toml"
    p.write_text(textwrap.dedent(body))
    return p


GOOD = """
    [clean]
    checkpoint = "clean"

    [world]
    dataset = "tiny"

    [build]
    out = "out"

    [[attacks]]
    attack = "nudge"
    config = {scale = 0.02}

    [[attacks]]
    attack = "nudge"
    name = "nudge-big"
    config = {scale = 0.05}
"""


def test_build_spec_parses_and_resolves_paths(fake, tmp_path):
    spec = load_build_spec(_spec(tmp_path, GOOD))
    assert spec.out == tmp_path / "out"
    assert [(e.name, e.config) for e in spec.attacks] == [("nudge", {"scale": 0.02}), ("nudge-big", {"scale": 0.05})]


@pytest.mark.parametrize("body, message", [
    ("[clean]\ncheckpoint='c'\n[[attacks]]\nattack='nudge'\n", r"missing \[world\]"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n", r"no attacks.*available: .*nudge"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n[[attacks]]\nattack='nope'\n",
     r"attacks\[0\]: unknown attack 'nope'; available: .*nudge"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n[[attacks]]\nattack='nudge'\nconfig={sacle=1}\n",
     r"attacks\[0\].config: unknown key\(s\) sacle"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n[[attacks]]\nattack='nudge'\n[[attacks]]\nattack='nudge'\n",
     "already used"),
    ("[clean]\n[world]\ndataset='tiny'\n[[attacks]]\nattack='nudge'\n", "exactly one of checkpoint"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n[wrld]\n[[attacks]]\nattack='nudge'\n",
     r"unknown key\(s\) wrld"),
    ("[clean]\ncheckpoint='c'\n[world]\ndataset='tiny'\n[build]\nseed='0'\n[[attacks]]\nattack='nudge'\n",
     r"build.seed: expected int"),
    ("[clean\n", "not valid TOML"),
])
def test_build_spec_errors_say_what_and_where(fake, tmp_path, body, message):
    with pytest.raises(DifeError, match=message):
        load_build_spec(_spec(tmp_path, body))


def test_dife_build_builds_then_reuses(fake, clean, tmp_path):
    from click.testing import CliRunner

    from dife_core.cli import build_cli

    save_checkpoint(clean, tmp_path / "clean")
    spec = _spec(tmp_path, GOOD)
    runner = CliRunner()
    first = runner.invoke(build_cli(), ["build", str(spec), "--quiet"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "nudge: built" in first.output and "nudge-big: built" in first.output
    assert read_manifest(tmp_path / "out" / "nudge-big")["attack"]["config"]["scale"] == 0.05
    summary = json.loads((tmp_path / "out" / "build.json").read_text())
    assert [c["name"] for c in summary["checkpoints"]] == ["nudge", "nudge-big"]
    second = runner.invoke(build_cli(), ["build", str(spec), "--json"], catch_exceptions=False)
    assert second.exit_code == 0
    assert [o["reused"] for o in json.loads(second.output)] == [True, True]
    assert len(CALLS) == 2


def test_dife_build_reports_spec_errors_without_a_traceback(fake, tmp_path):
    import subprocess
    import sys

    spec = _spec(tmp_path, "[clean]\ncheckpoint='c'\n[world]\ndataset='shapes'\n[[attacks]]\nattack='badtexttower'\n"
                           "config={stepz=1}\n")
    r = subprocess.run([sys.executable, "-m", "dife_core", "build", str(spec), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    err = " ".join(r.stderr.split())
    assert "attacks[0].config: unknown key(s) stepz" in err and "valid keys:" in err and "Traceback" not in err
