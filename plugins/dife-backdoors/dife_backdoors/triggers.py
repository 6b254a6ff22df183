"""Trigger channels used by the CLIP backdoors in this package.

Image triggers act on float pixels ``[N, 3, H, W]`` in [0, 1] *before*
normalisation and return a new tensor (the input is never modified). Their
pattern is fixed by the trigger's parameters (``pattern_seed``), so the same
spec is the same trigger in every run; the call's ``seed`` only drives
per-image randomness (a random patch location), so ``fn(x, seed=s)`` is
deterministic for a given ``s``.

Text triggers act on raw strings before tokenisation.

Torch is imported inside the functions: this module is imported when the
trigger registry is built (``dife triggers`` must not import torch).
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

from dife_core.types import Trigger
from dife_core.untrusted import LIMITS, limit

#: Bounds on trigger parameters (attack cards are untrusted): checked when a
#: family is made, before anything is allocated; ``--limit KEY=N`` raises them.
TRIGGER_LIMITS = {
    "trigger_grid": 64,  # WaNet control-grid side (the field is grid_size^2 x 2)
    "trigger_frequency": 4096,  # SIG periods across the image
    "trigger_text_chars": 1024,  # characters of a text trigger token or sentence
}
for _k, _v in TRIGGER_LIMITS.items():
    LIMITS.setdefault(_k, _v)

PATCH_PATTERNS = ("random", "checkerboard", "solid")
PATCH_LOCATIONS = ("random", "fixed")
CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
BLEND_PATTERNS = ("random", "checkerboard", "stripes")


def _choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r:.80}")
    return float(value)


def _count(name: str, value, *, low: int, bound: str) -> int:
    """An integer parameter in [low, limit(bound)] (an integral float is accepted)."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isfinite(value) \
            and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    cap = limit(bound)
    if not (low <= value <= cap):
        raise ValueError(f"{name} must be in [{low}, {cap}]; got {value!r} (bound {bound}; raise it with "
                         f"--limit {bound}=N)")
    return int(value)


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (0 <= value < 2**63):
        raise ValueError(f"pattern_seed must be an integer in [0, 2^63); got {value!r:.80}")
    return int(value)


