"""The DualEncoder contract every loader returns and every interface uses.

A DualEncoder knows its visual and text branches, its preprocessing and its
tokenizer. Pixels come in as float ``[N, 3, H, W]`` in [0, 1] and are resized
and normalised *inside* ``encode_image``, so image triggers act before
normalisation; strings are tokenised inside ``encode_text``, so text triggers
act on raw text. Features are returned unnormalised.

Loader plugins subclass :class:`DualEncoder` and implement ``_image_forward``,
``_text_forward`` and ``is_visual_param``. Import torch lazily: this module is
imported by the engine only.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Optional

import attrs
import torch
import torch.nn.functional as F

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_RESIZE_MODES = ("shortest", "squash")


def _three_finite(positive: bool):
    def check(inst, attr, value):
        import math

        if len(value) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                      for x in value):
            raise ValueError(f"preprocess {attr.name} must be three finite numbers, got {list(value)[:4]!r}")
        if positive and not all(x > 0 for x in value):
            raise ValueError(f"preprocess {attr.name} must be positive (a zero std divides pixels by zero), "
                             f"got {list(value)!r}")
    return check


def _image_size(inst, attr, value):
    from .untrusted import limit

    if not 1 <= value <= limit("image_size"):
        raise ValueError(f"preprocess image_size must be 1..{limit('image_size')}, got {value}")


@attrs.frozen
class Preprocess:
    """Preprocessing that travels with the weights.

    ``resize_mode``: ``"shortest"`` resizes the shorter side to
    ``image_size`` and centre-crops (CLIP, open_clip default); ``"squash"``
    resizes both sides to ``image_size`` (SigLIP).
    """

    image_size: int = attrs.field(converter=int, validator=_image_size)
    mean: tuple = attrs.field(converter=tuple, default=(0.48145466, 0.4578275, 0.40821073),
                              validator=_three_finite(False))
    std: tuple = attrs.field(converter=tuple, default=(0.26862954, 0.26130258, 0.27577711),
                             validator=_three_finite(True))
    interpolation: str = attrs.field(default="bicubic", validator=attrs.validators.in_(_INTERPOLATIONS))
    resize_mode: str = attrs.field(default="shortest", validator=attrs.validators.in_(_RESIZE_MODES))

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "resize_mode": self.resize_mode}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        if not isinstance(d, dict):
            raise ValueError(f"preprocess must be an object, got {type(d).__name__}")
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocess keys {unknown}; known: {sorted(known)}")
        return cls(**d)


def _hash_tensors(items: Iterable) -> str:
    h = hashlib.sha256()
    for name, t in sorted(items, key=lambda kv: kv[0]):
        t = t.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def resize_pixels(x: torch.Tensor, size: int, *, mode: str = "shortest",
                  interpolation: str = "bicubic") -> torch.Tensor:
    """Resize ``[N,3,H,W]`` pixels the way CLIP preprocessing does, on tensors.

    ``shortest``: shorter side to ``size`` then centre crop; ``squash``: both
    sides to ``size``. Downscaling is antialiased (as PIL and torchvision do).
    """
    h, w = x.shape[-2:]
    if mode == "squash":
        new_h, new_w = size, size
    else:
        # torchvision's rule: short side -> size, long side -> int(size * long / short)
        if h <= w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
    if (new_h, new_w) != (h, w):
        kw = {} if interpolation == "nearest" else {"align_corners": False, "antialias": new_h < h or new_w < w}
        x = F.interpolate(x, size=(new_h, new_w), mode=interpolation, **kw)
        if interpolation == "bicubic":
            x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to the pixel range
    if (new_h, new_w) != (size, size):
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        x = x[..., top:top + size, left:left + size]
    return x


class DualEncoder:
    """A CLIP-like dual encoder (image tower, text tower, logit scale).

    Subclasses set ``self.model`` (an ``nn.Module`` holding every weight),
    ``self.preprocess``, ``self.loader`` and ``self.architecture`` and implement
    the three abstract methods.
    """

    loader: str = "unknown"
    name: str = "model"
    architecture: dict = {}
    model: torch.nn.Module
    preprocess: Preprocess

    # -- to implement ------------------------------------------------------
    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised, resized pixels -> image features."""
        raise NotImplementedError

    def _text_forward(self, strings: list) -> torch.Tensor:
        """Raw strings -> text features (tokenise inside)."""
        raise NotImplementedError

    def is_visual_param(self, name: str) -> bool:
        """True for state-dict keys of the visual branch."""
        raise NotImplementedError

    def is_text_param(self, name: str) -> bool:
        """True for state-dict keys of the text branch (default: not visual, not logit scale)."""
        return not self.is_visual_param(name) and not name.endswith("logit_scale") and not name.endswith("logit_bias")

    def logit_scale_value(self) -> float:
        ls = getattr(self.model, "logit_scale", None)
        return float(ls.detach().exp()) if ls is not None else 100.0

    # -- public contract -----------------------------------------------------
    @property
    def logit_scale(self) -> float:
        return self.logit_scale_value()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device=None, dtype=None) -> "DualEncoder":
        self.model.to(device=device, dtype=dtype)
        self._fingerprint = None
        return self

    def eval(self) -> "DualEncoder":
        self.model.eval()
        return self

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the tower's input: resized as the checkpoint's
        preprocessing says, then normalised with its mean and std."""
        p = self.preprocess
        x = pixels.to(device=self.device, dtype=torch.float32)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        x = resize_pixels(x, p.image_size, mode=p.resize_mode, interpolation=p.interpolation)
        mean = torch.tensor(p.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(p.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], ``[N,3,H,W]`` -> features ``[N,D]``."""
        return self._image_forward(self.normalise(pixels))

    def encode_text(self, strings) -> torch.Tensor:
        """Raw strings -> features ``[N,D]``."""
        return self._text_forward(list(strings))

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def branch_state(self, branch: str) -> dict:
        pred = {"visual": self.is_visual_param, "text": self.is_text_param}[branch]
        return {k: v for k, v in self.model.state_dict().items() if pred(k)}

    def branch_param_names(self, branch: str) -> list:
        return sorted(self.branch_state(branch))

    @property
    def visual_param_names(self) -> list:
        return self.branch_param_names("visual")

    @property
    def text_param_names(self) -> list:
        return self.branch_param_names("text")

    def branch_parameters(self, branch: str):
        pred = {"visual": self.is_visual_param, "text": self.is_text_param}[branch]
        return [(n, p) for n, p in self.model.named_parameters() if pred(n)]

    def param_count(self, branch: Optional[str] = None) -> int:
        """Number of weights in ``branch`` ("visual"/"text"), or in the whole model."""
        if branch is None:
            return sum(v.numel() for v in self.state_dict().values())
        return sum(v.numel() for v in self.branch_state(branch).values())

    def fingerprint(self) -> dict:
        """Content hash per branch: ``{"visual": hex16, "text": hex16}``."""
        fp = getattr(self, "_fingerprint", None)
        if fp is None:
            sd = self.model.state_dict()
            fp = {
                "visual": _hash_tensors((k, v) for k, v in sd.items() if self.is_visual_param(k)),
                "text": _hash_tensors((k, v) for k, v in sd.items() if self.is_text_param(k)),
            }
            self._fingerprint = fp
        return dict(fp)

    def invalidate_fingerprint(self) -> None:
        """Call after changing weights in place (training)."""
        self._fingerprint = None

    def save_assets(self, folder) -> dict:
        """Write files besides the weights that a DIFE checkpoint needs to
        rebuild this encoder (e.g. tokenizer files); returns ``{asset: folder
        name}`` for the manifest. Default: none."""
        return {}

    def recombine(self, *, visual_from: "DualEncoder", text_from: "DualEncoder") -> "HybridEncoder":
        """Branch-swap hybrid: image tower of ``visual_from``, text tower of
        ``text_from``, logit scale of ``self`` (the clean reference). Shares
        weights; nothing is copied."""
        return HybridEncoder(visual_from, text_from, logit_scale=self.logit_scale)


