"""DualEncoder over an open_clip model."""

from __future__ import annotations

import torch

from dife_core.model import DualEncoder, Preprocess


class OpenClipEncoder(DualEncoder):
    """An open_clip ``CLIP``/``CustomTextCLIP`` model as a DualEncoder.

    Visual branch: every ``visual.*`` key; text branch: everything else except
    ``logit_scale`` (and ``logit_bias``).
    """

    loader = "openclip"

    def __init__(self, model: torch.nn.Module, tokenizer, preprocess: Preprocess, *,
                 architecture: dict, name: str = "model"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.architecture = architecture
        self.name = name
        self._fingerprint = None

    def is_visual_param(self, name: str) -> bool:
        return name.startswith("visual.")

    def tokenize(self, strings) -> torch.Tensor:
        return self.tokenizer(list(strings))

    def _image_forward(self, pixels):
        return self.model.encode_image(pixels)

    def _text_forward(self, strings):
        tokens = self.tokenize(strings).to(self.device)
        return self.model.encode_text(tokens)


def build_custom(architecture: dict, *, name: str = "model") -> OpenClipEncoder:
    """Build an open_clip CLIP from a custom architecture config (random init).

    ``architecture`` is open_clip's model-config JSON shape:
    ``{"embed_dim", "vision_cfg": {...}, "text_cfg": {...}}`` plus optional
    ``"quick_gelu"`` and ``"preprocess"`` (mean/std/interpolation overrides).
    """
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer

    cfg = {k: v for k, v in architecture.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    model = CLIP(**cfg)
    ctx = architecture.get("text_cfg", {}).get("context_length", 77)
    tok = SimpleTokenizer(context_length=ctx)
    image_size = architecture["vision_cfg"].get("image_size", 224)
    pp = dict(architecture.get("preprocess") or {})
    pp.setdefault("image_size", image_size if isinstance(image_size, int) else image_size[0])
    return OpenClipEncoder(model, tok, Preprocess(**pp), architecture=architecture, name=name)
