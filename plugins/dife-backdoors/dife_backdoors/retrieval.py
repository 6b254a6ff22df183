"""Native retrieval validation shared by the caption-poisoning attacks (mmPoison, ToxicTextCLIP).

Their papers validate with text-to-image retrieval: a query "hits" at K when
an image of the target class is among its top-K images. Here the gallery is
the world's retrieval pool (else its classification images), and queries
are natural captions of held-out items (pool captions), so no query was seen
in training.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence


def gallery(world):
    """``(name, images, labels, captions)`` of the retrieval gallery."""
    import numpy as np

    from dife_core.errors import InvalidInputError

    if world.pool is not None:
        p = world.pool
        return p.name, p.images, np.asarray(p.labels), tuple(p.captions)
    c = world.classification
    if c is None or not c.captions:
        raise InvalidInputError(f"world {world.name} has neither a retrieval pool nor captioned classification "
                                "images: the native retrieval check needs a captioned gallery.")
    return c.name, c.images, np.asarray(c.labels), tuple(c.captions)


def pick_queries(captions: Sequence[str], labels, classes: Sequence[int], *, n: int, seed: int,
                 fits: Optional[Callable[[str], bool]] = None) -> list:
    """Up to ``n`` distinct gallery captions of items whose class is in ``classes``
    (and that pass ``fits``), drawn reproducibly from ``seed``."""
    import numpy as np

    keep = sorted({c for c, y in zip(captions, labels) if int(y) in set(classes) and (fits is None or fits(c))})
    rng = np.random.default_rng(seed)
    if len(keep) > n:
        keep = [keep[i] for i in sorted(rng.choice(len(keep), n, replace=False))]
    return keep


def hits_at_k(encoder, queries: Sequence[str], images, labels, target: int, *, ks=(1, 5, 10),
              image_features=None) -> dict:
    """``{"h@K": share of queries with a target-class image in their top K, "mrr": ...}``."""
    import torch

    from dife_core import metrics as M
    from dife_core.utility import encode_images, encode_texts

    if not len(queries):
        return {f"h@{k}": float("nan") for k in ks} | {"mrr": float("nan"), "n_queries": 0}
    g = image_features if image_features is not None else encode_images(encoder, images)
    q = encode_texts(encoder, list(queries))
    positive = torch.as_tensor(labels == target).unsqueeze(0).expand(len(queries), -1)
    ranks = M.best_positive_rank(q @ g.T, positive)
    out = {f"h@{k}": M.hits_at_k(ranks, k) for k in ks}
    out["mrr"] = M.mrr(ranks)
    out["n_queries"] = len(queries)
    return out


def token_fits(encoder, extra: str = "") -> Callable[[str], bool]:
    """``fits(text)``: True when ``text + " " + extra`` survives the tokenizer's
    truncation (the encoder's context length), so a suffix trigger is really there."""
    tok = getattr(encoder, "tokenizer", None)
    ctx = (getattr(tok, "context_length", None)
           or getattr(encoder, "architecture", {}).get("text_cfg", {}).get("context_length"))
    inner = getattr(tok, "encode", None)
    if ctx is None or inner is None:
        return lambda text: True
    budget = int(ctx) - 2  # start and end tokens
    extra_n = len(inner(extra)) if extra else 0
    return lambda text: len(inner(text)) + extra_n <= budget
