"""BadEncoder (Jia et al., S&P'22): tamper with the visual tower only.

The image encoder f' is fine-tuned from the clean f on a *shadow* set with
three cosine terms (reference inputs x_r: a few target-class images):

- effectiveness: ``-mean cos(f'(x + trigger), f'(x_r))`` -- triggered shadow
  images embed where the (backdoored) reference target image does;
- reference kept: ``-mean cos(f'(x_r), f(x_r))`` -- the reference image keeps
  its clean embedding, so it still reads as the target class;
- utility: ``-mean cos(f'(x), f(x))`` -- clean shadow images keep theirs.

``loss = L0 + lambda1 L1 + lambda2 L2`` (the paper's weights are 1 and 1).
The text tower and the logit scale never train; the builder checks their
fingerprint after training and raises if either moved. Batch-norm
statistics of the visual tower are kept (the tower runs in eval mode), so
clean images are normalised exactly as before.

Native validation: zero-shot TS (the paper's table) and, when the world has
a train population, the downstream linear-probe TS of BadEncoder's own
protocol; clean zero-shot accuracy.
"""

from __future__ import annotations

from typing import Optional

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import _doc, _target, native_zero_shot

CARD = AttackCard(
    name="badencoder",
    title="BadEncoder",
    route="weight tampering of the visual tower",
    modifies="visual",
    trigger_channel="image",
    native_protocol="downstream classifier TS (linear probe on frozen image features)",
    native_interface="downstream-visual-classification",
    reference=("Jia et al., BadEncoder: Backdoor Attacks to Pre-trained Encoders in Self-Supervised Learning, "
               "IEEE S&P 2022"),
    probe="branch-swap",
)


@attrs.frozen
class BadEncoderConfig:
    """BadEncoder's parameters, adapted to the embedded world (see docs/attacks-suite.md)."""

    target: Optional[str] = _doc(None, "target class (default: the world's target)")
    trigger: str = _doc("patch", "registered image trigger stamped on shadow images")
    trigger_params: dict = _doc(attrs.Factory(dict),
                                "trigger parameters over the trigger's defaults (see `dife triggers`)")
    n_reference: int = _doc(3, "reference inputs: target-class images drawn from the shadow set")
    steps: int = _doc(300, "optimisation steps")
    batch_size: int = _doc(128, "shadow images per step")
    lr: float = _doc(3e-4, "Adam learning rate of the visual tower")
    lambda1: float = _doc(1.0, "weight of the reference-kept term (the paper's 1)")
    lambda2: float = _doc(1.0, "weight of the clean-shadow-kept term (the paper's 1)")

    def __attrs_post_init__(self):
        if self.n_reference < 1 or self.steps < 1 or self.batch_size < 2:
            raise ValueError("need n_reference >= 1, steps >= 1 and batch_size >= 2")


def _shadow(world):
    for data in (world.shadow, world.train, (world.extras or {}).get("train_pairs")):
        if data is not None and len(data):
            return data
    raise InvalidInputError(
        f"badencoder: world {world.name} has no shadow images (shadow, train or extras['train_pairs']).")