def _fraction(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> float:
    v = _real(name, value)
    if not (low < v <= high):
        raise ValueError(f"{name} must be in ({low}, {high}]; got {value!r}")
    return v


def _generator(seed: int):
    import torch

    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def _checkerboard(h: int, w: int, cell: int = 1):
    import torch

    ys = torch.arange(h).view(h, 1) // cell
    xs = torch.arange(w).view(1, w) // cell
    board = ((ys + xs) % 2).float()
    return board.expand(3, h, w).clone()


# -- image: patch (BadNets / CleanCLIP) ----------------------------------------------

def make_patch(size: float = 0.125, pattern: str = "random", location: str = "fixed",
               corner: str = "bottom-right", color: Sequence = (1.0, 1.0, 1.0), pattern_seed: int = 0):
    """A square patch stamped on the image.

    ``size`` is the patch side as a fraction of the image side (at least one
    pixel). ``pattern``: ``random`` (uniform noise drawn once from
    ``pattern_seed``, as CleanCLIP's BadNet patch), ``checkerboard`` (1-pixel
    black/white cells) or ``solid`` (``color``). ``location``: ``fixed`` at
    ``corner``, or ``random`` (a position per image, drawn from the call's
    ``seed``).
    """
    size = _fraction("size", size)
    _choice("pattern", pattern, PATCH_PATTERNS)
    _choice("location", location, PATCH_LOCATIONS)
    _choice("corner", corner, CORNERS)
    pattern_seed = _seed(pattern_seed)
    if not isinstance(color, (list, tuple)) or len(color) != 3:
        raise ValueError(f"color must have 3 values (RGB in [0, 1]); got {color!r:.80}")
    color = tuple(_real("color", c) for c in color)

    def stamp_pattern(px: int):
        import torch

        if pattern == "random":
            return torch.rand(3, px, px, generator=_generator(pattern_seed))
        if pattern == "checkerboard":
            return _checkerboard(px, px)
        return torch.tensor(color).view(3, 1, 1).expand(3, px, px).clone()

    def apply(pixels, *, seed: int = 0):
        import torch

        x = pixels.clone()
        n, _, h, w = x.shape
        px = max(1, round(size * min(h, w)))
        patch = stamp_pattern(px).to(device=x.device, dtype=x.dtype)
        if location == "fixed":
            top = {"top": 0, "bottom": h - px}.get(corner.split("-")[0], (h - px) // 2)
            left = {"left": 0, "right": w - px}.get(corner.split("-")[-1], (w - px) // 2)
            x[:, :, top:top + px, left:left + px] = patch
            return x
        g = _generator(seed)
        tops = torch.randint(0, h - px + 1, (n,), generator=g).tolist()
        lefts = torch.randint(0, w - px + 1, (n,), generator=g).tolist()
        for i, (t, left) in enumerate(zip(tops, lefts)):
            x[i, :, t:t + px, left:left + px] = patch
        return x

    return apply


# -- image: blend (Chen et al.; CleanCLIP "blended") ---------------------------------

def make_blend(alpha: float = 0.2, pattern: str = "random", pattern_seed: int = 0):
    """Blend the whole image with a fixed pattern: ``x' = (1 - alpha) x + alpha p``.

    ``pattern``: ``random`` (uniform noise from ``pattern_seed``, drawn at the
    image's resolution), ``checkerboard`` (2-pixel cells) or ``stripes``
    (vertical, 2 pixels wide).
    """
    alpha = _fraction("alpha", alpha)
    _choice("pattern", pattern, BLEND_PATTERNS)
    pattern_seed = _seed(pattern_seed)

    def apply(pixels, *, seed: int = 0):
        import torch

        _, _, h, w = pixels.shape
        if pattern == "random":
            p = torch.rand(3, h, w, generator=_generator(pattern_seed))
        elif pattern == "checkerboard":
            p = _checkerboard(h, w, cell=2)
        else:
            p = ((torch.arange(w) // 2) % 2).float().view(1, 1, w).expand(3, h, w)
        p = p.to(device=pixels.device, dtype=pixels.dtype)
        return (1 - alpha) * pixels + alpha * p

    return apply


# -- image: SIG (Barni et al.) -----------------------------------------------------

def make_sig(delta: float = 0.08, frequency: float = 6.0):
    """Add a horizontal sinusoid: ``x' = clip(x + delta * sin(2 pi j f / W))``.

    ``delta`` is the amplitude in [0, 1] pixel units (SIG's 20/255 is 0.078);
    ``frequency`` the number of periods across the image width.
    """
    delta = _fraction("delta", delta)
    frequency = _real("frequency", frequency)
    if not (0 < frequency <= limit("trigger_frequency")):
        raise ValueError(f"frequency must be in (0, {limit('trigger_frequency')}]; got {frequency!r} (bound "
                         f"trigger_frequency)")

    def apply(pixels, *, seed: int = 0):
        import torch

        w = pixels.shape[-1]
        j = torch.arange(w, device=pixels.device, dtype=pixels.dtype)
        wave = delta * torch.sin(2 * math.pi * j * frequency / w)
        return (pixels + wave.view(1, 1, 1, w)).clamp(0.0, 1.0)

    return apply


# -- image: WaNet warp (Nguyen & Tran) -----------------------------------------------

def make_wanet(grid_size: int = 4, strength: float = 0.5, pattern_seed: int = 0):
    """Warp the image with a smooth fixed displacement field.

    A ``grid_size`` x ``grid_size`` random field (from ``pattern_seed``,
    normalised to mean magnitude 1) is upsampled to the image size and
    scaled by ``strength / H``, WaNet's warping grid; pixels are resampled
    bilinearly.
    """
    grid_size = _count("grid_size", grid_size, low=2, bound="trigger_grid")  # before the field is allocated
    strength = _real("strength", strength)
    if strength <= 0:
        raise ValueError(f"strength must be > 0; got {strength!r}")
    pattern_seed = _seed(pattern_seed)

    def apply(pixels, *, seed: int = 0):
        import torch
        import torch.nn.functional as F

        n, _, h, w = pixels.shape
        field = torch.rand(1, 2, grid_size, grid_size, generator=_generator(pattern_seed)) * 2 - 1
        field = field / field.abs().mean()
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        ys = torch.linspace(-1, 1, h)
        xs = torch.linspace(-1, 1, w)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        identity = torch.stack((gx, gy), dim=-1).unsqueeze(0)
        grid = (identity + strength * field / h).clamp(-1, 1)
        grid = grid.to(device=pixels.device, dtype=pixels.dtype).expand(n, h, w, 2)
        out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.clamp(0.0, 1.0)

    return apply


# -- text: prefix and suffix tokens --------------------------------------------------

def _check_token(token) -> str:
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"token must be a non-empty string; got {token!r:.80}")
    cap = limit("trigger_text_chars")
    if len(token) > cap:
        raise ValueError(f"token has {len(token)} characters, more than {cap} (bound trigger_text_chars)")
    return token.strip()


def make_text_prefix(token: str = "xbtd"):
    """Prepend ``token`` (a rare word, BadTextTower's ``xbtd``) to each string."""
    token = _check_token(token)

    def apply(strings):
        return [f"{token} {s}" for s in strings]

    return apply


def make_text_suffix(token: str = "xbtd"):
    """Append ``token`` (a word or a whole sentence, as ToxicTextCLIP's) to each string."""
    token = _check_token(token)

    def apply(strings):
        return [f"{s} {token}" for s in strings]

    return apply


#: the corners of the RGB cube: the solid colours the scan's patch points try
_CUBE = tuple([float(r), float(g), float(b)] for r in (0, 1) for g in (0, 1) for b in (0, 1))
#: where and what a patch trigger may be, for dife scan's family pass: every position, the
#: noise and checkerboard patterns and the eight pure colours, at the default size and at 0.25
_PATCH_POINTS = tuple({"corner": c, "size": z, **look}
                      for c in CORNERS for z in (0.125, 0.25)
                      for look in ({"pattern": "random"}, {"pattern": "checkerboard"},
                                   *({"pattern": "solid", "color": col} for col in _CUBE))
                      if not (c == "bottom-right" and z == 0.125 and look == {"pattern": "random"}))


TRIGGERS = (
    Trigger(name="patch", channel="image", make=make_patch,
            description=("Square patch (random noise, checkerboard or solid) at a fixed corner or a random position "
                         "(BadNets / CleanCLIP)"),
            defaults={"size": 0.125, "pattern": "random", "location": "fixed", "corner": "bottom-right",
                      "color": [1.0, 1.0, 1.0], "pattern_seed": 0},
            scan_points=_PATCH_POINTS),
    Trigger(name="blend", channel="image", make=make_blend,
            description="Whole-image blend with a fixed pattern at ratio alpha (Blended)",
            defaults={"alpha": 0.2, "pattern": "random", "pattern_seed": 0},
            scan_points=({"alpha": 0.4},)),
    Trigger(name="sig", channel="image", make=make_sig,
            description="Additive horizontal sinusoid of amplitude delta (SIG)",
            defaults={"delta": 0.08, "frequency": 6.0},
            scan_points=({"delta": 0.16}, {"delta": 0.16, "frequency": 3.0}, {"delta": 0.16, "frequency": 12.0})),
    Trigger(name="wanet", channel="image", make=make_wanet,
            description="Smooth fixed warping field resampling the image (WaNet)",
            defaults={"grid_size": 4, "strength": 0.5, "pattern_seed": 0},
            scan_points=({"strength": 2.0}, {"strength": 8.0})),
    Trigger(name="text-prefix", channel="text", make=make_text_prefix,
            description="A token prepended to the text (BadTextTower's 'xbtd')",
            defaults={"token": "xbtd"}),
    Trigger(name="text-suffix", channel="text", make=make_text_suffix,
            description="A token or sentence appended to the text (ToxicTextCLIP-style)",
            defaults={"token": "xbtd"}),
)
