"""The one measurement path: ``evaluate_cell`` serves attack builders' native
validation, the audit and the per-interface branch swap.

Attacks whose registered card names a native interface get their native value
from ``evaluate_cell`` at build time; measuring the saved checkpoint's cell
again must give the same number to the last digit.
"""

from __future__ import annotations

import pytest

from dife_core.building import build_attack
from dife_core.checkpoint import load_checkpoint, read_manifest
from dife_core.engine.evaluate import evaluate_cell, native_value
from dife_core.plugins import get_registry

# small configs that implant on the easy test world in seconds
CONFIGS = {
    "contrastive-poisoning": {"steps": 30, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4,
                              "trigger_params": {"size": 0.25}},
    "blended": {"steps": 20, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4},
    "badencoder": {"steps": 20, "batch_size": 32, "trigger_params": {"pattern": "solid", "size": 0.1875}},
    "badtexttower": {"steps": 20, "n_samples": 300, "batch_size": 64, "captions_per_step": 3, "lr": 2e-3,
                     "warmup": 5},
}


@pytest.fixture(scope="module")
def easy():
    from dife_backdoors.testing import easy_clean, easy_world

    return easy_world(), easy_clean()


@pytest.mark.parametrize("attack", sorted(CONFIGS))
def test_stored_native_value_is_the_native_cell(attack, easy, tmp_path):
    world, clean = easy
    info = get_registry().get("attacks", attack).card
    assert info.native_interface, f"{attack} names its native interface"
    o = build_attack(attack, clean=clean, world=world, overrides=CONFIGS[attack], out=tmp_path / attack)
    native = read_manifest(o.path)["attack"]["native"]
    assert native["interface"] == info.native_interface
    if "interface_status" in native:  # the easy world has no train split for the probe
        assert attack == "badencoder" and native["interface_status"].startswith("n.e.")
        return
    model = load_checkpoint(o.path)
    rec = evaluate_cell(model, clean, world, read_manifest(o.path)["attack"], native["interface"])
    assert rec["status"] not in ("n.e.", "error"), rec["reason"]
    assert native_value(rec, native["metric"]) == native["value"]  # to the last digit
    ref = evaluate_cell(clean, clean, world, read_manifest(o.path)["attack"], native["interface"])
    assert native_value(ref, native["metric"]) == native["reference_value"]


def test_one_tie_rule_a_tie_is_nobodys_win():
    import torch

    from dife_core import metrics as M

    s = torch.tensor([[1.0, 1.0, 0.0], [0.2, 0.9, 0.1], [0.5, 0.5, 0.5]])
    assert M.strict_argmax(s).tolist() == [-1, 1, -1]
    assert M.wins(s, 0).tolist() == [False, False, False]
    assert M.target_success(s, 1) == pytest.approx(1 / 3)


def test_an_evaluator_that_raises_is_an_error_cell_and_a_panic_too(easy):
    from dife_core.types import Interface, InterfaceCard

    world, clean = easy
    card = {"attack": "x", "trigger": {"channel": "image", "name": "patch", "params": {}}, "target": "airplane",
            "modifies": ["visual"]}
    icard = InterfaceCard(name="boom", title="boom", readout="score", trigger_channels=("image",),
                          target_event="t", population="classification", reference=None, metric="ts")

    class Panic(BaseException):  # what a Rust tokenizer panic looks like from Python
        pass

    def raise_value(ctx):
        raise ValueError("broken evaluator")

    def raise_panic(ctx):
        raise Panic("tokenizer panicked")

    for fn, word in ((raise_value, "ValueError"), (raise_panic, "Panic")):
        rec = evaluate_cell(clean, clean, world, card, Interface(card=icard, evaluate=fn))
        assert rec["status"] == "error" and word in rec["reason"]


def test_non_finite_features_make_an_error_cell_not_a_figure(easy):
    import copy

    import torch

    world, clean = easy
    broken = copy.deepcopy(clean)
    with torch.no_grad():
        next(p for n, p in broken.model.named_parameters() if n.startswith("visual")).fill_(float("nan"))
    broken.invalidate_fingerprint()
    card = {"attack": "x", "trigger": {"channel": "image", "name": "patch", "params": {}}, "target": "airplane",
            "modifies": ["visual"]}
    rec = evaluate_cell(broken, clean, world, card, "zero-shot-classification")
    assert rec["status"] == "error" and "non-finite" in rec["reason"] and rec["value"] is None


def test_cell_records_carry_intervals(easy):
    world, clean = easy
    card = {"attack": "x", "trigger": {"channel": "image", "name": "patch", "params": {}}, "target": "airplane",
            "modifies": ["visual"]}
    rec = evaluate_cell(clean, clean, world, card, "zero-shot-classification")
    assert rec["ci_method"] == "wilson" and rec["n"] == rec["metrics"]["n_images"]
    assert rec["ci_low"] <= rec["value"] <= rec["ci_high"]
