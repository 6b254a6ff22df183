"""Trigger channels: registered, deterministic, acting only where they should."""

import pytest
import torch

from dife_core.building import resolve_trigger, trigger_card
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry

IMAGE = ("patch", "blend", "sig", "wanet")


def _pixels(n=4, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_every_trigger_family_is_registered_with_its_channel():
    triggers = get_registry().all("triggers")
    for name in IMAGE:
        assert triggers[name].channel == "image"
    assert triggers["text-prefix"].channel == "text"
    assert triggers["text-suffix"].channel == "text"
    assert get_registry().owner("triggers", "patch") == "dife-backdoors"


@pytest.mark.parametrize("name", IMAGE)
def test_each_image_family_declares_valid_scan_points(name):
    """The scan's family pass tries these (docs/scan.md): each must be a valid
    parameter set of the family, and a point that only raises an intensity
    (alpha, delta, strength) must change pixels more than the default."""
    fam = get_registry().all("triggers")[name]
    assert fam.scan_points
    x = _pixels()
    base = (resolve_trigger({"name": name, "params": {}})(x, seed=0) - x).abs().mean()
    for point in fam.scan_points:
        assert set(point) <= set(fam.defaults), point
        y = resolve_trigger({"name": name, "params": point})(x, seed=0)
        assert y.min() >= 0 and y.max() <= 1
        if set(point) <= {"alpha", "delta", "strength"}:
            assert (y - x).abs().mean() > base, point
    assert len({repr(sorted(p.items())) for p in fam.scan_points}) == len(fam.scan_points)  # no repeats


@pytest.mark.parametrize("name", IMAGE)
def test_image_triggers_are_deterministic_change_pixels_and_stay_in_range(name):
    x = _pixels()
    before = x.clone()
    fn = resolve_trigger({"name": name, "params": {}})
    a, b = fn(x, seed=3), fn(x, seed=3)
    assert torch.equal(x, before), "the input tensor must not be modified"
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x)


def test_fixed_patch_touches_only_its_corner():
    x = torch.zeros(2, 3, 16, 16)
    y = resolve_trigger({"name": "patch", "params": {"size": 0.25, "pattern": "solid", "corner": "bottom-right"}})(x)
    assert torch.all(y[:, :, 12:, 12:] == 1.0)
    y[:, :, 12:, 12:] = 0
    assert torch.all(y == 0)


def test_random_location_patch_depends_on_the_seed_but_the_pattern_does_not():
    x = torch.zeros(8, 3, 16, 16)
    fn = resolve_trigger({"name": "patch", "params": {"location": "random", "size": 0.25}})
    a, b = fn(x, seed=0), fn(x, seed=1)
    assert not torch.equal(a, b)
    # the same 4x4 noise pattern is stamped wherever it lands
    pa = a[0][:, a[0].sum(0).nonzero()[:, 0].unique()][:, :, a[0].sum(0).nonzero()[:, 1].unique()]
    pb = b[0][:, b[0].sum(0).nonzero()[:, 0].unique()][:, :, b[0].sum(0).nonzero()[:, 1].unique()]
    assert torch.allclose(pa, pb)


def test_checkerboard_patch_alternates():
    y = resolve_trigger({"name": "patch", "params": {"pattern": "checkerboard", "size": 0.25, "corner": "top-left"}})(
        torch.full((1, 3, 16, 16), 0.5))
    assert y[0, 0, 0, 0] != y[0, 0, 0, 1] and y[0, 0, 0, 0] == y[0, 0, 1, 1]


def test_blend_is_a_convex_mix():
    x = torch.zeros(1, 3, 8, 8)
    y = resolve_trigger({"name": "blend", "params": {"alpha": 0.5, "pattern": "checkerboard"}})(x)
    assert set(y.unique().tolist()) <= {0.0, 0.5}


def test_text_triggers_prefix_and_suffix():
    assert resolve_trigger({"name": "text-prefix", "params": {}})(["a photo of a cat"]) == ["xbtd a photo of a cat"]
    suffix = resolve_trigger({"name": "text-suffix", "params": {"token": "cfra"}})
    assert suffix(["a", "b"]) == ["a cfra", "b cfra"]


def test_unknown_or_invalid_parameters_are_user_errors():
    with pytest.raises(InvalidInputError, match="valid: .*size"):
        resolve_trigger({"name": "patch", "params": {"sise": 0.1}})
    with pytest.raises(InvalidInputError, match="pattern must be one of"):
        resolve_trigger({"name": "patch", "params": {"pattern": "stars"}})


def test_trigger_card_records_the_full_parameter_set():
    card = trigger_card("patch", {"size": 0.2})
    assert card["channel"] == "image" and card["name"] == "patch"
    assert card["params"]["size"] == 0.2 and card["params"]["pattern"] == "random"
    # the card alone rebuilds the same trigger
    x = _pixels()
    assert torch.equal(resolve_trigger(card)(x), resolve_trigger({"name": "patch", "params": {"size": 0.2}})(x))
