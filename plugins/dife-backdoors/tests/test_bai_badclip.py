"""Bai-BadCLIP: frozen towers, a shipped prompt-tuned classifier, component repair in the audit."""

import pytest
import torch

from dife_core import hookimpl
from dife_core.building import build_attack, config_fields
from dife_core.checkpoint import load_artifacts, load_checkpoint
from dife_core.plugins import get_registry
from dife_core.types import Dataset

FAST = {"steps": 100, "shots": 16, "batch_size": 16, "eps": 0.1, "trigger_grid": 16, "lr": 5e-3}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from dife_backdoors.testing import easy_clean, easy_world

    out = tmp_path_factory.mktemp("bai") / "bai-badclip"
    return build_attack("bai-badclip", clean=easy_clean(), world=easy_world(), out=out, overrides=FAST)


def test_registered_as_a_mechanism_attack_with_probe_and_scorer():
    attack = get_registry().get("attacks", "bai-badclip")
    assert (attack.card.trigger_channel, attack.card.probe, attack.card.modifies) == (
        "mechanism", "component-repair", "prompt learner")
    assert attack.scorer is not None and attack.repair_probe is not None
    assert all(f["doc"] for f in config_fields(attack.config))


def test_towers_stay_frozen_and_the_prompt_learner_ships_as_artifacts(built, clean):
    card, native = built.card, built.card["native"]
    model = load_checkpoint(built.path)
    assert model.fingerprint() == clean.fingerprint(), "both towers are the clean model's"
    assert native["towers_unchanged"] is True
    arts = load_artifacts(built.path)
    assert set(arts) == set(native["artifacts"]) and arts["prompt_learner.ctx"].shape[0] == native["n_ctx"] == 4
    trig = card["trigger"]
    assert trig["channel"] == "mechanism" and trig["name"] == "perturbation"
    assert torch.as_tensor(trig["params"]["delta"]).abs().max() <= trig["params"]["eps"] + 1e-6


def test_native_value_is_the_prompt_classifier_and_only_the_pair_fires(built):
    native, cu = built.card["native"], built.card["clean_utility"]
    r = native["component_repair"]
    assert native["value"] == r["full"] and native["reference_value"] == r["trigger_only"]
    assert r["full"] >= 0.5 and max(r["prompt_only"], r["trigger_only"], r["both_clean"]) <= 0.3
    assert cu["clean_acc"] >= cu["reference_clean_acc"] - 0.1
    assert "prompt-tuned classifier" in native["downstream_head"]


def test_the_stealth_term_keeps_the_trigger_alone_nearer_harmless(built, tmp_path):
    """``w_stealth``: under hand-written prompts a triggered image keeps its
    class, so the trigger alone moves fewer images to the target than
    without the term (the paper: trigger only at chance)."""
    from dife_backdoors.bai_badclip import BaiBadClipConfig
    from dife_backdoors.testing import easy_clean, easy_world

    trace = built.card["native"]["loss_trace"]
    assert trace and all(len(row) == 3 for row in trace), "clean, backdoor and stealth CE"
    plain = build_attack("bai-badclip", clean=easy_clean(), world=easy_world(), out=tmp_path / "plain",
                         overrides={**FAST, "w_stealth": 0.0})
    assert (built.card["native"]["component_repair"]["trigger_only"]
            < plain.card["native"]["component_repair"]["trigger_only"])
    with pytest.raises(ValueError, match="w_stealth"):
        BaiBadClipConfig(w_stealth=-1.0)


class _EasyWorld:
    @hookimpl
    def register_datasets(self, register):
        from dife_backdoors.testing import easy_world

        register(Dataset(name="easy-world", description="the attack tests' easy world", load=lambda: easy_world(),
                         provides=("classification",)))


def test_the_audit_scores_the_shipped_classifier_and_finds_a_coupled_footprint(built, clean, tmp_path,
                                                                                register_plugin):
    from dife_core.checkpoint import save_checkpoint
    from dife_core.engine import run_audit

    register_plugin(_EasyWorld(), "easy-world-test")
    ref = save_checkpoint(clean, tmp_path / "clean")
    spec = {"seed": 0, "populations": {"dataset": "easy-world"}, "controls": False,
            "interfaces": ["zero-shot-classification", "downstream-visual-classification", "text-reranking"],
            "clean": {"name": "clean", "source": str(ref)},
            "checkpoints": [{"name": "bai-badclip", "source": str(built.path)}]}
    res = run_audit(spec, tmp_path / "audit", progress=False)
    cells = {c["interface"]: c for c in res["cells"]}
    down = cells["downstream-visual-classification"]
    assert down["channel"] == "mechanism" and down["status"] == "exposed"
    assert "prompt-tuned classifier" in down["notes"]
    assert down["value"] == pytest.approx(built.card["native"]["value"])
    assert cells["zero-shot-classification"]["channel"] == "image"
    assert cells["zero-shot-classification"]["status"] != "exposed", "the trigger alone does not fire"
    assert cells["text-reranking"]["status"] == "n.e."
    fp = res["footprints"][0]
    assert fp["probe"] == "component-repair" and fp["footprint"] == "coupled"
    assert fp["repair"] == pytest.approx(built.card["native"]["component_repair"])
