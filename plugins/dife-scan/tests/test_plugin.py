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


def test_the_family_pass_tries_each_family_at_its_declared_scan_points():
    """Defaults first, then every scan point the family declares (its intensity
    range), and nothing when the ``points`` option is off."""
    import json

    from dife_scan.image import FAMILY_OPTIONS, scan_families

    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.plugins import get_registry
    from dife_core.scan import ScanContext, shadow_set
    from dife_openclip.testing import tiny_encoder
    from dife_shapes.testing import shapes_test_world

    world, m = shapes_test_world(), tiny_encoder("vit", seed=0)
    kw = dict(suspect=m, reference=m, world=world, embeddings=EmbeddingService(), shadow=shadow_set(world, 40),
              templates=tuple(world.templates))
    def key(name, params):
        return name, json.dumps(params, sort_keys=True)

    tried = {key(f["details"]["family"], f["details"]["params"])
             for f in scan_families(ScanContext(options=dict(FAMILY_OPTIONS), **kw))}
    want = set()
    for name, fam in get_registry().all("triggers").items():
        if fam.channel == "image" and key(name, {}) in tried:
            want |= {key(name, {})} | {key(name, p) for p in fam.scan_points}
    assert want and want <= tried
    assert any(p != "{}" for _, p in tried)  # at least one family declares scan points (dife-backdoors)
    off = scan_families(ScanContext(options={**FAMILY_OPTIONS, "points": False}, **kw))
    assert all(f["details"]["params"] == {} for f in off)
    # the same model as suspect and reference: no excess anywhere
    assert all(abs(f["score"]) < 1e-9 for f in off)