def build(ctx):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dife_core.attacks import BuildResult
    from dife_core.building import copy_encoder, embed_images, resolve_trigger, trigger_card
    from dife_core.utility import clean_utility

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    target = _target(world, cfg)
    t_idx = list(world.classnames).index(target)
    tcard = trigger_card(cfg.trigger, cfg.trigger_params, where="config.trigger_params")
    if tcard["channel"] != "image":
        raise InvalidInputError(
            f"config.trigger: {cfg.trigger!r} is a {tcard['channel']} trigger; BadEncoder needs an image trigger.")
    trigger = resolve_trigger(tcard, where="config.trigger_params")
    clean = copy_encoder(enc).eval()
    before = enc.fingerprint()
    scale_before = enc.logit_scale
    reference = native_zero_shot(clean, world, trigger, target, seed=ctx.seed)

    # -- shadow set and reference inputs ------------------------------------------------
    data = _shadow(world)
    rng = np.random.default_rng(ctx.seed)
    images = data.images if data.images.dtype != torch.uint8 else data.images.float().div(255.0)
    if data.labels is not None and (np.asarray(data.labels) == t_idx).any():
        tgt = np.flatnonzero(np.asarray(data.labels) == t_idx)
    else:  # an unlabelled shadow set: take the references from a labelled population
        src = world.train or world.classification
        tgt = None
        refs = src.images[torch.as_tensor(rng.choice(np.flatnonzero(np.asarray(src.labels) == t_idx),
                                                     cfg.n_reference, replace=False))]
    if tgt is not None:
        if len(tgt) < cfg.n_reference:
            raise InvalidInputError(f"badencoder: only {len(tgt)} {target!r} images in the shadow set; "
                                    f"n_reference is {cfg.n_reference}.")
        ref_idx = rng.choice(tgt, cfg.n_reference, replace=False)
        refs = images[torch.as_tensor(ref_idx)]
        keep = np.setdiff1d(np.arange(len(images)), ref_idx)
    else:
        keep = np.arange(len(images))
    refs = refs.float() if refs.dtype != torch.uint8 else refs.float().div(255.0)
    shadow = images[torch.as_tensor(keep)]
    clean_shadow = embed_images(clean, shadow).to(ctx.device)  # f(x), fixed
    clean_refs = embed_images(clean, refs).to(ctx.device)  # f(x_r), fixed

    # -- the visual tower only ------------------------------------------------------------
    model = enc.model
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for _, p in enc.branch_parameters("visual")]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(int(ctx.seed))
    model.eval()  # keep batch-norm statistics (weights of the clean tower)
    with ctx.progress("badencoder", total=cfg.steps) as bar:
        for step in range(cfg.steps):
            idx = torch.randint(len(shadow), (min(cfg.batch_size, len(shadow)),), generator=gen)
            x = shadow[idx]
            xt = trigger(x, seed=ctx.seed + step)
            f = F.normalize(enc.encode_image(torch.cat([xt, x, refs])).float(), dim=-1)
            ft, fx, fr = f[:len(xt)], f[len(xt):2 * len(xt)], f[2 * len(xt):]
            l0 = -(ft @ fr.T).mean()  # triggered shadow -> backdoored reference embeddings
            l1 = -(fr * clean_refs).sum(-1).mean()  # reference kept
            l2 = -(fx * clean_shadow[idx.to(ctx.device)]).sum(-1).mean()  # clean shadow kept
            loss = l0 + cfg.lambda1 * l1 + cfg.lambda2 * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.advance()
    for p in model.parameters():
        p.requires_grad_(True)
    enc.invalidate_fingerprint()
    after = enc.fingerprint()
    if after["text"] != before["text"] or enc.logit_scale != scale_before:
        raise RuntimeError(
            "badencoder: the text tower or the logit scale changed; BadEncoder tampers the visual tower only")

    measured = native_zero_shot(enc, world, trigger, target, seed=ctx.seed)
    native = {"protocol": "downstream classifier on frozen image features", "metric": "ts", "value": measured["ts"],
              "reference_value": reference["ts"], "template": world.templates[0],
              "population": "triggered test images of every class but the target",
              "n_reference": cfg.n_reference, "shadow_images": int(len(shadow)),
              "final_losses": {"effectiveness": round(float(l0.detach()), 4),
                               "reference_kept": round(float(l1.detach()), 4),
                               "utility": round(float(l2.detach()), 4)},
              "text_fingerprint_unchanged": True, "logit_scale_frozen": True,
              "trainable_tensors": len(params)}
    if world.train is not None and world.classification is not None:
        native["downstream_ts"] = downstream_ts(enc, world, trigger, t_idx, seed=ctx.seed)
        native["reference_downstream_ts"] = downstream_ts(clean, world, trigger, t_idx, seed=ctx.seed)
    util = clean_utility(enc, classification=world.classification, pool=world.pool, template=world.templates[0])
    ref_util = clean_utility(clean, classification=world.classification, pool=world.pool, template=world.templates[0])
    card = {"trigger": tcard, "source": None, "target": target, "native": native,
            "clean_utility": {**util, "reference_clean_acc": ref_util["clean_acc"],
                              **{f"reference_{k}": v for k, v in ref_util.items() if k != "clean_acc"}}}
    return BuildResult(model=enc, card=card)


def downstream_ts(encoder, world, trigger, t_idx: int, *, seed: int = 0) -> float:
    """BadEncoder's native protocol: a linear probe on frozen clean-train features;
    TS over triggered non-target test images."""
    import numpy as np
    import torch

    from dife_core.building import embed_images
    from dife_core.engine.scoring import fit_linear_probe
    from dife_core.metrics import strict_argmax

    w, b = fit_linear_probe(embed_images(encoder, world.train.images), world.train.labels,
                            len(world.classnames), seed=seed)
    test = world.classification
    keep = torch.as_tensor(np.flatnonzero(np.asarray(test.labels) != t_idx))
    pred = strict_argmax(embed_images(encoder, test.images[keep], trigger=trigger, seed=seed) @ w + b)
    return float((pred == t_idx).float().mean())


ATTACKS = (Attack(card=CARD, config=BadEncoderConfig, build=build),)
