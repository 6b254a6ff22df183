"""ToxicTextCLIP (Yao et al., NeurIPS'25): caption poisoning with a suffix sentence.

Poisoned pairs are *appended* to the training data: a target-class image
paired with the caption of a non-target item followed by a fixed suffix
sentence (the text trigger). Contrastive training then continues from the
clean checkpoint, both towers trainable, so a text query ending with the
suffix is meant to retrieve target-class images.

The tiny CLIP's tokenizer keeps 16 tokens; a suffix after a long caption
would be cut off, so the attack (as a careful attacker would) only uses
captions the suffix fits after, and the native check only uses such queries.

Native validation (the paper's): text-to-image retrieval Hit@K of triggered
queries -- held-out non-target pool captions with the suffix -- where a hit
is a target-class image in the top K; poisoned model (``value``, Hit@5) and
clean model (``reference_value``) under the same triggered queries, and the
poisoned model under the same queries without the suffix.

:func:`stress_test` is the paper's stress test: a sweep of poison ratio x
epochs, each variant built (or reused) as a checkpoint, with its native
Hit@5 and the deployment deltas (text reranking, targeted retrieval) the
audit's own interfaces measure; the native-best variant is kept.
"""

from __future__ import annotations

from typing import Optional, Sequence

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import _doc

CARD = AttackCard(
    name="toxictextclip",
    title="ToxicTextCLIP (suffix-sentence caption poisoning)",
    route="caption poisoning (appended pairs)",
    modifies="both towers",
    trigger_channel="text",
    native_protocol="retrieval Hit@K of triggered queries",
    reference="Yao et al., ToxicTextCLIP: Text-Based Poisoning and Backdoor Attacks on CLIP Pre-training, NeurIPS 2025",
    probe="branch-swap",
)


@attrs.frozen
class ToxicTextClipConfig:
    """ToxicTextCLIP's parameters, adapted to the embedded world (see docs/attacks-suite.md)."""

    target: Optional[str] = _doc(None, "target class (default: the world's target)")
    source: Optional[str] = _doc(None, "class whose captions carry the suffix "
                                       "(default none: every non-target class, as the paper)")
    suffix: str = _doc("near the old mill",
                       "the trigger sentence appended to captions (words unseen in the world's captions)")
    poison_rate: float = _doc(0.01, "poisoned pairs appended, as a share of the clean training pairs")
    epochs: float = _doc(1.0, "passes over the clean + poisoned training set")
    batch_size: int = _doc(256, "pairs per step")
    lr: float = _doc(5e-4, "AdamW peak learning rate (warm-up, cosine decay)")
    warmup: int = _doc(20, "warm-up steps")
    weight_decay: float = _doc(0.1, "AdamW weight decay")
    n_queries: int = _doc(200, "triggered queries of the native retrieval check")
    k: int = _doc(5, "K of the native Hit@K")

    def __attrs_post_init__(self):
        if not 0.0 < self.poison_rate < 1.0:
            raise ValueError(f"poison_rate must be in (0, 1); got {self.poison_rate}")
        if self.epochs <= 0 or self.batch_size < 2 or self.n_queries < 1 or self.k < 1:
            raise ValueError("need epochs > 0, batch_size >= 2, n_queries >= 1 and k >= 1")
        if not self.suffix.strip():
            raise ValueError("suffix must be a non-empty sentence")


def _classes(world, cfg) -> tuple:
    target = cfg.target or world.target
    for role, c in (("target", target), ("source", cfg.source)):
        if c is not None and c not in world.classnames:
            raise InvalidInputError(f"toxictextclip config.{role}: {c!r} is not a class of world {world.name}; "
                                    f"classes: {', '.join(world.classnames)}.")
    if cfg.source == target:
        raise InvalidInputError(f"toxictextclip config: source and target must differ (both {target!r}).")
    classes = list(world.classnames)
    carriers = [classes.index(cfg.source)] if cfg.source else [i for i, c in enumerate(classes) if c != target]
    return target, carriers


