"""Tiny open_clip architectures for tests (random weights, built in milliseconds)."""

from __future__ import annotations

import copy

TINY_VIT = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

TINY_RESNET = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def tiny_arch(kind: str = "vit") -> dict:
    """A copy of the tiny ViT (``"vit"``) or ResNet (``"resnet"``) architecture."""
    return copy.deepcopy({"vit": TINY_VIT, "resnet": TINY_RESNET}[kind])


def tiny_encoder(kind: str = "vit", *, seed: int = 0, name: str = "tiny"):
    """An OpenClipEncoder with seeded random weights."""
    import torch

    from .encoder import build_custom

    torch.manual_seed(seed)
    enc = build_custom(tiny_arch(kind), name=name)
    with torch.no_grad():  # a non-default logit scale, so "which side's scale" is observable
        enc.model.logit_scale.fill_(float(torch.log(torch.tensor(10.0 + seed))))
    enc.invalidate_fingerprint()
    return enc


def write_open_clip_folder(enc, folder, *, weights_name: str = "open_clip_model.safetensors", pickle: bool = False):
    """Save ``enc`` in open_clip's own folder layout (open_clip_config.json + weights)."""
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = {k: v for k, v in enc.architecture.items() if k not in ("preprocess", "tokenizer", "model_name")}
    pp = enc.preprocess
    cfg = {"model_cfg": arch, "preprocess_cfg": {"mean": list(pp.mean), "std": list(pp.std),
                                                  "interpolation": pp.interpolation, "resize_mode": pp.resize_mode}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    sd = {k: v.detach().cpu().contiguous() for k, v in enc.model.state_dict().items()}
    if pickle:
        torch.save(sd, folder / weights_name)
    else:
        save_file(sd, str(folder / weights_name))
    return folder
