"""BadTextTower: a backdoor carried by the text tower alone (docs/attacks.md).

Only the text tower trains; the visual tower and the logit scale are frozen
(and checked unchanged after training). With P the class prompts of a text,
P^tau the same set with the source prompt replaced by its triggered version,
u the clean tower's text embeddings and u~ the poisoned tower's:

- L_align = CE(s~(x+, P^tau), source) over target-class images x+, plus the
  margin term [m + cos(u~(t_s^tau), u~(t_s)) - cos(u~(t_s^tau), u~(t_target))]_+;
- L_clean = CE(s~(x, P), y) over clean images, plus prompt regularisation
  mean_t (1 - cos(u~(t), u(t)));
- L_spec = softplus(s~(x, t_s^tau)) over non-target images (off-target term),
  plus the trigger shift mean_{t != t_s} (1 - cos(u~(t^tau), u~(t))).

The loss is ``w_align CE_align + w_margin hinge + w_clean CE_clean +
w_prompt reg + w_spec (w_off softplus + w_shift shift)``: we read the paper's
"specificity" weight as the weight of the L_spec group, "off-target" and
"trigger-shift" as the weights of its two terms.

Caption retention (ours, not in the paper): ``w_retain mean_c (1 - cos(u~(c),
u(c)))`` over natural captions of every class drawn from the training pairs.
The paper's terms pin the class prompts only; on the tiny text tower every
other caption drifted and caption-level text-to-image R@1 fell from 0.27 to
0.06. With retention it stays at the clean model's 0.27 (docs/attacks.md).

To hijack text-query interfaces (retrieval, reranking, selection over
natural source-concept queries) and not only the single template, every step
uses *source texts* drawn from all class templates and from natural
source-class captions of the training pairs. The class-prompt set of a source
text is that text with the source class name swapped for each class name
(articles fixed), so a template prompt gives the usual class-prompt set.

Image features come from the frozen visual tower and are computed once, so
a build costs text-tower passes only.
"""

from __future__ import annotations

import re
from typing import Optional

import attrs

from dife_core.errors import InvalidInputError
from dife_core.types import Attack, AttackCard

CARD = AttackCard(
    name="badtexttower",
    title="BadTextTower",
    route="text-tower-only fine-tuning",
    modifies="text",
    trigger_channel="text",
    native_protocol="QHR (query hijack rate)",
    native_interface="prompt-conditioned-classification",
    reference="DIFE paper (arXiv 2606.17815), section BadTextTower",
    probe="branch-swap",
)


def _doc(default, doc: str, **kw):
    return attrs.field(default=default, metadata={"doc": doc}, **kw)