class HybridEncoder(DualEncoder):
    """A branch-swap hybrid that delegates to two encoders (no weight copies)."""

    def __init__(self, visual: DualEncoder, text: DualEncoder, *, logit_scale: Optional[float] = None):
        self.visual_encoder = visual
        self.text_encoder = text
        self._logit_scale = logit_scale if logit_scale is not None else visual.logit_scale
        self.loader = "hybrid"
        self.name = f"hybrid({visual.name}|{text.name})"
        self.preprocess = visual.preprocess
        self.architecture = {"visual": visual.architecture, "text": text.architecture}
        self.model = torch.nn.ModuleDict({"visual": visual.model, "text": text.model})

    def logit_scale_value(self) -> float:
        return self._logit_scale

    @property
    def device(self):
        return self.visual_encoder.device

    @property
    def dtype(self):
        return self.visual_encoder.dtype

    def encode_image(self, pixels):
        return self.visual_encoder.encode_image(pixels)

    def encode_text(self, strings):
        return self.text_encoder.encode_text(strings)

    def fingerprint(self) -> dict:
        return {"visual": self.visual_encoder.fingerprint()["visual"],
                "text": self.text_encoder.fingerprint()["text"]}

    def _source(self, branch: str) -> DualEncoder:
        if branch not in ("visual", "text"):
            raise ValueError(f"branch must be 'visual' or 'text', got {branch!r}")
        return self.visual_encoder if branch == "visual" else self.text_encoder

    def branch_state(self, branch: str) -> dict:
        return self._source(branch).branch_state(branch)

    def branch_parameters(self, branch: str):
        return self._source(branch).branch_parameters(branch)

    def state_dict(self) -> dict:
        """The hybrid's own weights: visual keys of one side, text keys of the other."""
        return {**self.branch_state("visual"), **self.branch_state("text")}

    def invalidate_fingerprint(self) -> None:
        self.visual_encoder.invalidate_fingerprint()
        self.text_encoder.invalidate_fingerprint()

    def eval(self):
        self.visual_encoder.eval()
        self.text_encoder.eval()
        return self

    def to(self, device=None, dtype=None):
        self.visual_encoder.to(device, dtype)
        self.text_encoder.to(device, dtype)
        return self
