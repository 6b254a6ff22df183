"""Learned trigger families: the card alone rebuilds an optimised patch or perturbation."""

import pytest
import torch

from dife_core.building import resolve_trigger, trigger_card
from dife_core.errors import InvalidInputError
from dife_core.plugins import get_registry


def test_registered_on_the_image_channel_by_dife_backdoors():
    for name in ("pixel-patch", "perturbation"):
        assert get_registry().get("triggers", name).channel == "image"
        assert get_registry().owner("triggers", name) == "dife-backdoors"


def test_pixel_patch_stamps_the_given_values_at_its_corner():
    pixels = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    fn = resolve_trigger(trigger_card("pixel-patch", {"pixels": pixels.tolist(), "size": 0.25}))
    x = torch.zeros(2, 3, 16, 16)
    y = fn(x)
    assert torch.allclose(y[:, :, 12:, 12:], pixels.expand(2, 3, 4, 4))
    y[:, :, 12:, 12:] = 0
    assert torch.all(y == 0) and torch.all(x == 0), "only the corner changes; the input is untouched"
    # resized to the requested side on a larger image
    assert fn(torch.zeros(1, 3, 32, 32))[:, :, 24:, 24:].abs().sum() > 0


def test_pixel_patch_needs_valid_pixels():
    with pytest.raises(InvalidInputError, match="pixels is required"):
        resolve_trigger({"name": "pixel-patch", "params": {}})
    with pytest.raises(InvalidInputError, match=r"lie in \[0.0, 1.0\]"):
        resolve_trigger({"name": "pixel-patch", "params": {"pixels": [[[2.0]]] * 3}})
    with pytest.raises(InvalidInputError, match="shape"):
        resolve_trigger({"name": "pixel-patch", "params": {"pixels": [[0.1, 0.2]]}})


def test_perturbation_is_bounded_by_eps_and_rebuilt_from_its_card():
    delta = (torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.5  # some beyond eps
    card = trigger_card("perturbation", {"delta": delta.tolist(), "eps": 0.05})
    x = torch.full((2, 3, 16, 16), 0.5)
    y = resolve_trigger(card)(x)
    assert (y - x).abs().max() <= 0.05 + 1e-6 and not torch.allclose(y, x)
    assert torch.equal(resolve_trigger(card)(x), y)  # deterministic from the card alone
    assert torch.all(resolve_trigger(card)(torch.ones(1, 3, 8, 8)) <= 1.0)


def test_perturbation_without_delta_is_a_fixed_sign_pattern():
    a = resolve_trigger({"name": "perturbation", "params": {"eps": 0.1}})(torch.full((1, 3, 8, 8), 0.5))
    assert torch.allclose((a - 0.5).abs(), torch.full_like(a, 0.1))
    b = resolve_trigger({"name": "perturbation", "params": {"eps": 0.1, "pattern_seed": 1}})(
        torch.full((1, 3, 8, 8), 0.5))
    assert not torch.equal(a, b)