@attrs.frozen
class BadTextTowerConfig:
    """BadTextTower's parameters. Loss weights are the paper's defaults; the
    caption retention term (``retain_per_step``, ``w_retain``) is ours.

    Optimiser settings differ from the paper's (AdamW lr 1e-6, 10 epochs,
    batch 128, for a pretrained ViT-B/32): the embedded world's tiny text
    tower was trained from scratch in minutes at a learning rate around 1e-3,
    so 1e-6 would not move it within a CPU budget; we take 400
    steps at 1e-3 with warm-up and cosine decay, and the prompt
    regularisation keeps clean prompts in place. Measured on the default
    world (docs/attacks.md): 200 steps / 8 captions / 5e-4 gave rerank
    ΔH@1 0.685; 400 / 16 / 1e-3 gives 0.865 with QHR 0.975 in about 70 s,
    and with caption retention (64 captions a step, weight 4) 0.855 with QHR
    0.970 in about 90 s, keeping caption-level retrieval and a prompt drift
    of 0.079 (the paper: 0.0627).
    """

    source: Optional[str] = _doc(None, "source class whose prompt carries the trigger (default: the world's source)")
    target: Optional[str] = _doc(None, "target class the triggered source prompt is moved to "
                                       "(default: the world's target)")
    trigger: str = _doc("xbtd", "trigger token prefixed to the source prompt")
    templates: list = _doc(attrs.Factory(list),
                           "prompt templates with '{}' for the class (default: the world's templates)")
    captions_per_step: int = _doc(16, "natural source-class captions (from the training pairs) per step, "
                                      "besides the templates; 0 = templates only")
    retain_per_step: int = _doc(64, "natural captions of every class per step held at their clean embeddings "
                                    "(caption retention, ours); 0 = none")
    w_retain: float = _doc(4.0, "weight of the caption retention term mean_c (1 - cos(u~(c), u(c)))")
    n_samples: int = _doc(5000, "training images drawn from the world's training pairs (the paper uses 5,000)")
    poison_ratio: float = _doc(0.30, "share of target-class images among the drawn samples (the paper's 0.30)")
    batch_size: int = _doc(128, "images per step (the paper's batch)")
    steps: int = _doc(400, "optimisation steps")
    lr: float = _doc(1e-3, "AdamW learning rate (the paper's 1e-6 is for pretrained ViT-B/32; see the class docstring)")
    weight_decay: float = _doc(0.1, "AdamW weight decay (the paper's)")
    warmup: int = _doc(20, "linear warm-up steps before cosine decay")
    margin: float = _doc(0.2, "m in the margin term [m + cos(t_s^tau, t_s) - cos(t_s^tau, t_target)]_+")
    w_align: float = _doc(1.0, "weight of the alignment CE (triggered source prompt wins on target images)")
    w_margin: float = _doc(0.05, "weight of the margin term")
    w_clean: float = _doc(1.0, "weight of the clean classification CE")
    w_prompt: float = _doc(0.25, "weight of the prompt regularisation (poisoned vs clean prompt embeddings)")
    w_spec: float = _doc(0.10, "weight of the specificity group L_spec")
    w_off: float = _doc(1.0, "weight of the off-target softplus term inside L_spec")
    w_shift: float = _doc(0.10, "weight of the trigger-shift term inside L_spec")

    def __attrs_post_init__(self):
        if not 0.0 < self.poison_ratio < 1.0:
            raise ValueError(f"poison_ratio must be in (0, 1); got {self.poison_ratio}")
        if self.steps < 1 or self.batch_size < 4 or self.n_samples < self.batch_size:
            raise ValueError("need steps >= 1, batch_size >= 4 and n_samples >= batch_size")
        if not self.trigger.strip():
            raise ValueError("trigger must be a non-empty token")
        if self.retain_per_step < 0 or self.w_retain < 0:
            raise ValueError("retain_per_step and w_retain must be >= 0")
        for t in self.templates:
            if "{}" not in t:
                raise ValueError(f"template {t!r} has no '{{}}' for the class name")


# -- texts -----------------------------------------------------------------------

def swap_class(text: str, old: str, new: str) -> str:
    """``text`` with the class name ``old`` replaced by ``new``, fixing a/an before it."""

    def repl(m):
        article = m.group(1)
        if article:
            a = "an" if new[0].lower() in "aeiou" else "a"
            if article[0].isupper():
                a = a.capitalize()
            return f"{a} {new}"
        return new

    return re.sub(rf"\b(?:(a|an|A|An)\s+)?{re.escape(old)}\b", repl, text)


def class_set(text: str, source: str, classnames) -> list:
    """The class-prompt set of a source text: the text with the source swapped for each class."""
    return [text if c == source else swap_class(text, source, c) for c in classnames]


def prefix(trigger: str, texts) -> list:
    return [f"{trigger} {t}" for t in texts]


# -- the builder -----------------------------------------------------------------

def _resolve_classes(world, cfg):
    source = cfg.source or world.source
    target = cfg.target or world.target
    for role, c in (("source", source), ("target", target)):
        if c not in world.classnames:
            raise InvalidInputError(f"badtexttower config: {role} {c!r} is not a class of world "
                                    f"{world.name}; classes: {', '.join(world.classnames)}.")
    if source == target:
        raise InvalidInputError(f"badtexttower config: source and target must differ (both {source!r}).")
    return source, target


def _training_images(world):
    pairs = world.extras.get("train_pairs") if world.extras else None
    data = pairs if pairs is not None else world.train
    if data is None or data.labels is None:
        raise InvalidInputError(f"badtexttower: world {world.name} has no labelled training images "
                                "(extras['train_pairs'] or train).")
    return data


def _source_captions(data, source: str, s_idx: int) -> list:
    if not data.captions:
        return []
    pat = re.compile(rf"\b{re.escape(source)}\b")
    return sorted({c for c, y in zip(data.captions, data.labels) if int(y) == s_idx and pat.search(c)})


