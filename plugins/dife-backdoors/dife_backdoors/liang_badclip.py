"""Liang-BadCLIP (Liang et al., CVPR'24): poisoning with a patch optimised against the clean model.

Two stages:

1. **Trigger optimisation** on the clean model (both towers frozen): the
   patch pixels are optimised so that patched non-target images embed near
   the target class's *text* (the mean of its prompt embeddings; textual
   consistency) and near the target class's real *image* embeddings (the
   mean over target-class training images; visual resistance):
   ``loss = -w_text cos(f_V(x + p), u*) - w_image cos(f_V(x + p), v*)``,
   until the clean model's zero-shot head sends more than ``max_clean_ts``
   of a patched batch to the target: the patch resembles the target without
   being an adversarial patch of the clean model, as in the paper (whose
   clean towers under the trigger stay at chance).
2. **Poisoning** with that patch: ContrastivePoisoning's recipe
   (:func:`build_poisoning`) with the optimised patch as a ``pixel-patch``
   trigger and, by default, natural captions of target-class pairs (Liang
   et al. pair poisoned images with target-related natural captions).

The optimised pixels travel in the card's trigger parameters, so the audit
rebuilds exactly this patch. Native validation as ContrastivePoisoning's:
zero-shot TS and clean accuracy; the card also records how strongly the
patch alone already moves the clean model (``reference_value``).
"""

from __future__ import annotations

from typing import Optional

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import TARGET_CAPTIONS, PoisoningConfig, _doc, _target, build_poisoning
from .triggers import CORNERS, PATCH_LOCATIONS

CARD = AttackCard(
    name="liang-badclip",
    title="Liang-BadCLIP (optimised patch)",
    route="data poisoning with a patch optimised against the clean model",
    modifies="both towers",
    trigger_channel="image",
    native_protocol="zero-shot TS",
    native_interface="zero-shot-classification",
    reference=("Liang et al., BadCLIP: Dual-Embedding Guided Backdoor Attack on Multimodal Contrastive Learning, "
               "CVPR 2024"),
    probe="branch-swap",
)


@attrs.frozen
class LiangBadClipConfig:
    """Liang-BadCLIP's parameters, adapted to the embedded world (see docs/attacks-suite.md).

    The poisoning stage has ContrastivePoisoning's budget (5 % of the pairs,
    a patch 1/4 of the side, lr 1e-3), so the two differ only in the patch:
    with 2 % / 1/8 / 5e-4 the default world's backdoor did not form (TS 0.011).
    Optimised for all 100 steps, the patch alone sent 0.24-0.27 of the clean
    model's non-target images to the target: an adversarial patch of the clean
    backbone, where the paper's clean towers under the trigger stay at chance
    (0.0992). ``max_clean_ts`` stops the optimisation before the patch crosses
    that line (after 9 steps on the default world: clean TS 0.048, poisoned
    TS 0.993).
    """

    target: Optional[str] = _doc(None, "target class (default: the world's target)")
    patch_size: float = _doc(0.25, "patch side as a fraction of the image side")
    location: str = _doc("fixed", "'fixed' at corner or 'random' per image")
    corner: str = _doc("bottom-right", "corner of a fixed patch")
    opt_steps: int = _doc(100, "patch optimisation steps against the clean model")
    opt_batch: int = _doc(128, "non-target images per optimisation step")
    opt_lr: float = _doc(0.1, "Adam learning rate of the patch logits")
    w_text: float = _doc(1.0, "weight of the textual term (patched image near the target text)")
    w_image: float = _doc(1.0, "weight of the visual term (patched image near real target-class images)")
    max_clean_ts: float = _doc(0.1, "stop optimising once the clean model sends this share of a patched batch "
                                    "to the target (1 = never stop)")
    poison_rate: float = _doc(0.05, "share of training pairs poisoned")
    target_captions: str = _doc("natural",
                                "poisoned captions: 'natural' (captions of target-class pairs) or 'templates'")
    n_pairs: int = _doc(0, "training pairs used (0 = all)")
    steps: int = _doc(200, "poisoning training steps from the clean checkpoint")
    batch_size: int = _doc(256, "pairs per step")
    lr: float = _doc(1e-3, "AdamW peak learning rate (warm-up, cosine decay)")
    warmup: int = _doc(20, "warm-up steps")
    weight_decay: float = _doc(0.1, "AdamW weight decay")

    def __attrs_post_init__(self):
        if self.location not in PATCH_LOCATIONS or self.corner not in CORNERS:
            raise ValueError(f"location must be one of {', '.join(PATCH_LOCATIONS)} "
                             f"and corner one of {', '.join(CORNERS)}")
        if not 0.0 < self.patch_size <= 1.0:
            raise ValueError(f"patch_size must be in (0, 1]; got {self.patch_size}")
        if self.opt_steps < 1 or self.opt_batch < 1:
            raise ValueError("need opt_steps >= 1 and opt_batch >= 1")
        if not 0.0 < self.max_clean_ts <= 1.0:
            raise ValueError(f"max_clean_ts must be in (0, 1]; got {self.max_clean_ts}")
        if self.target_captions not in TARGET_CAPTIONS:
            raise ValueError(f"target_captions must be one of {', '.join(TARGET_CAPTIONS)}")

    def poisoning(self, trigger_params: dict) -> PoisoningConfig:
        """The second stage's config: ContrastivePoisoning's with the optimised patch."""
        return PoisoningConfig(target=self.target, trigger="pixel-patch", trigger_params=trigger_params,
                               poison_rate=self.poison_rate, target_captions=self.target_captions,
                               n_pairs=self.n_pairs, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                               warmup=self.warmup, weight_decay=self.weight_decay)


