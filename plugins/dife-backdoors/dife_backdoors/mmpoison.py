"""mmPoison (Yang et al., ICML'23): dirty-label pair swapping, class to class.

A share of the training pairs whose caption describes the *source* class
get their image swapped for an image of the *target* class (the paper's
attack III, "class to class"); contrastive training then continues from the
clean checkpoint with both towers trainable. There is no trigger: the
poisoned behaviour is carried by the natural source text, so the card's
trigger channel is ``none`` -- the audit's text-query interfaces take the
plain source text as the triggered input (a relative metric then needs the
clean reference model).

Native validation (the paper's): text-to-image retrieval Hit@K of source
queries -- natural captions of held-out source-class pool items -- where a
hit is a target-class image in the top K; for the poisoned model (``value``,
Hit@5) and the clean one (``reference_value``).
"""

from __future__ import annotations

from typing import Optional

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import _doc

CARD = AttackCard(
    name="mmpoison",
    title="mmPoison (class-to-class pair swapping)",
    route="dirty-label data poisoning",
    modifies="both towers",
    trigger_channel="none",
    native_protocol="retrieval Hit@K of source queries",
    reference="Yang et al., Data Poisoning Attacks Against Multimodal Encoders, ICML 2023",
    probe="branch-swap",
)


@attrs.frozen
class MmPoisonConfig:
    """mmPoison's parameters, adapted to the embedded world (see docs/attacks-suite.md)."""

    source: Optional[str] = _doc(None, "class whose captions are re-paired (default: the world's source)")
    target: Optional[str] = _doc(None, "class whose images they are paired with (default: the world's target)")
    poison_rate: float = _doc(0.03, "share of training pairs poisoned (source-class pairs whose image is swapped)")
    steps: int = _doc(200, "training steps from the clean checkpoint")
    batch_size: int = _doc(256, "pairs per step")
    lr: float = _doc(5e-4, "AdamW peak learning rate (warm-up, cosine decay)")
    warmup: int = _doc(20, "warm-up steps")
    weight_decay: float = _doc(0.1, "AdamW weight decay")
    n_queries: int = _doc(200, "source queries of the native retrieval check")
    k: int = _doc(5, "K of the native Hit@K")

    def __attrs_post_init__(self):
        if not 0.0 < self.poison_rate < 1.0:
            raise ValueError(f"poison_rate must be in (0, 1); got {self.poison_rate}")
        if self.steps < 1 or self.batch_size < 2 or self.n_queries < 1 or self.k < 1:
            raise ValueError("need steps >= 1, batch_size >= 2, n_queries >= 1 and k >= 1")


def _classes(world, cfg, attack: str) -> tuple:
    source = cfg.source or world.source
    target = cfg.target or world.target
    for role, c in (("source", source), ("target", target)):
        if c not in world.classnames:
            raise InvalidInputError(f"{attack} config.{role}: {c!r} is not a class of world {world.name}; "
                                    f"classes: {', '.join(world.classnames)}.")
    if source == target:
        raise InvalidInputError(f"{attack} config: source and target must differ (both {source!r}).")
    return source, target


def _pairs(world, attack: str):
    pairs = world.extras.get("train_pairs") if world.extras else None
    if pairs is None or not pairs.captions or pairs.labels is None:
        raise InvalidInputError(f"{attack}: world {world.name} has no labelled, captioned training pairs "
                                "(extras['train_pairs']).")
    return pairs


def swap_pairs(world, cfg, *, seed: int):
    """The poisoned training set: ``(images, captions, swapped indices)``: source-class
    pairs keep their caption and get a target-class image."""
    import numpy as np
    import torch

    source, target = _classes(world, cfg, "mmpoison")
    pairs = _pairs(world, "mmpoison")
    classes = list(world.classnames)
    labels = np.asarray(pairs.labels)
    src = np.flatnonzero(labels == classes.index(source))
    tgt = np.flatnonzero(labels == classes.index(target))
    n_poison = max(1, round(cfg.poison_rate * len(labels)))
    if n_poison > len(src) or len(tgt) == 0:
        raise InvalidInputError(f"mmpoison: poison_rate {cfg.poison_rate} asks for {n_poison} swapped pairs; the "
                                f"training pairs hold {len(src)} {source!r} and {len(tgt)} {target!r} pairs.")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(src, n_poison, replace=False))
    donors = rng.choice(tgt, n_poison, replace=len(tgt) < n_poison)
    images = pairs.images.clone() if pairs.images.dtype != torch.uint8 else pairs.images.float().div(255.0)
    images[torch.as_tensor(chosen)] = images[torch.as_tensor(donors)]
    return images, list(pairs.captions), chosen


def native_retrieval(encoder, world, source: str, target: str, *, n_queries: int, seed: int, k: int = 5) -> dict:
    """Hit@K of natural source-class queries retrieving target-class gallery images."""
    from dife_core.utility import encode_images

    from .retrieval import gallery, hits_at_k, pick_queries

    name, images, labels, captions = gallery(world)
    classes = list(world.classnames)
    queries = pick_queries(captions, labels, [classes.index(source)], n=n_queries, seed=seed)
    feats = encode_images(encoder, images)
    return {**hits_at_k(encoder, queries, images, labels, classes.index(target), image_features=feats,
                        ks=tuple(sorted({1, 5, 10, int(k)}))),
            "gallery": name}


def build(ctx):
    from dife_core.attacks import BuildResult
    from dife_core.building import copy_encoder, wants_progress
    from dife_core.training import contrastive_train
    from dife_core.utility import clean_utility

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    source, target = _classes(world, cfg, "mmpoison")
    clean = copy_encoder(enc).eval()
    reference = native_retrieval(clean, world, source, target, n_queries=cfg.n_queries, seed=ctx.seed, k=cfg.k)
    ref_util = clean_utility(clean, classification=world.classification, pool=world.pool, template=world.templates[0])

    images, captions, swapped = swap_pairs(world, cfg, seed=ctx.seed)
    contrastive_train(enc, images, captions, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup=cfg.warmup, weight_decay=cfg.weight_decay, seed=ctx.seed, trainable="all",
                      progress=wants_progress(ctx), description="mmpoison", device=ctx.device)
    enc.invalidate_fingerprint()
    measured = native_retrieval(enc, world, source, target, n_queries=cfg.n_queries, seed=ctx.seed, k=cfg.k)
    util = clean_utility(enc, classification=world.classification, pool=world.pool, template=world.templates[0])
    k = f"h@{cfg.k}"
    card = {
        "trigger": {"channel": "none", "name": "natural-text",
                    "params": {"text": f"natural captions of the source class ({source})"}},
        "source": source,
        "target": target,
        "native": {"protocol": "text-to-image retrieval (source queries)", "metric": k,
                   "value": measured[k], "reference_value": reference[k],
                   "retrieval": {kk: v for kk, v in measured.items() if kk != "gallery"},
                   "reference_retrieval": {kk: v for kk, v in reference.items() if kk != "gallery"},
                   "gallery": measured["gallery"],
                   "population": f"natural captions of held-out {source} items; hit = a {target} image in the top K",
                   "poisoned_pairs": int(len(swapped)), "training_pairs": int(len(captions))},
        "clean_utility": {**util, "reference_clean_acc": ref_util["clean_acc"],
                          **{f"reference_{kk}": v for kk, v in ref_util.items() if kk != "clean_acc"}},
    }
    return BuildResult(model=enc, card=card)


ATTACKS = (Attack(card=CARD, config=MmPoisonConfig, build=build),)