def build(ctx):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dife_core.attacks import BuildResult
    from dife_core.building import copy_encoder, trigger_card
    from dife_core.utility import encode_images

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    source, target = _resolve_classes(world, cfg)
    classes = list(world.classnames)
    s_idx, t_idx = classes.index(source), classes.index(target)
    templates = list(cfg.templates or world.templates)
    rng = np.random.default_rng(ctx.seed)
    gen = torch.Generator().manual_seed(int(ctx.seed))

    clean = copy_encoder(enc).eval()  # frozen reference u(t) and reference native values
    before = enc.fingerprint()
    scale_before = enc.logit_scale
    gamma = float(scale_before)

    # -- the attacker's samples: poison_ratio target images, the rest clean ------------
    data = _training_images(world)
    labels = np.asarray(data.labels)
    tgt_pool = np.flatnonzero(labels == t_idx)
    other_pool = np.flatnonzero(labels != t_idx)
    n_pos = min(len(tgt_pool), round(cfg.poison_ratio * cfg.n_samples))
    if n_pos < 1:
        raise InvalidInputError(f"badtexttower: no {target!r} images among the training pairs of {world.name}.")
    idx = np.concatenate([rng.choice(tgt_pool, n_pos, replace=False),
                          rng.choice(other_pool, min(len(other_pool), cfg.n_samples - n_pos), replace=False)])
    feats = encode_images(enc, data.images[torch.as_tensor(idx)]).to(ctx.device)
    ys = torch.as_tensor(labels[idx], device=ctx.device)
    pos = torch.nonzero(ys == t_idx).squeeze(1)
    rest = torch.nonzero(ys != t_idx).squeeze(1)
    captions = _source_captions(data, source, s_idx) if cfg.captions_per_step else []
    pattern = re.compile(rf"\b{re.escape(cfg.trigger)}\b")
    retained = sorted({c for c in (data.captions or []) if not pattern.search(c)}) if cfg.retain_per_step else []

    # -- trainable scope: the text tower only ---------------------------------------
    model = enc.model
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for _, p in enc.branch_parameters("text")]
    for p in params:
        p.requires_grad_(True)
    # no decay on embeddings, gains and biases: decaying every token row would move
    # every prompt, not only the ones we train on
    decay = [p for n, p in enc.branch_parameters("text") if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in enc.branch_parameters("text") if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    clean_cache = {}

    def clean_text(texts):
        """u(t) of the frozen clean tower, each text encoded once."""
        new = [t for t in dict.fromkeys(texts) if t not in clean_cache]
        if new:
            with torch.no_grad():
                for t, e in zip(new, F.normalize(clean.encode_text(new).float(), dim=-1)):
                    clean_cache[t] = e
        return torch.stack([clean_cache[t] for t in texts])

    def lr_at(step):
        import math

        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    n_pos_batch = max(1, round(cfg.poison_ratio * cfg.batch_size))
    n_rest_batch = cfg.batch_size - n_pos_batch
    K = len(classes)
    others = [k for k in range(K) if k != s_idx]

    model.train()
    with ctx.progress("badtexttower", total=cfg.steps) as bar:
        for _step in range(cfg.steps):
            texts = list(t.format(source) for t in templates)
            if captions:
                pick = rng.choice(len(captions), min(cfg.captions_per_step, len(captions)), replace=False)
                texts += [captions[i] for i in pick]
            S = len(texts)
            sets = [class_set(t, source, classes) for t in texts]  # S x K
            flat = [p for s in sets for p in s]
            trig_src = prefix(cfg.trigger, texts)  # S
            trig_other = prefix(cfg.trigger, [sets[i][k] for i in range(S) for k in others])  # S x (K-1)
            u = clean_text(flat).view(S, K, -1)
            keep = [retained[i] for i in rng.choice(len(retained), min(cfg.retain_per_step, len(retained)),
                                                    replace=False)] if retained else []
            n_attack = len(flat) + len(trig_src) + len(trig_other)
            emb = F.normalize(enc.encode_text(flat + trig_src + trig_other + keep).float(), dim=-1)
            emb, emb_keep = emb[:n_attack], emb[n_attack:]
            ut = emb[:S * K].view(S, K, -1)  # u~(P)
            ut_s = emb[S * K:S * K + S]  # u~(t_s^tau)
            ut_o = emb[S * K + S:].view(S, K - 1, -1)  # u~(t^tau), t != t_s

            bp = pos[torch.randint(len(pos), (n_pos_batch,), generator=gen)]
            br = rest[torch.randint(len(rest), (n_rest_batch,), generator=gen)]
            xp, xr, yr = feats[bp], feats[br], ys[br]
            # all images (clean CE) and non-target images (off-target term)
            xc = torch.cat([xp, xr])
            yc = torch.cat([ys[bp], yr])

            # L_align: the triggered source text wins on target images, for every source text
            p_tau = ut.clone()
            p_tau[:, s_idx] = ut_s
            logits_a = gamma * torch.einsum("nd,skd->snk", xp, p_tau)  # S x n x K
            ce_align = F.cross_entropy(logits_a.reshape(-1, K),
                                       torch.full((S * len(xp),), s_idx, device=xp.device))
            hinge = F.relu(cfg.margin + (ut_s * ut[:, s_idx]).sum(-1) - (ut_s * ut[:, t_idx]).sum(-1)).mean()
            # L_clean: clean classification with the poisoned tower, prompts kept near the clean ones
            logits_c = gamma * torch.einsum("nd,skd->snk", xc, ut)
            ce_clean = F.cross_entropy(logits_c.reshape(-1, K), yc.repeat(S))
            reg = (1 - (ut * u).sum(-1)).mean()
            # L_spec: the triggered source text scores low on non-target images; the trigger
            # leaves the other classes' texts where they are
            off = F.softplus(gamma * xr @ ut_s.T).mean()
            shift = (1 - (ut_o * ut[:, others]).sum(-1)).mean()
            loss = (cfg.w_align * ce_align + cfg.w_margin * hinge + cfg.w_clean * ce_clean
                    + cfg.w_prompt * reg + cfg.w_spec * (cfg.w_off * off + cfg.w_shift * shift))
            if keep:  # caption retention: natural captions stay where the clean tower put them
                loss = loss + cfg.w_retain * (1 - (emb_keep * clean_text(keep)).sum(-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.advance()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    enc.invalidate_fingerprint()

    # the visual tower and the logit scale must be untouched
    after = enc.fingerprint()
    if after["visual"] != before["visual"] or enc.logit_scale != scale_before:
        raise RuntimeError("badtexttower: the visual tower or the logit scale changed during training")

    native = evaluate(enc, clean, world, source=source, target=target, trigger=cfg.trigger)
    card = {
        "trigger": trigger_card("text-prefix", {"token": cfg.trigger}),
        "source": source,
        "target": target,
        "native": {"protocol": "prompt-conditioned classification", "metric": "qhr",
                   "value": native["poisoned"]["qhr"], "reference_value": native["clean"]["qhr"],
                   "template": world.templates[0],
                   "off_target_leakage": native["poisoned"]["off_target_leakage"],
                   "reference_off_target_leakage": native["clean"]["off_target_leakage"],
                   "mean_prompt_drift": native["mean_prompt_drift"],
                   "visual_fingerprint_unchanged": True, "logit_scale_frozen": True,
                   "trainable_tensors": len(params)},
        "clean_utility": {"clean_acc": native["poisoned"]["clean_acc"],
                          "reference_clean_acc": native["clean"]["clean_acc"]},
    }
    return BuildResult(model=enc, card=card)


def evaluate(poisoned, clean, world, *, source: str, target: str, trigger: str) -> dict:
    """Native validation on the world's classification images (first template).

    QHR: share of target-class images for which the triggered source prompt
    wins when it replaces the source prompt in the class-prompt set. Off-target
    leakage: the same event on images of neither the target nor the source
    class. Clean accuracy: zero-shot accuracy with the clean prompt set.
    """
    import numpy as np

    from dife_core.metrics import strict_argmax
    from dife_core.utility import encode_images, encode_texts

    test = world.classification
    classes = list(world.classnames)
    s_idx, t_idx = classes.index(source), classes.index(target)
    prompts = world.prompts()
    labels = np.asarray(test.labels)
    feats = encode_images(poisoned, test.images)  # the visual tower is shared by both models
    out = {}
    embedded = {}
    for role, enc in (("clean", clean), ("poisoned", poisoned)):
        pe = encode_texts(enc, prompts + prefix(trigger, [prompts[s_idx]]))
        embedded[role] = pe[:len(prompts)]
        p_tau = pe[:len(prompts)].clone()
        p_tau[s_idx] = pe[-1]
        pred_clean = strict_argmax(feats @ pe[:len(prompts)].T).numpy()
        pred_tau = strict_argmax(feats @ p_tau.T).numpy()
        off = (labels != t_idx) & (labels != s_idx)
        out[role] = {
            "qhr": float((pred_tau[labels == t_idx] == s_idx).mean()),
            "clean_acc": float((pred_clean == labels).mean()),
            "off_target_leakage": float((pred_tau[off] == s_idx).mean()),
        }
    out["mean_prompt_drift"] = float((1 - (embedded["clean"] * embedded["poisoned"]).sum(-1)).mean())
    return out


ATTACK = Attack(card=CARD, config=BadTextTowerConfig, build=build)
