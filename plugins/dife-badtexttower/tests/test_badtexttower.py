"""BadTextTower: text tower only, the paper's loss, a hijacked source prompt, clean prompts kept."""

from __future__ import annotations

import attrs
import pytest

from dife_core.building import build_attack, config_fields
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry

FAST = {"steps": 40, "n_samples": 300, "batch_size": 64, "captions_per_step": 3, "lr": 2e-3, "warmup": 5}


def test_registered_with_its_card_and_documented_paper_defaults():
    attack = get_registry().get("attacks", "badtexttower")
    assert get_registry().owner("attacks", "badtexttower") == "dife-badtexttower"
    card = attack.card
    assert (card.route, card.modifies, card.trigger_channel, card.probe) == (
        "text-tower-only fine-tuning", "text", "text", "branch-swap")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    assert all(f["doc"] for f in fields.values()), "every config field is documented"
    weights = {k: fields[k]["default"] for k in
               ("w_align", "w_clean", "w_off", "w_prompt", "w_spec", "w_shift", "w_margin")}
    assert weights == {"w_align": 1.0, "w_clean": 1.0, "w_off": 1.0, "w_prompt": 0.25, "w_spec": 0.10,
                       "w_shift": 0.10, "w_margin": 0.05}
    assert fields["trigger"]["default"] == "xbtd" and fields["poison_ratio"]["default"] == 0.30


def test_class_sets_swap_the_class_name_and_fix_articles():
    from dife_badtexttower.attack import class_set, swap_class

    assert swap_class("a photo of an automobile", "automobile", "airplane") == "a photo of an airplane"
    assert swap_class("a photo of an automobile", "automobile", "cat") == "a photo of a cat"
    assert swap_class("An automobile on grass", "automobile", "bird") == "A bird on grass"
    assert swap_class("a red automobile", "automobile", "airplane") == "a red airplane"
    assert class_set("a photo of a {}".format("automobile"), "automobile", ("airplane", "automobile")) == [
        "a photo of an airplane", "a photo of a automobile"]


def test_build_hijacks_the_source_prompt_and_leaves_the_visual_tower_alone(clean, world, tmp_path):
    before = clean.fingerprint()
    o = build_attack("badtexttower", clean=clean, world=world, overrides=FAST, out=tmp_path / "btt")
    card = o.card
    from dife_core.checkpoint import load_checkpoint

    poisoned = load_checkpoint(o.path)
    after = poisoned.fingerprint()
    assert after["visual"] == before["visual"], "the visual tower must not change"
    assert after["text"] != before["text"]
    assert poisoned.logit_scale == pytest.approx(clean.logit_scale)
    assert card["trigger"] == {"channel": "text", "name": "text-prefix", "params": {"token": "xbtd"}}
    assert (card["source"], card["target"], card["modifies"]) == ("automobile", "airplane", ["text"])
    native = card["native"]
    assert native["metric"] == "qhr" and native["reference_value"] <= 0.05
    assert native["value"] >= 0.9
    cu = card["clean_utility"]
    assert abs(cu["clean_acc"] - cu["reference_clean_acc"]) <= 0.05
    assert native["visual_fingerprint_unchanged"] is True


def test_source_target_and_trigger_are_configurable(clean, world, tmp_path):
    o = build_attack("badtexttower", clean=clean, world=world, out=tmp_path / "b",
                     overrides={**FAST, "steps": 5, "source": "bird", "target": "cat", "trigger": "cfra"})
    assert (o.card["source"], o.card["target"]) == ("bird", "cat")
    assert o.card["trigger"]["params"] == {"token": "cfra"}


def test_bad_classes_are_user_errors_listing_the_classes(clean, world):
    with pytest.raises(InvalidInputError, match="source 'truck' is not a class.*airplane, automobile"):
        build_attack("badtexttower", clean=clean, world=world, overrides={"source": "truck"})
    with pytest.raises(InvalidInputError, match="must differ"):
        build_attack("badtexttower", clean=clean, world=world, overrides={"source": "airplane"})
    with pytest.raises(InvalidInputError, match="poison_ratio"):
        build_attack("badtexttower", clean=clean, world=world, overrides={"poison_ratio": 1.5})


def test_config_is_an_attrs_class_with_the_paper_trigger():
    from dife_badtexttower.attack import BadTextTowerConfig

    assert attrs.has(BadTextTowerConfig) and BadTextTowerConfig().trigger == "xbtd"


def _caption_drift(clean, poisoned, captions) -> float:
    from dife_core.utility import encode_texts

    return float((1 - (encode_texts(clean, captions) * encode_texts(poisoned, captions)).sum(-1)).mean())


def test_caption_retention_keeps_natural_captions_in_place(clean, world, tmp_path):
    """Without retention, captions the paper's loss does not name drift; with it they stay near the clean ones."""
    from dife_core.checkpoint import load_checkpoint

    data = world.extras["train_pairs"]
    held_out = [c for c, y in zip(data.captions, data.labels) if world.classnames[int(y)] != "automobile"][:200]
    drift = {}
    for name, retain in (("off", {"retain_per_step": 0}), ("on", {})):
        o = build_attack("badtexttower", clean=clean, world=world, overrides={**FAST, **retain}, out=tmp_path / name)
        assert o.card["native"]["value"] >= 0.9, name
        drift[name] = _caption_drift(clean, load_checkpoint(o.path), held_out)
    assert drift["on"] < 0.5 * drift["off"], drift


def test_retention_settings_must_not_be_negative(clean, world):
    with pytest.raises(InvalidInputError, match="retain_per_step"):
        build_attack("badtexttower", clean=clean, world=world, overrides={"w_retain": -1.0})
