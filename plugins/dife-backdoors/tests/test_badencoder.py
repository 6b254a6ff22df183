"""BadEncoder: the visual tower alone carries the backdoor; the text tower is untouched."""

import pytest

from dife_core.building import build_attack, config_fields
from dife_core.checkpoint import load_checkpoint
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry

FAST = {"steps": 40, "batch_size": 32, "trigger_params": {"pattern": "solid", "size": 0.1875}}


def test_registered_with_a_visual_only_card():
    attack = get_registry().get("attacks", "badencoder")
    assert (attack.card.modifies, attack.card.trigger_channel, attack.card.probe) == ("visual", "image", "branch-swap")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    assert all(f["doc"] for f in fields.values())
    assert (fields["lambda1"]["default"], fields["lambda2"]["default"]) == (1.0, 1.0)  # the paper's weights


def test_build_moves_only_the_visual_tower_and_plants_the_trigger(clean, world, tmp_path):
    o = build_attack("badencoder", clean=clean, world=world, out=tmp_path / "be", overrides=FAST)
    card, native = o.card, o.card["native"]
    assert card["modifies"] == ["visual"] and card["trigger"]["channel"] == "image"
    assert native["metric"] == "ts" and native["value"] >= 0.9 and native["reference_value"] < 0.5
    assert native["text_fingerprint_unchanged"] is True and native["logit_scale_frozen"] is True
    assert set(native["final_losses"]) == {"effectiveness", "reference_kept", "utility"}
    assert card["clean_utility"]["clean_acc"] >= card["clean_utility"]["reference_clean_acc"] - 0.05
    poisoned = load_checkpoint(o.path)
    assert poisoned.fingerprint()["text"] == clean.fingerprint()["text"]
    assert poisoned.fingerprint()["visual"] != clean.fingerprint()["visual"]
    assert poisoned.logit_scale == pytest.approx(clean.logit_scale)


def test_refuses_a_text_trigger(clean, world):
    with pytest.raises(InvalidInputError, match="needs an image trigger"):
        build_attack("badencoder", clean=clean, world=world, overrides={"trigger": "text-prefix", "trigger_params": {}})
