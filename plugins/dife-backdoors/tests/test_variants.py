"""Blended, SIG and WaNet: ContrastivePoisoning's builder with another trigger family."""

import attrs
import pytest

from dife_core.building import build_attack, config_fields, make_config
from dife_core.plugins import get_registry

FAST = {"steps": 40, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4}
FAMILY = {"blended": "blend", "sig": "sig", "wanet": "wanet"}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_registered_as_contrastive_poisoning_with_another_trigger(name):
    from dife_backdoors.contrastive_poisoning import PoisoningConfig, build_poisoning

    attack = get_registry().get("attacks", name)
    assert get_registry().owner("attacks", name) == "dife-backdoors"
    assert attack.build is build_poisoning, "the variants reuse the builder, they do not copy it"
    assert issubclass(attack.config, PoisoningConfig)
    assert (attack.card.route, attack.card.modifies, attack.card.trigger_channel, attack.card.native_protocol) == (
        "data poisoning", "both towers", "image", "zero-shot TS")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    assert all(f["doc"] for f in fields.values())
    assert fields["trigger"]["default"] == FAMILY[name]
    # the table-valued trigger parameters merge with the variant's defaults
    cfg = make_config(attack, {"trigger_params": {"pattern_seed": 3}} if name != "sig"
                      else {"trigger_params": {"frequency": 3.0}})
    assert set(attrs.asdict(cfg)["trigger_params"]) > ({"pattern_seed"} if name != "sig" else {"frequency"})


@pytest.mark.parametrize("name,params", [("blended", {"alpha": 0.5}), ("sig", {"delta": 0.3})])
def test_build_plants_the_trigger_and_keeps_clean_accuracy(clean, world, tmp_path, name, params):
    o = build_attack(name, clean=clean, world=world, out=tmp_path / name, overrides={**FAST, "trigger_params": params})
    card = o.card
    assert card["attack"] == name and card["trigger"]["name"] == FAMILY[name] and card["trigger"]["channel"] == "image"
    for k, v in params.items():
        assert card["trigger"]["params"][k] == v
    native = card["native"]
    assert native["metric"] == "ts" and native["value"] >= native["reference_value"] + 0.5
    assert card["clean_utility"]["clean_acc"] >= card["clean_utility"]["reference_clean_acc"] - 0.05


def test_wanet_card_carries_the_full_warp(clean, world, tmp_path):
    o = build_attack("wanet", clean=clean, world=world, out=tmp_path / "w", overrides={**FAST, "steps": 1})
    assert o.card["trigger"] == {"channel": "image", "name": "wanet",
                                 "params": {"grid_size": 4, "strength": 6.0, "pattern_seed": 0}}
