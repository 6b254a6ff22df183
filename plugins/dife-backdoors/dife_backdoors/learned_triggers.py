"""Trigger families whose pattern is *learned* by an attack and stored in its card.

Liang-BadCLIP optimises a patch and Bai-BadCLIP an L-infinity-bounded
perturbation; the audit must rebuild exactly those triggers from the attack
card alone, so the learned values travel as the family's parameters:

- ``pixel-patch``: a patch whose pixel values are given (``pixels``,
  ``[3][k][k]`` in [0, 1]), resized to ``size`` of the image side and stamped
  like the ``patch`` family;
- ``perturbation``: an additive perturbation given on a coarse grid
  (``delta``, ``[3][g][g]`` in pixel units), bilinearly upsampled to the
  image, clipped to ``[-eps, eps]``; the pixels are then clipped to [0, 1].
  A coarse grid keeps the card small and lets the trigger carry to any
  resolution. With ``delta`` empty the family is a fixed random sign
  pattern of amplitude ``eps`` (from ``pattern_seed``).

Torch is imported inside the functions (``dife triggers`` must not import it).
"""

from __future__ import annotations

from dife_core.types import Trigger

from .triggers import CORNERS, PATCH_LOCATIONS, _choice, _fraction, _generator


def _grid(name: str, values, *, low=None, high=None):
    """A nested list ``[3][k][k]`` as a float tensor, checked."""
    import torch

    try:
        t = torch.as_tensor(values, dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a nested list [3][k][k] of numbers: {e}") from e
    if t.ndim != 3 or t.shape[0] != 3 or t.shape[1] != t.shape[2] or t.shape[1] < 1:
        raise ValueError(f"{name} must have shape [3][k][k]; got {list(t.shape)}")
    if (low is not None and float(t.min()) < low) or (high is not None and float(t.max()) > high):
        raise ValueError(f"{name} values must lie in [{low}, {high}]")
    return t


def _resize(t, h: int, w: int):
    import torch.nn.functional as F

    if tuple(t.shape[-2:]) == (h, w):
        return t
    return F.interpolate(t.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False).squeeze(0)


def make_pixel_patch(pixels=(), size: float = 0.125, location: str = "fixed", corner: str = "bottom-right"):
    """A patch with given pixel values (e.g. an optimised one), stamped at ``corner`` or at random."""
    if pixels is None or len(pixels) == 0:
        raise ValueError("pixels is required: the patch's values as a nested list [3][k][k] in [0, 1]")
    patch = _grid("pixels", pixels, low=0.0, high=1.0)
    size = _fraction("size", size)
    _choice("location", location, PATCH_LOCATIONS)
    _choice("corner", corner, CORNERS)

    def apply(images, *, seed: int = 0):
        import torch

        x = images.clone()
        n, _, h, w = x.shape
        px = max(1, round(size * min(h, w)))
        p = _resize(patch, px, px).clamp(0, 1).to(device=x.device, dtype=x.dtype)
        if location == "fixed":
            top = {"top": 0, "bottom": h - px}.get(corner.split("-")[0], (h - px) // 2)
            left = {"left": 0, "right": w - px}.get(corner.split("-")[-1], (w - px) // 2)
            x[:, :, top:top + px, left:left + px] = p
            return x
        g = _generator(seed)
        tops = torch.randint(0, h - px + 1, (n,), generator=g).tolist()
        lefts = torch.randint(0, w - px + 1, (n,), generator=g).tolist()
        for i, (t, left) in enumerate(zip(tops, lefts)):
            x[i, :, t:t + px, left:left + px] = p
        return x

    return apply


def make_perturbation(delta=(), eps: float = 8 / 255, pattern_seed: int = 0):
    """``x' = clip(x + clip(up(delta), -eps, eps), 0, 1)`` with ``up`` bilinear upsampling."""
    eps = _fraction("eps", eps)
    given = delta is not None and len(delta) > 0
    grid = _grid("delta", delta) if given else None

    def apply(images, *, seed: int = 0):
        import torch

        _, _, h, w = images.shape
        d = (grid if grid is not None
             else eps * torch.sign(torch.rand(3, 8, 8, generator=_generator(pattern_seed)) - 0.5))
        d = _resize(d, h, w).clamp(-eps, eps).to(device=images.device, dtype=images.dtype)
        return (images + d).clamp(0.0, 1.0)

    return apply


def to_nested(t, decimals: int = 5) -> list:
    """A tensor as a nested list of rounded values (learned trigger parameters in cards)."""
    scale = 10.0 ** decimals
    return (t.detach().cpu().double() * scale).round().div(scale).tolist()


TRIGGERS = (
    Trigger(name="pixel-patch", channel="image", make=make_pixel_patch,
            description=("Patch with given (e.g. optimised) pixel values, stamped at a corner or at random "
                         "(Liang-BadCLIP)"),
            defaults={"pixels": [], "size": 0.125, "location": "fixed", "corner": "bottom-right"}),
    Trigger(name="perturbation", channel="image", make=make_perturbation,
            description="Additive L-inf-bounded perturbation from a stored grid, upsampled to the image (Bai-BadCLIP)",
            defaults={"delta": [], "eps": round(8 / 255, 6), "pattern_seed": 0}),
)