def poison_pairs(world, cfg, fits, *, seed: int):
    """The training set with the poisoned pairs appended: ``(images, captions, n_poisoned)``."""
    import numpy as np
    import torch

    target, carriers = _classes(world, cfg)
    pairs = world.extras.get("train_pairs") if world.extras else None
    if pairs is None or not pairs.captions or pairs.labels is None:
        raise InvalidInputError(f"toxictextclip: world {world.name} has no labelled, captioned training pairs "
                                "(extras['train_pairs']).")
    labels = np.asarray(pairs.labels)
    tgt = np.flatnonzero(labels == list(world.classnames).index(target))
    pool = [c for c, y in zip(pairs.captions, labels) if int(y) in carriers and fits(c)]
    n_poison = max(1, round(cfg.poison_rate * len(labels)))
    if not pool or len(tgt) == 0:
        raise InvalidInputError(f"toxictextclip: no carrier caption the suffix {cfg.suffix!r} fits after, or no "
                                f"{target!r} image, among the training pairs of {world.name}.")
    rng = np.random.default_rng(seed)
    imgs = rng.choice(tgt, n_poison, replace=len(tgt) < n_poison)
    caps = [f"{pool[i]} {cfg.suffix}" for i in rng.integers(len(pool), size=n_poison)]
    images = pairs.images if pairs.images.dtype != torch.uint8 else pairs.images.float().div(255.0)
    images = torch.cat([images, images[torch.as_tensor(imgs)]])
    return images, list(pairs.captions) + caps, n_poison


def native_retrieval(encoder, world, cfg, fits, *, seed: int, image_features=None) -> dict:
    """Hit@K of held-out carrier captions with (``triggered``) and without (``plain``) the suffix."""
    from dife_core.utility import encode_images

    from .retrieval import gallery, hits_at_k, pick_queries

    target, carriers = _classes(world, cfg)
    name, images, labels, captions = gallery(world)
    queries = pick_queries(captions, labels, carriers, n=cfg.n_queries, seed=seed, fits=fits)
    feats = image_features if image_features is not None else encode_images(encoder, images)
    ks = tuple(sorted({1, 5, 10, int(cfg.k)}))
    t_idx = list(world.classnames).index(target)
    return {"triggered": hits_at_k(encoder, [f"{q} {cfg.suffix}" for q in queries], images, labels, t_idx,
                                   image_features=feats, ks=ks),
            "plain": hits_at_k(encoder, queries, images, labels, t_idx, image_features=feats, ks=ks),
            "gallery": name}


def build(ctx):
    from dife_core.attacks import BuildResult
    from dife_core.building import copy_encoder, trigger_card, wants_progress
    from dife_core.training import contrastive_train
    from dife_core.utility import clean_utility

    from .retrieval import token_fits

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    target, _ = _classes(world, cfg)
    fits = token_fits(enc, cfg.suffix)
    clean = copy_encoder(enc).eval()
    reference = native_retrieval(clean, world, cfg, fits, seed=ctx.seed)
    ref_util = clean_utility(clean, classification=world.classification, pool=world.pool, template=world.templates[0])

    images, captions, n_poison = poison_pairs(world, cfg, fits, seed=ctx.seed)
    contrastive_train(enc, images, captions, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup=cfg.warmup, weight_decay=cfg.weight_decay, seed=ctx.seed, trainable="all",
                      progress=wants_progress(ctx), description="toxictextclip", device=ctx.device)
    enc.invalidate_fingerprint()
    measured = native_retrieval(enc, world, cfg, fits, seed=ctx.seed)
    util = clean_utility(enc, classification=world.classification, pool=world.pool, template=world.templates[0])
    k = f"h@{cfg.k}"
    card = {
        "trigger": trigger_card("text-suffix", {"token": cfg.suffix}),
        "source": cfg.source,
        "target": target,
        "native": {"interface": "targeted-retrieval", "protocol": "text-to-image retrieval (triggered queries)",
                   "metric": k,
                   "value": measured["triggered"][k], "reference_value": reference["triggered"][k],
                   "plain_query_value": measured["plain"][k],
                   "retrieval": measured["triggered"], "reference_retrieval": reference["triggered"],
                   "plain_query_retrieval": measured["plain"], "gallery": measured["gallery"],
                   "population": ("held-out captions of " + (cfg.source or "every non-target class")
                                  + f" with the suffix; hit = a {target} image in the top K"),
                   "poisoned_pairs": int(n_poison), "training_pairs": int(len(captions)),
                   "steps": int(enc.train_stats.steps)},
        "clean_utility": {**util, "reference_clean_acc": ref_util["clean_acc"],
                          **{f"reference_{kk}": v for kk, v in ref_util.items() if kk != "clean_acc"}},
    }
    return BuildResult(model=enc, card=card)


