"""Clean utility: how good a checkpoint is at its ordinary job.

Reported beside every exposure number: zero-shot
classification accuracy with a prompt template, and text-to-image retrieval
precision at K for class queries.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


@torch.no_grad()
def encode_images(encoder, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """L2-normalised image features ``[N, D]`` (on the CPU)."""
    out = []
    for lo in range(0, int(images.shape[0]), batch_size):
        pix = images[lo: lo + batch_size]
        if pix.dtype == torch.uint8:
            pix = pix.float().div_(255.0)
        out.append(F.normalize(encoder.encode_image(pix).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))


@torch.no_grad()
def encode_texts(encoder, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
    """L2-normalised text features ``[N, D]`` (on the CPU)."""
    texts = list(texts)
    out = [F.normalize(encoder.encode_text(texts[lo: lo + batch_size]).float(), dim=-1).cpu()
           for lo in range(0, len(texts), batch_size)]
    return torch.cat(out)


def class_prompts(classnames: Sequence[str], template: str = "a photo of a {}") -> list:
    return [template.format(c) for c in classnames]


def zero_shot_accuracy(encoder, images, labels, classnames, template: str = "a photo of a {}",
                       *, image_features=None) -> float:
    """Share of images whose own class prompt scores highest (the engine's
    strict-win tie rule: :func:`dife_core.metrics.accuracy`)."""
    from . import metrics as M

    img = image_features if image_features is not None else encode_images(encoder, images)
    txt = encode_texts(encoder, class_prompts(classnames, template))
    return M.accuracy(img @ txt.t(), torch.as_tensor(_np(labels)).long())


def text_to_image_precision(encoder, images, labels, classnames, template: str = "a photo of a {}",
                            k: int = 5, *, image_features=None) -> float:
    """Mean over classes of the share of the top-``k`` images for the class
    prompt that belong to that class."""
    img = image_features if image_features is not None else encode_images(encoder, images)
    txt = encode_texts(encoder, class_prompts(classnames, template))
    top = (txt @ img.t()).topk(min(k, img.shape[0]), dim=1).indices.numpy()
    labels = _np(labels)
    return float((labels[top] == _np(range(len(classnames)))[:, None]).mean())


def clean_utility(encoder, *, classification, pool=None, template: str = "a photo of a {}", k: int = 5) -> dict:
    """``{"clean_acc": zero-shot accuracy on ``classification``, "t2i_p@k": text-to-image
    precision at k on ``pool``}`` (``pool`` defaults to ``classification``)."""
    was_training = encoder.model.training
    encoder.eval()
    try:
        img = encode_images(encoder, classification.images)
        out = {"clean_acc": zero_shot_accuracy(encoder, None, classification.labels, classification.classnames,
                                               template, image_features=img)}
        if pool is not None and pool is not classification:
            img = encode_images(encoder, pool.images)
        src = pool if pool is not None else classification
        out[f"t2i_p@{k}"] = text_to_image_precision(encoder, None, src.labels, src.classnames, template, k,
                                                    image_features=img)
    finally:
        encoder.model.train(was_training)
    return out


def _np(x):
    import numpy as np

    if isinstance(x, torch.Tensor):
        return x.cpu().numpy()
    return np.asarray(list(x) if isinstance(x, range) else x)