def optimise_patch(encoder, world, cfg, target: str, *, seed: int = 0) -> tuple:
    """Stage 1: ``(pixels [3, k, k] in [0, 1], stats)`` optimised against ``encoder`` (frozen)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dife_core.utility import encode_images, encode_texts

    pairs = world.extras.get("train_pairs") if world.extras else None
    data = pairs if pairs is not None and pairs.labels is not None else world.train
    if data is None or data.labels is None:
        raise InvalidInputError(f"liang-badclip: world {world.name} has no labelled training images "
                                "(extras['train_pairs'] or train).")
    labels = np.asarray(data.labels)
    t_idx = list(world.classnames).index(target)
    tgt, rest = np.flatnonzero(labels == t_idx), np.flatnonzero(labels != t_idx)
    if len(tgt) == 0:
        raise InvalidInputError(f"liang-badclip: no {target!r} images among the training images of {world.name}.")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    encoder.eval()
    u_star = F.normalize(encode_texts(encoder, [t.format(target) for t in world.templates]).mean(0), dim=-1)
    classes = F.normalize(torch.stack([encode_texts(encoder, [t.format(c) for t in world.templates]).mean(0)
                                       for c in world.classnames]), dim=-1)
    v_star = F.normalize(encode_images(encoder, data.images[torch.as_tensor(
        rng.choice(tgt, min(len(tgt), 512), replace=False))]).mean(0), dim=-1)
    h = int(data.images.shape[-1])
    k = max(1, round(cfg.patch_size * h))
    logits = torch.zeros(3, k, k).uniform_(-1, 1, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=cfg.opt_lr)
    for p in encoder.model.parameters():
        p.requires_grad_(False)
    u_star, v_star, classes = u_star.to(encoder.device), v_star.to(encoder.device), classes.to(encoder.device)
    steps_taken, batch_ts, kept, last = 0, 0.0, (0.0, 0.0), logits.detach().clone()
    try:
        for step in range(cfg.opt_steps):
            idx = torch.as_tensor(
                rest[torch.randint(len(rest), (min(cfg.opt_batch, len(rest)),), generator=gen).numpy()])
            x = data.images[idx]
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            x = _stamp(x, torch.sigmoid(logits), cfg, seed=seed + step)
            f = F.normalize(encoder.encode_image(x).float(), dim=-1)
            cos_t, cos_i = (f @ u_star).mean(), (f @ v_star).mean()
            ts_now = float(((f.detach() @ classes.T).argmax(1) == t_idx).float().mean())
            if step and ts_now > cfg.max_clean_ts:
                logits.data.copy_(last)  # the last patch within the budget
                break
            last, batch_ts, kept = logits.detach().clone(), ts_now, (float(cos_t.detach()), float(cos_i.detach()))
            loss = -(cfg.w_text * cos_t + cfg.w_image * cos_i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps_taken = step + 1
    finally:
        for p in encoder.model.parameters():
            p.requires_grad_(True)
    pixels = torch.sigmoid(logits.detach())
    stats = {"final_text_cos": round(kept[0], 4), "final_image_cos": round(kept[1], 4),
             "opt_steps": cfg.opt_steps, "steps_taken": steps_taken, "batch_clean_ts": round(batch_ts, 4)}
    return pixels, stats


def _stamp(x, patch, cfg, *, seed: int):
    """Differentiable stamping of ``patch`` (same placement rule as the ``pixel-patch`` family)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    px = max(1, round(cfg.patch_size * min(h, w)))
    if patch.shape[-1] != px:
        patch = F.interpolate(patch.unsqueeze(0), size=(px, px), mode="bilinear", align_corners=False).squeeze(0)
    if cfg.location == "fixed":
        top = {"top": 0, "bottom": h - px}.get(cfg.corner.split("-")[0], (h - px) // 2)
        left = {"left": 0, "right": w - px}.get(cfg.corner.split("-")[-1], (w - px) // 2)
        tops, lefts = [top] * n, [left] * n
    else:
        g = torch.Generator().manual_seed(int(seed))
        tops = torch.randint(0, h - px + 1, (n,), generator=g).tolist()
        lefts = torch.randint(0, w - px + 1, (n,), generator=g).tolist()
    mask = torch.zeros(n, 1, h, w, device=x.device)
    canvas = torch.zeros(n, 3, h, w, device=x.device)
    for i, (t, left) in enumerate(zip(tops, lefts)):
        mask[i, :, t:t + px, left:left + px] = 1
        canvas[i, :, t:t + px, left:left + px] = patch
    return x * (1 - mask) + canvas * mask


def build(ctx):
    from dife_core.attacks import BuildContext

    from .learned_triggers import to_nested

    cfg, world = ctx.config, ctx.world
    target = _target(world, cfg)
    pixels, stats = optimise_patch(ctx.clean, world, cfg, target, seed=ctx.seed)
    params = {"pixels": to_nested(pixels), "size": cfg.patch_size, "location": cfg.location, "corner": cfg.corner}
    inner = BuildContext(clean=ctx.clean, world=world, config=cfg.poisoning(params), seed=ctx.seed,
                         device=ctx.device, progress=ctx.progress)
    result = build_poisoning(inner)
    result.card["native"]["patch_optimisation"] = stats
    result.card["native"]["reference_note"] = ("reference_value: the optimised patch on the clean model "
                                               "before poisoning")
    return result


ATTACKS = (Attack(card=CARD, config=LiangBadClipConfig, build=build),)
