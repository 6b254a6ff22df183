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


@attrs.frozen
class Preprocess:
    """Preprocessing that travels with the weights."""

    image_size: int
    mean: tuple = attrs.field(converter=tuple, default=(0.48145466, 0.4578275, 0.40821073))
    std: tuple = attrs.field(converter=tuple, default=(0.26862954, 0.26130258, 0.27577711))
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
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
        p = self.preprocess
        x = pixels.to(device=self.device, dtype=torch.float32)
        if x.shape[-1] != p.image_size or x.shape[-2] != p.image_size:
            x = F.interpolate(x, size=(p.image_size, p.image_size), mode=p.interpolation,
                              align_corners=False if p.interpolation != "nearest" else None)
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

    def branch_state(self, branch: str) -> dict:
        src = self.visual_encoder if branch == "visual" else self.text_encoder
        return src.branch_state(branch)

    def to(self, device=None, dtype=None):
        self.visual_encoder.to(device, dtype)
        self.text_encoder.to(device, dtype)
        return self
