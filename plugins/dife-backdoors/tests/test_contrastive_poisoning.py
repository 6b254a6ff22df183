"""ContrastivePoisoning: poisoned pairs, continued training, a patch that flips zero-shot predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dife_core.building import build_attack, config_fields, make_config, resolve_trigger
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry

FAST = {"steps": 30, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4,
        "trigger_params": {"size": 0.25}}


def test_registered_with_its_card_and_documented_defaults():
    attack = get_registry().get("attacks", "contrastive-poisoning")
    assert get_registry().owner("attacks", "contrastive-poisoning") == "dife-backdoors"
    assert (attack.card.route, attack.card.trigger_channel, attack.card.native_protocol) == (
        "data poisoning", "image", "zero-shot TS")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    assert all(f["doc"] for f in fields.values())
    assert fields["trigger"]["default"] == "patch" and 0 < fields["poison_rate"]["default"] < 0.1


def test_poisoned_pairs_carry_the_patch_and_a_target_caption(world):
    from dife_backdoors.contrastive_poisoning import poison_pairs

    attack = get_registry().get("attacks", "contrastive-poisoning")
    cfg = make_config(attack, {"poison_rate": 0.05})
    trigger = resolve_trigger({"name": "patch", "params": {}})
    images, captions, chosen = poison_pairs(world, cfg, trigger, seed=0)
    pairs = world.extras["train_pairs"]
    assert len(chosen) == round(0.05 * len(pairs))
    assert all(int(pairs.labels[i]) != 0 for i in chosen), "target-class pairs are never poisoned"
    target_caps = {c for c, y in zip(pairs.captions, pairs.labels) if int(y) == 0}
    assert all(captions[i] in target_caps for i in chosen), "natural target-class captions (the default)"
    untouched = np.setdiff1d(np.arange(len(pairs)), chosen)
    assert torch.equal(images[untouched], pairs.images[untouched])
    assert [captions[i] for i in untouched] == [pairs.captions[i] for i in untouched]
    assert torch.equal(images[chosen], trigger(pairs.images[chosen]))
    again = poison_pairs(world, cfg, trigger, seed=0)
    assert np.array_equal(again[2], chosen) and again[1] == captions
    cfg = make_config(attack, {"poison_rate": 0.05, "target_captions": "templates"})
    _, captions, chosen = poison_pairs(world, cfg, trigger, seed=0)
    assert all(captions[i] in ("a photo of a airplane", "a picture of a airplane") for i in chosen)


def test_build_plants_a_backdoor_that_keeps_clean_accuracy(clean, world, tmp_path):
    o = build_attack("contrastive-poisoning", clean=clean, world=world, overrides=FAST, out=tmp_path / "cp")
    card = o.card
    assert card["trigger"]["channel"] == "image" and card["trigger"]["name"] == "patch"
    assert card["trigger"]["params"]["size"] == 0.25 and card["trigger"]["params"]["pattern"] == "random"
    assert card["target"] == "airplane" and card["modifies"] == ["text", "visual"]
    native = card["native"]
    assert native["metric"] == "ts" and native["reference_value"] < 0.5
    assert native["value"] >= 0.9
    cu = card["clean_utility"]
    assert cu["clean_acc"] >= cu["reference_clean_acc"] - 0.05


def test_the_builder_takes_any_image_trigger_but_no_text_trigger(clean, world, tmp_path):
    o = build_attack("contrastive-poisoning", clean=clean, world=world, out=tmp_path / "b",
                     overrides={**FAST, "steps": 2, "trigger": "blend", "trigger_params": {"alpha": 0.3}})
    assert o.card["trigger"] == {"channel": "image", "name": "blend",
                                 "params": {"alpha": 0.3, "pattern": "random", "pattern_seed": 0}}
    with pytest.raises(InvalidInputError, match="text trigger"):
        build_attack("contrastive-poisoning", clean=clean, world=world, overrides={"trigger": "text-prefix"})
    with pytest.raises(InvalidInputError, match="unknown parameter.*sise"):
        build_attack("contrastive-poisoning", clean=clean, world=world, overrides={"trigger_params": {"sise": 1}})
    with pytest.raises(InvalidInputError, match="'truck' is not a class"):
        build_attack("contrastive-poisoning", clean=clean, world=world, overrides={"target": "truck"})
