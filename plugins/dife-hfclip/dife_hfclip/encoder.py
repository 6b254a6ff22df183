"""DualEncoder over a Hugging Face ``transformers`` CLIP-like model.

A *family* says which model class builds the config, where the branches are
and how text is tokenised. The architecture dict stored in DIFE manifests is
``{"family", "config" (the HF config as a dict), "padding", "max_length",
"text_inputs"}``; the tokenizer travels as files (``save_pretrained``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import attrs
import torch

from dife_core.model import DualEncoder, Preprocess


@attrs.frozen
class Family:
    """One CLIP-like model family served through transformers."""

    model_type: str
    model_class: str  # transformers class name
    config_class: str
    visual_prefixes: tuple
    text_prefixes: tuple
    #: tokenizer padding the family was trained with ("longest" or "max_length")
    padding: str
    #: tokenizer outputs the text tower consumes
    text_inputs: tuple
    mean: tuple
    std: tuple
    resize_mode: str


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

FAMILIES = {
    "clip": Family("clip", "CLIPModel", "CLIPConfig",
                   visual_prefixes=("vision_model.", "visual_projection."),
                   text_prefixes=("text_model.", "text_projection."),
                   padding="longest", text_inputs=("input_ids", "attention_mask"),
                   mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest"),
    # SigLIP: the pooling heads live inside vision_model / text_model; it was
    # trained on max-length padded text without an attention mask.
    "siglip": Family("siglip", "SiglipModel", "SiglipConfig",
                     visual_prefixes=("vision_model.",),
                     text_prefixes=("text_model.",),
                     padding="max_length", text_inputs=("input_ids",),
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize_mode="squash"),
}


def family_for(model_type: str) -> Optional[Family]:
    return FAMILIES.get(model_type)


class HFClipEncoder(DualEncoder):
    """A transformers ``CLIPModel`` / ``SiglipModel`` as a DualEncoder."""

    loader = "hfclip"

    def __init__(self, model: torch.nn.Module, tokenizer, preprocess: Preprocess, *,
                 family: Family, architecture: dict, name: str = "model"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.family = family
        self.architecture = architecture
        self.name = name
        self._fingerprint = None

    # -- branches -------------------------------------------------------------
    def is_visual_param(self, name: str) -> bool:
        return name.startswith(self.family.visual_prefixes)

    def is_text_param(self, name: str) -> bool:
        return name.startswith(self.family.text_prefixes)

    @property
    def logit_bias(self) -> Optional[float]:
        b = getattr(self.model, "logit_bias", None)
        return float(b.detach().reshape(-1)[0]) if b is not None else None

    # -- forward --------------------------------------------------------------
    def tokenize(self, strings) -> dict:
        arch = self.architecture
        kw = {"padding": arch.get("padding", self.family.padding), "truncation": True,
              "max_length": arch.get("max_length"), "return_tensors": "pt"}
        from dife_core.untrusted import foreign_call

        with foreign_call(self.name, "the tokenizer"):  # a Rust panic is a BaseException
            enc = self.tokenizer(list(strings), **kw)
        return {k: enc[k] for k in arch.get("text_inputs", self.family.text_inputs) if k in enc}

    def _image_forward(self, pixels):
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _text_forward(self, strings):
        inputs = {k: v.to(self.device) for k, v in self.tokenize(strings).items()}
        return _features(self.model.get_text_features(**inputs))

    # -- checkpoint assets ----------------------------------------------------
    def save_assets(self, folder) -> dict:
        """Write the tokenizer beside the weights so a DIFE checkpoint is self-contained."""
        out = Path(folder) / "tokenizer"
        self.tokenizer.save_pretrained(str(out))
        return {"tokenizer": "tokenizer"}


def _features(out):
    """transformers 5 returns a model output whose pooler_output is the projected
    feature; older releases returned the tensor itself."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected output {type(out).__name__} from transformers feature call")
    return pooled
