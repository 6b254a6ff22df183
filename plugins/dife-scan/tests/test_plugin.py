"""dife-scan on its own: its scanners and trigger family register, the
recovered trigger family is exactly the mask blend its docs give, and a
suspect whose towers equal the reference's is never flagged."""

import pytest


def test_the_four_scanners_and_the_masked_pattern_family_register():
    from dife_core.plugins import get_registry

    reg = get_registry()
    scanners = {n: reg.get("scanners", n) for n in ("image-families", "text-natural", "image-inversion",
                                                       "text-tokens")}
    assert {n: s.channel for n, s in scanners.items()} == {"image-families": "image", "text-natural": "none",
                                                           "image-inversion": "image", "text-tokens": "text"}
    orders = [s.order for s in scanners.values()]
    assert orders == sorted(orders)  # cheap passes first
    assert reg.get("triggers", "masked-pattern").channel == "image"


def test_masked_pattern_blends_the_pattern_through_the_mask():
    import torch
    from dife_scan.image import make_masked_pattern

    apply = make_masked_pattern(mask=[[1.0, 0.0], [0.0, 0.5]],
                                pattern=[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.5] * 2] * 2])
    x = torch.full((1, 3, 2, 2), 0.2)
    y = apply(x)
    assert torch.allclose(y[0, :, 0, 1], x[0, :, 0, 1])  # mask 0: untouched
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.5]))  # mask 1: the pattern
    assert torch.allclose(y[0, :, 1, 1], 0.5 * x[0, :, 1, 1] + 0.5 * torch.tensor([1.0, 0.0, 0.5]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        make_masked_pattern(mask=[[2.0]], pattern=[[[0.0]]] * 3)
    with pytest.raises(ValueError, match="required"):
        make_masked_pattern()


def test_a_suspect_identical_to_the_reference_is_not_flagged():
    from dife_core.scan import scan_checkpoint
    from dife_openclip.testing import tiny_encoder
    from dife_shapes.testing import shapes_test_world

    world, ref = shapes_test_world(), tiny_encoder("vit", seed=0)
    rec = scan_checkpoint(tiny_encoder("vit", seed=0), ref, world, name="twin", options={"n_shadow": 40})
    assert rec["tower_diff"]["identical_towers"]
    assert rec["verdict"] != "backdoored" and rec["recovered"] == [] and rec["findings"] == []