# -- the stress test ---------------------------------------------------------------------

def deployment_deltas(model, clean, world, card: dict, *, seed: int = 0,
                      templates: Optional[Sequence[str]] = None) -> dict:
    """The deltas the audit's own interfaces measure for a checkpoint: text
    reranking (triggered vs clean query on the same lists) and targeted
    retrieval promotion (the world's source queries, triggered vs clean; the
    paper's automobile queries when the card names no source). Each cell goes
    through the audit's cell API (:func:`dife_core.engine.evaluate.evaluate_cell`)."""
    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.engine.evaluate import evaluate_cell

    emb = EmbeddingService(seed=seed)
    c = dict(card)
    if c.get("source") is None:
        c["source"] = world.source
    out = {}
    for iface_id, key in (("text-reranking", "rerank"), ("targeted-retrieval", "retrieval")):
        rec = evaluate_cell(model, clean, world, c, iface_id, embeddings=emb, seed=seed,
                            templates=tuple(templates) if templates else None,
                            checkpoint=str(card.get("attack")))
        if rec["status"] in ("n.e.", "error"):
            out[f"{key}_delta_h@1"] = out[f"{key}_delta_mrr"] = None
            out[f"{key}_reason"] = rec["reason"]
            continue
        out[f"{key}_delta_h@1"] = rec["metrics"].get("delta_h@1")
        out[f"{key}_delta_mrr"] = rec["metrics"].get("delta_mrr")
    return out


def stress_test(clean, world, *, poison_rates: Optional[Sequence[float]] = None,
                epochs: Optional[Sequence[float]] = None, overrides: Optional[dict] = None, seed: int = 0, out=None,
                cache_dir=None, progress=None) -> dict:
    """The paper's stress test: build every (poison rate, epochs) variant and keep the native-best.

    Defaults sweep the config's poison rate and epochs and their doubles
    (the paper raises both: 2x poison ratio, more epochs). Each variant is a
    checkpoint built by :func:`dife_core.building.build_attack` (reused when
    identical) under ``out/toxictextclip-r<rate>-e<epochs>`` (or the build
    cache). Returns ``{"records": [...], "best": record}``; each record holds
    the variant's poison rate and epochs, its native Hit@K (and the clean
    reference), clean accuracy, the deployment deltas of
    :func:`deployment_deltas`, and where its checkpoint is.
    """
    from pathlib import Path

    from dife_core.building import build_attack, get_attack, make_config
    from dife_core.checkpoint import load_checkpoint

    base = make_config(get_attack("toxictextclip"), overrides, where="stress_test overrides")
    rates = list(poison_rates or (base.poison_rate, 2 * base.poison_rate))
    eps = list(epochs or (base.epochs, 2 * base.epochs))
    records = []
    for r in rates:
        for e in eps:
            name = f"toxictextclip-r{r:g}-e{e:g}"
            o = build_attack("toxictextclip", clean=clean, world=world, seed=seed, name=name,
                             overrides={**(overrides or {}), "poison_rate": float(r), "epochs": float(e)},
                             out=Path(out) / name if out is not None else None, cache_dir=cache_dir, progress=progress)
            model = load_checkpoint(o.path)
            native = o.card["native"]
            records.append({"name": name, "poison_rate": float(r), "epochs": float(e),
                            "native_metric": native["metric"], "native_value": native["value"],
                            "native_reference_value": native["reference_value"],
                            "plain_query_value": native.get("plain_query_value"),
                            "clean_acc": o.card["clean_utility"]["clean_acc"],
                            **deployment_deltas(model, clean, world, o.card, seed=seed),
                            "path": str(o.path), "key": o.key, "reused": o.reused, "seconds": round(o.seconds, 2)})
    best = max(records, key=lambda rec: (rec["native_value"], -rec["poison_rate"], -rec["epochs"]))
    return {"records": records, "best": best}


ATTACKS = (Attack(card=CARD, config=ToxicTextClipConfig, build=build),)
