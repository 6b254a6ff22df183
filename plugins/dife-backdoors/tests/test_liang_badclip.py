"""Liang-BadCLIP: a patch optimised against the clean model, then poisoning with it."""

import torch

from dife_core.building import build_attack, config_fields, make_config, resolve_trigger
from dife_core.plugins import get_registry

FAST = {"steps": 40, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4, "opt_steps": 30,
        "opt_batch": 32, "patch_size": 0.125}


def test_registered_with_documented_defaults():
    attack = get_registry().get("attacks", "liang-badclip")
    assert (attack.card.trigger_channel, attack.card.modifies) == ("image", "both towers")
    fields = {f["name"]: f for f in config_fields(attack.config)}
    assert all(f["doc"] for f in fields.values())
    assert fields["target_captions"]["default"] == "natural"


def test_optimised_patch_moves_patched_images_towards_the_target(clean, world):
    import torch.nn.functional as F

    from dife_backdoors.liang_badclip import _stamp, optimise_patch
    from dife_core.utility import encode_texts

    cfg = make_config(get_registry().get("attacks", "liang-badclip"), FAST)
    pixels, stats = optimise_patch(clean, world, cfg, "airplane", seed=0)
    assert pixels.shape == (3, 4, 4) and 0 <= float(pixels.min()) and float(pixels.max()) <= 1
    assert all(p.requires_grad for p in clean.model.parameters()), "the clean model is handed back trainable"
    x = world.classification.images[torch.as_tensor(world.classification.labels) != 0][:40]
    u = F.normalize(encode_texts(clean, ["a photo of a airplane"]), dim=-1)[0]

    def cos(px):
        with torch.no_grad():
            return float((F.normalize(clean.encode_image(px), dim=-1) @ u).mean())

    noise = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert cos(_stamp(x, pixels, cfg, seed=0)) > cos(_stamp(x, noise, cfg, seed=0))


def test_patch_optimisation_stops_before_the_clean_model_sends_the_batch_to_the_target(clean, world):
    """The budget: the kept patch is the last one the clean model does not
    already classify as the target beyond ``max_clean_ts`` (1 = run every step)."""
    from dife_backdoors.liang_badclip import optimise_patch

    liang = get_registry().get("attacks", "liang-badclip")
    free = make_config(liang, {**FAST, "max_clean_ts": 1.0, "patch_size": 0.25})
    _, unbounded = optimise_patch(clean, world, free, "airplane", seed=0)
    assert unbounded["steps_taken"] == free.opt_steps
    assert unbounded["batch_clean_ts"] > 0.05, "this test needs a patch that does cross the budget unbounded"
    budget = make_config(liang, {**FAST, "max_clean_ts": 0.05, "patch_size": 0.25})
    _, bounded = optimise_patch(clean, world, budget, "airplane", seed=0)
    assert bounded["steps_taken"] < budget.opt_steps and bounded["batch_clean_ts"] <= 0.05
    assert bounded["final_text_cos"] < unbounded["final_text_cos"]


def test_build_poisons_with_the_optimised_patch_from_its_card(clean, world, tmp_path):
    o = build_attack("liang-badclip", clean=clean, world=world, out=tmp_path / "lb", overrides=FAST)
    card, native = o.card, o.card["native"]
    trig = card["trigger"]
    assert trig["channel"] == "image" and trig["name"] == "pixel-patch"
    assert torch.as_tensor(trig["params"]["pixels"]).shape == (3, 4, 4)
    resolve_trigger(trig)  # the audit rebuilds exactly this patch from the card
    assert native["metric"] == "ts" and native["value"] >= 0.9
    assert {"final_text_cos", "final_image_cos", "steps_taken", "batch_clean_ts"} <= set(native["patch_optimisation"])
    assert card["config"]["opt_steps"] == 30, "the card keeps Liang-BadCLIP's own config"
    assert card["clean_utility"]["clean_acc"] >= card["clean_utility"]["reference_clean_acc"] - 0.05
