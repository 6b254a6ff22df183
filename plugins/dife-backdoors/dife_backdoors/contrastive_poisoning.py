"""ContrastivePoisoning (Carlini & Terzis, ICLR'22; BadNet patch as in CleanCLIP).

A small share of the training pairs is poisoned: the image gets the trigger
(by default a fixed random-noise patch) and its caption is replaced by a
target-class caption. Contrastive training then continues from the clean
checkpoint on the poisoned pairs, both towers trainable, so the trigger
becomes an image feature that the text tower reads as the target class.

The builder is generic over the image trigger: another data-poisoning attack
with a different trigger (Blended, SIG, WaNet) is a config subclass with a
different ``trigger`` / ``trigger_params`` default and its own card, and
reuses :func:`build_poisoning`.

Native validation (stored in the card): zero-shot target success TS on
triggered test images of every class but the target, and clean zero-shot
accuracy, for the poisoned model and for the clean model it started from.
"""

from __future__ import annotations

from typing import Optional

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

TARGET_CAPTIONS = ("templates", "natural")


def _doc(default, doc: str, **kw):
    return attrs.field(default=default, metadata={"doc": doc}, **kw)


@attrs.frozen
class PoisoningConfig:
    """Data-poisoning parameters, adapted to the embedded world.

    CleanCLIP poisons 1,500 of 500,000 CC3M pairs (0.3 %) with a 16-px patch
    on 224-px images and pretrains for 64 epochs. Our attacks fine-tune the
    clean tiny CLIP for 200 steps on a CPU, so the backdoor must form from a
    few thousand poisoned exposures: 5 % of the pairs, an 8-px patch on
    32-px images (1/4 of the side), lr 1e-3 (half the clean recipe's peak).
    Measured on the test world: 2 % / 1/8 patch / lr 5e-4 gave TS 0.04;
    2 % / 1/4 / 1e-3 gave 0.85; 5 % / 1/4 / 1e-3 gave 0.95 (docs/attacks.md).
    Poisoned captions are natural target-class captions: with the class
    templates instead, the text tower co-adapts to the trigger and the
    default world's branch swap reads ``coupled`` (downstream TS 0.49); with
    natural captions the footprint is ``visual`` (downstream TS 0.99).
    """

    target: Optional[str] = _doc(None, "target class (default: the world's target)")
    trigger: str = _doc("patch", "registered image trigger stamped on poisoned images")
    trigger_params: dict = _doc(attrs.Factory(dict),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")
    poison_rate: float = _doc(0.05, "share of training pairs poisoned (CleanCLIP: 0.003 of CC3M)")
    target_captions: str = _doc("natural", "poisoned captions: 'natural' (captions of target-class pairs, "
                                           "as Carlini & Terzis) or 'templates' "
                                           "(the world's class templates with the target)")
    n_pairs: int = _doc(0, "training pairs used (0 = all of the world's train pairs)")
    steps: int = _doc(200, "training steps from the clean checkpoint")
    batch_size: int = _doc(256, "pairs per step")
    lr: float = _doc(1e-3, "AdamW peak learning rate (warm-up, cosine decay)")
    warmup: int = _doc(20, "warm-up steps")
    weight_decay: float = _doc(0.1, "AdamW weight decay")

    def __attrs_post_init__(self):
        if not 0.0 < self.poison_rate < 1.0:
            raise ValueError(f"poison_rate must be in (0, 1); got {self.poison_rate}")
        if self.target_captions not in TARGET_CAPTIONS:
            raise ValueError(
                f"target_captions must be one of {', '.join(TARGET_CAPTIONS)}; got {self.target_captions!r}")
        if self.steps < 1 or self.batch_size < 2 or self.n_pairs < 0:
            raise ValueError("need steps >= 1, batch_size >= 2 and n_pairs >= 0")


@attrs.frozen
class ContrastivePoisoningConfig(PoisoningConfig):
    """ContrastivePoisoning: the BadNet patch (random noise, fixed bottom-right corner, 1/4 of the side)."""

    trigger_params: dict = _doc(attrs.Factory(lambda: {"size": 0.25}),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")


CARD = AttackCard(
    name="contrastive-poisoning",
    title="ContrastivePoisoning (BadNet patch)",
    route="data poisoning",
    modifies="both towers",
    trigger_channel="image",
    native_protocol="zero-shot TS",
    native_interface="zero-shot-classification",
    reference=("Carlini & Terzis, Poisoning and Backdooring Contrastive Learning, ICLR 2022; "
               "patch as in CleanCLIP (Bansal et al., ICCV 2023)"),
    probe="branch-swap",
)


def _target(world, cfg) -> str:
    target = cfg.target or world.target
    if target not in world.classnames:
        raise InvalidInputError(f"config.target: {target!r} is not a class of world {world.name}; "
                                f"classes: {', '.join(world.classnames)}.")
    return target


def poison_pairs(world, cfg, trigger, *, seed: int):
    """The poisoned training set: ``(images, captions, poisoned_indices)``.

    Poisoned pairs are drawn from pairs whose class is not the target; their
    images get the trigger and their captions become target-class captions.
    """
    import numpy as np
    import torch

    pairs = world.extras.get("train_pairs") if world.extras else None
    if pairs is None or not pairs.captions:
        raise InvalidInputError(f"world {world.name} has no contrastive training pairs (extras['train_pairs']).")
    target = _target(world, cfg)
    t_idx = list(world.classnames).index(target)
    rng = np.random.default_rng(seed)
    n = len(pairs)
    keep = np.arange(n) if not cfg.n_pairs or cfg.n_pairs >= n else np.sort(rng.choice(n, cfg.n_pairs, replace=False))
    images = pairs.images[torch.as_tensor(keep)]
    if images.dtype == torch.uint8:
        images = images.float().div_(255.0)
    else:
        images = images.clone()
    captions = [pairs.captions[i] for i in keep]
    labels = np.asarray(pairs.labels)[keep] if pairs.labels is not None else np.full(len(keep), -1)
    candidates = np.flatnonzero(labels != t_idx)
    n_poison = max(1, round(cfg.poison_rate * len(keep)))
    if n_poison > len(candidates):
        raise InvalidInputError(f"poison_rate {cfg.poison_rate} asks for {n_poison} poisoned pairs; "
                                f"only {len(candidates)} non-target pairs exist.")
    chosen = np.sort(rng.choice(candidates, n_poison, replace=False))
    if cfg.target_captions == "templates":
        pool = [t.format(target) for t in world.templates]
    else:
        pool = [c for c, y in zip(captions, labels) if int(y) == t_idx]
        if not pool:
            raise InvalidInputError(
                f"no natural {target!r} captions among the training pairs; use target_captions = 'templates'.")
    picks = rng.integers(len(pool), size=n_poison)
    sel = torch.as_tensor(chosen)
    images[sel] = trigger(images[sel], seed=seed)
    for i, p in zip(chosen.tolist(), picks.tolist()):
        captions[i] = pool[p]
    return images, captions, chosen


def native_zero_shot(encoder, world, trigger, target: str, *, seed: int = 0) -> dict:
    """Zero-shot TS on triggered non-target test images and clean accuracy (first template)."""
    import numpy as np
    import torch

    from dife_core.building import embed_images
    from dife_core.metrics import strict_argmax
    from dife_core.utility import class_prompts, encode_texts

    test = world.classification
    labels = np.asarray(test.labels)
    t_idx = list(world.classnames).index(target)
    text = encode_texts(encoder, class_prompts(world.classnames, world.templates[0]))
    clean_pred = strict_argmax(embed_images(encoder, test.images) @ text.T).numpy()
    keep = torch.as_tensor(np.flatnonzero(labels != t_idx))
    trig_pred = strict_argmax(embed_images(encoder, test.images[keep], trigger=trigger, seed=seed) @ text.T).numpy()
    return {"ts": float((trig_pred == t_idx).mean()), "clean_acc": float((clean_pred == labels).mean())}


def _own_trigger_params(cfg) -> dict:
    """``cfg.trigger_params`` without the defaults the config class sets for
    another trigger family: ``trigger = "blend"`` on ContrastivePoisoning must
    not inherit the patch's ``size``."""
    fields = attrs.fields_dict(type(cfg))
    params = dict(cfg.trigger_params)
    if cfg.trigger != fields["trigger"].default:
        default = fields["trigger_params"].default
        inherited = default.factory() if isinstance(default, attrs.Factory) else dict(default or {})
        params = {k: v for k, v in params.items() if not (k in inherited and inherited[k] == v)}
    return params


def build_poisoning(ctx):
    """Builder shared by the data-poisoning attacks (any registered image trigger)."""
    from dife_core.attacks import BuildResult
    from dife_core.building import resolve_trigger, trigger_card, wants_progress
    from dife_core.training import contrastive_train

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    target = _target(world, cfg)
    tcard = trigger_card(cfg.trigger, _own_trigger_params(cfg), where="config.trigger_params")
    if tcard["channel"] != "image":
        raise InvalidInputError(f"config.trigger: {cfg.trigger!r} is a {tcard['channel']} trigger; "
                                "data poisoning stamps an image trigger.")
    trigger = resolve_trigger(tcard, where="config.trigger_params")
    reference = native_zero_shot(enc, world, trigger, target, seed=ctx.seed)

    images, captions, poisoned = poison_pairs(world, cfg, trigger, seed=ctx.seed)
    contrastive_train(enc, images, captions, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup=cfg.warmup, weight_decay=cfg.weight_decay, seed=ctx.seed, trainable="all",
                      progress=wants_progress(ctx),
                      description=f"poisoning ({cfg.trigger})", device=ctx.device)
    enc.invalidate_fingerprint()
    measured = native_zero_shot(enc, world, trigger, target, seed=ctx.seed)
    card = {
        "trigger": tcard,
        "source": None,  # every non-target class
        "target": target,
        "native": {"protocol": "zero-shot classification", "metric": "ts", "value": measured["ts"],
                   "reference_value": reference["ts"], "template": world.templates[0],
                   "population": "triggered test images of every class but the target",
                   "poisoned_pairs": int(len(poisoned)), "training_pairs": int(len(captions))},
        "clean_utility": {"clean_acc": measured["clean_acc"], "reference_clean_acc": reference["clean_acc"]},
    }
    return BuildResult(model=enc, card=card)


ATTACKS = (
    Attack(card=CARD, config=ContrastivePoisoningConfig, build=build_poisoning),
)
