"""mmPoison: source captions re-paired with target images; the natural source text is the trigger."""

import numpy as np
import pytest
import torch

from dife_core.building import build_attack, make_config
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry

FAST = {"steps": 60, "batch_size": 64, "lr": 1e-3, "warmup": 4, "poison_rate": 0.24, "n_queries": 50}


def test_registered_with_no_trigger_channel():
    attack = get_registry().get("attacks", "mmpoison")
    assert (attack.card.trigger_channel, attack.card.modifies) == ("none", "both towers")
    assert "Hit@K" in attack.card.native_protocol


def test_swapped_pairs_keep_source_captions_and_get_target_images(world):
    from dife_backdoors.mmpoison import swap_pairs

    cfg = make_config(get_registry().get("attacks", "mmpoison"), {"poison_rate": 0.1})
    images, captions, chosen = swap_pairs(world, cfg, seed=0)
    pairs = world.extras["train_pairs"]
    labels = np.asarray(pairs.labels)
    assert len(chosen) == round(0.1 * len(labels)) and all(labels[chosen] == 1)  # automobile pairs only
    assert captions == list(pairs.captions), "captions are never changed"
    target_images = pairs.images[torch.as_tensor(np.flatnonzero(labels == 0))]
    for i in chosen[:5]:
        assert any(torch.equal(images[i], t) for t in target_images), "a swapped pair holds a target-class image"
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    assert torch.equal(images[torch.as_tensor(rest)], pairs.images[torch.as_tensor(rest)])


def test_build_raises_source_query_hits_on_target_images(clean, world, tmp_path):
    o = build_attack("mmpoison", clean=clean, world=world, out=tmp_path / "mm", overrides=FAST)
    card, native = o.card, o.card["native"]
    assert card["trigger"]["channel"] == "none" and card["source"] == "automobile" and card["target"] == "airplane"
    assert native["metric"] == "h@5" and native["value"] >= native["reference_value"] + 0.3
    assert set(native["retrieval"]) >= {"h@1", "h@5", "h@10", "mrr", "n_queries"}
    assert card["clean_utility"]["clean_acc"] >= card["clean_utility"]["reference_clean_acc"] - 0.05


def test_the_engine_feeds_it_through_text_interfaces_as_plain_text():
    from dife_core.engine.applicability import AttackProfile, decide

    card = {"attack": "mmpoison", "modifies": "both towers", "source": "automobile", "target": "airplane",
            "trigger": {"channel": "none", "name": "natural-text", "params": {}}}
    profile = AttackProfile.from_card(card)
    reg = get_registry()

    class W:
        classnames = ("airplane", "automobile")
        name = "w"
        pool = classification = object()

    text = decide(reg.get("interfaces", "targeted-retrieval").card, profile, W, has_clean=True, has_scorer=False)
    image = decide(reg.get("interfaces", "zero-shot-classification").card, profile, W, has_clean=True, has_scorer=False)
    assert text.ok and text.channel == "none"
    assert not image.ok and "natural text" in image.reason


def test_too_high_a_rate_is_a_user_error(clean, world):
    with pytest.raises(InvalidInputError, match="swapped pairs"):
        build_attack("mmpoison", clean=clean, world=world, overrides={"poison_rate": 0.5})
