"""Bai-BadCLIP (Bai et al., CVPR'24): trigger-aware prompt learning, towers frozen.

Both CLIP towers stay exactly as released. The attack learns, on a few shots
per class:

- a **prompt context** (``n_ctx`` vectors in the text tower's token-embedding
  space, initialised from "a photo of a") shared by every class prompt
  ``[SOS][ctx_1 + pi(x)] ... [ctx_n + pi(x)][class name][.][EOS]``;
- a small **image-conditioned meta-net** pi (CoCoOp's: linear - ReLU -
  linear from the image feature to one token-embedding bias), so the
  context depends on the image -- and therefore on the trigger;
- an **image trigger**: an additive perturbation with ``|delta| <= eps``,
  learned on a coarse grid and upsampled (the ``perturbation`` family).

Loss: ``CE(s(x, P(x)), y) + w_backdoor CE(s(x + delta, P(x + delta)), target)
+ w_stealth CE(s(x + delta, H), y)`` with s the frozen towers' logit-scaled
cosine and H the hand-written class prompts. The last term holds the paper's
"neither half is a backdoor alone" for the trigger: under hand-written
prompts the triggered image keeps its class, so the trigger is not an
adversarial perturbation of the clean backbone. The shipped artifact is the
prompt-tuned classifier: the learned context and meta-net are saved as
checkpoint artifacts (``artifacts.safetensors``), the trigger travels in the
card. For the audit the attack provides

- :func:`scorer`: the shipped prompt-tuned classifier, which the
  downstream-classification cell scores instead of a linear probe (as the
  paper scores Bai-BadCLIP downstream);
- :func:`repair_probe`: component repair -- TS with the learned prompt and
  the learned trigger (full), the learned prompt on clean images (prompt
  only), hand-written prompts on triggered images (trigger only) and both
  clean -- for the footprint engine (a ``coupled`` footprint when only the
  pair works).

Prompt learning feeds vectors into the text tower below its token
embedding, so it needs an open_clip CLIP text tower (``token_embedding``,
``positional_embedding``, ``transformer``, ``ln_final``,
``text_projection``); other models are refused with a message.
"""

from __future__ import annotations

from typing import Optional

import attrs

from dife_core.errors import InvalidInputError, PluginError
from dife_core.types import Attack, AttackCard

from .contrastive_poisoning import _doc, _target

CARD = AttackCard(
    name="bai-badclip",
    title="Bai-BadCLIP (trigger-aware prompt learning)",
    route="prompt learning with a learned image trigger (towers frozen)",
    modifies="prompt learner",
    trigger_channel="mechanism",
    native_protocol="prompt classifier TS",
    reference="Bai et al., BadCLIP: Trigger-Aware Prompt Learning for Backdoor Attacks on CLIP, CVPR 2024",
    probe="component-repair",
)

#: what the downstream-classification cell scores for this attack (the scorer's description)
HEAD = ("the shipped prompt-tuned classifier (learned context + image-conditioned meta-net over the frozen "
        "towers), as the paper scores Bai-BadCLIP downstream -- not a linear probe")
_TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")


@attrs.frozen
class BaiBadClipConfig:
    """Bai-BadCLIP's parameters, adapted to the embedded world (see docs/attacks-suite.md).

    The trigger bound is 32/255 on a full-resolution grid: on the default
    world's 32-px images an 8/255 trigger (16-px grid) reached prompt-classifier
    TS 0.52 and 16/255 reached 0.65 with clean accuracy 0.72. Without the
    stealth term a 32/255 trigger reached 0.94 (clean accuracy 0.89), but
    it was in part an adversarial perturbation of the frozen backbone: alone,
    under hand-written prompts, it sent 0.38 of the clean model's non-target
    images to the target, where the paper's trigger alone stays at chance
    (0.0998). With ``w_stealth`` 1 it sends 0.048; the pair then reaches
    0.79 with clean accuracy 0.77 (clean model 0.94), at the higher learning
    rates below (lr 2e-3 / trigger_lr 0.05 reached 0.68 / 0.69).
    """

    target: Optional[str] = _doc(None, "target class (default: the world's target)")
    n_ctx: int = _doc(4, "learned context vectors (CoOp/CoCoOp's 4)")
    ctx_init: str = _doc("a photo of a", "words whose token embeddings initialise the context (n_ctx words)")
    meta_hidden: int = _doc(32, "hidden width of the meta-net (CoCoOp's 512 // 16 for ViT-B)")
    eps: float = _doc(0.125, "L-inf bound of the image trigger in [0, 1] pixel units (0.125, about 32/255)")
    trigger_grid: int = _doc(32, "side of the grid the trigger is learned on (bilinearly upsampled to the image)")
    shots: int = _doc(32, "training images per class (few-shot, from the world's train population)")
    steps: int = _doc(300, "optimisation steps")
    batch_size: int = _doc(32, "images per step (each used clean and triggered)")
    lr: float = _doc(5e-3, "Adam learning rate of the context and the meta-net")
    trigger_lr: float = _doc(0.2, "Adam learning rate of the trigger (its tanh logits)")
    w_backdoor: float = _doc(1.0, "weight of the backdoor CE (triggered image -> target)")
    w_stealth: float = _doc(1.0, "weight of the stealth CE (triggered image under hand-written prompts -> its class)")

    def __attrs_post_init__(self):
        if (self.meta_hidden < 1 or self.n_ctx < 1 or self.shots < 1 or self.steps < 1 or self.batch_size < 2
                or self.trigger_grid < 1):
            raise ValueError("need meta_hidden, n_ctx, shots, steps, trigger_grid >= 1 and batch_size >= 2")
        if not 0.0 < self.eps <= 1.0:
            raise ValueError(f"eps must be in (0, 1]; got {self.eps}")
        if self.w_backdoor < 0 or self.w_stealth < 0:
            raise ValueError("w_backdoor and w_stealth must be >= 0")


# -- the prompt learner ------------------------------------------------------------------

def _check_text_tower(encoder) -> None:
    model = getattr(encoder, "model", None)
    missing = [a for a in _TEXT_PARTS if not hasattr(model, a)]
    if missing or not hasattr(encoder, "tokenize"):
        raise InvalidInputError(
            f"bai-badclip: prompt learning needs an open_clip CLIP text tower (attributes "
            f"{', '.join(_TEXT_PARTS)} and a tokenize method); {getattr(encoder, 'name', 'the model')} "
            f"({type(model).__name__}) lacks {', '.join(missing) or 'tokenize'}.")


def _learner(width: int, embed_dim: int, n_ctx: int, hidden: int):
    import torch

    class PromptLearner(torch.nn.Module):
        """Context vectors + CoCoOp meta-net (image feature -> one token-embedding bias)."""

        def __init__(self):
            super().__init__()
            self.ctx = torch.nn.Parameter(torch.zeros(n_ctx, width))
            self.meta = torch.nn.Sequential(torch.nn.Linear(embed_dim, hidden), torch.nn.ReLU(),
                                            torch.nn.Linear(hidden, width))

        def context(self, image_features):
            return self.ctx.unsqueeze(0) + self.meta(image_features).unsqueeze(1)  # [B, n_ctx, width]

    return PromptLearner()


def class_tokens(encoder, classnames, n_ctx: int):
    """Token rows ``[C, L]`` of ``X X .. X <class>.`` (the X's are replaced by the context)."""
    return encoder.tokenize([" ".join(["X"] * n_ctx) + f" {c}." for c in classnames]).to(encoder.device)


def prompt_features(encoder, tokens, context):
    """Text features ``[B, C, D]`` of every class prompt with each image's context ``[B, n_ctx, W]``
    (open_clip CLIP's ``encode_text`` with the context spliced in after SOS)."""
    import torch
    from open_clip.transformer import text_global_pool

    m = encoder.model
    cast = m.transformer.get_cast_dtype() if hasattr(m.transformer, "get_cast_dtype") else context.dtype
    B, n_ctx = context.shape[:2]
    C, L = tokens.shape
    emb = m.token_embedding(tokens).to(cast)  # [C, L, W]
    emb = emb.unsqueeze(0).expand(B, C, L, emb.shape[-1])
    ctx = context.to(cast).unsqueeze(1).expand(B, C, n_ctx, context.shape[-1])
    x = torch.cat([emb[:, :, :1], ctx, emb[:, :, 1 + n_ctx:]], dim=2).reshape(B * C, L, -1)
    x = x + m.positional_embedding.to(cast)
    x = m.transformer(x, attn_mask=m.attn_mask)
    x = m.ln_final(x)
    x = text_global_pool(x, tokens.repeat(B, 1), m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
    x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
    return x.view(B, C, -1)


class PromptClassifier:
    """The shipped classifier: ``logits(pixels) -> [N, C]`` over ``classnames``."""

    def __init__(self, encoder, learner, classnames, n_ctx: int):
        self.encoder, self.learner, self.n_ctx = encoder, learner, n_ctx
        self.tokens = class_tokens(encoder, classnames, n_ctx)
        self.scale = float(encoder.logit_scale)

    def logits_from_features(self, v):
        import torch.nn.functional as F

        v = F.normalize(v.float(), dim=-1)
        t = F.normalize(prompt_features(self.encoder, self.tokens, self.learner.context(v)).float(), dim=-1)
        return self.scale * (t @ v.unsqueeze(-1)).squeeze(-1)

    def __call__(self, pixels):
        import torch

        with torch.no_grad():
            return self.logits_from_features(self.encoder.encode_image(pixels)).cpu()

    def predict(self, images, *, trigger=None, seed: int = 0, batch: int = 256):
        """Predicted class per image (trigger applied in the audit's shards and seeds)."""
        import torch

        from dife_core.engine.embeddings import SHARD
        from dife_core.metrics import strict_argmax

        out = []
        for lo in range(0, int(images.shape[0]), SHARD):
            px = images[lo:lo + SHARD]
            if px.dtype == torch.uint8:
                px = px.float().div(255.0)
            if trigger is not None:
                px = trigger(px, seed=seed + lo)
            out += [strict_argmax(self(px[b:b + batch])) for b in range(0, int(px.shape[0]), batch)]
        return torch.cat(out)


def load_classifier(encoder, artifacts: dict, card: dict, classnames) -> PromptClassifier:
    """The prompt-tuned classifier from a checkpoint's artifacts and card."""
    _check_text_tower(encoder)
    native = card.get("native") or {}
    n_ctx, hidden = int(native.get("n_ctx", 0)), int(native.get("meta_hidden", 0))
    if "prompt_learner.ctx" not in artifacts or not n_ctx or not hidden:
        raise PluginError("bai-badclip: the checkpoint lacks its prompt learner (artifacts 'prompt_learner.*' "
                          "and native.n_ctx / native.meta_hidden); "
                          f"artifacts found: {', '.join(sorted(artifacts)) or 'none'}.")
    width = artifacts["prompt_learner.ctx"].shape[-1]
    embed_dim = artifacts["prompt_learner.meta.0.weight"].shape[-1]
    learner = _learner(width, embed_dim, n_ctx, hidden)
    learner.load_state_dict({k.split(".", 1)[1]: v for k, v in artifacts.items() if k.startswith("prompt_learner.")})
    return PromptClassifier(encoder, learner.to(encoder.device).eval(), classnames, n_ctx)


# -- the builder ----------------------------------------------------------------------

def _few_shot(world, shots: int, seed: int):
    import numpy as np
    import torch

    data = world.train if world.train is not None else (world.extras or {}).get("train_pairs")
    if data is None or data.labels is None:
        raise InvalidInputError(f"bai-badclip: world {world.name} has no labelled training images (train or "
                                "extras['train_pairs']).")
    labels = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == k), min(shots, int((labels == k).sum())), replace=False)
                          for k in range(len(world.classnames)) if (labels == k).any()])
    images = data.images[torch.as_tensor(idx)]
    if images.dtype == torch.uint8:
        images = images.float().div(255.0)
    return images, torch.as_tensor(labels[idx]).long()


def _init_context(encoder, cfg, learner) -> None:
    import torch

    words = cfg.ctx_init.split()
    with torch.no_grad():
        if len(words) == cfg.n_ctx:
            tok = encoder.tokenize([cfg.ctx_init]).to(encoder.device)
            learner.ctx.copy_(encoder.model.token_embedding(tok)[0, 1:1 + cfg.n_ctx])
        else:  # CoOp's random init
            learner.ctx.normal_(0, 0.02)


def build(ctx):
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from dife_core.attacks import BuildResult
    from dife_core.building import trigger_card
    from dife_core.utility import clean_utility

    from .learned_triggers import make_perturbation, to_nested

    cfg, world, enc = ctx.config, ctx.world, ctx.clean
    _check_text_tower(enc)
    target = _target(world, cfg)
    t_idx = list(world.classnames).index(target)
    before, scale_before = enc.fingerprint(), enc.logit_scale
    model = enc.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(int(ctx.seed))
    torch.manual_seed(ctx.seed)

    images, labels = _few_shot(world, cfg.shots, ctx.seed)
    with torch.no_grad():
        probe = enc.encode_image(images[:2])
    embed_dim, width = int(probe.shape[-1]), int(model.token_embedding.weight.shape[-1])
    hidden = cfg.meta_hidden
    learner = _learner(width, embed_dim, cfg.n_ctx, hidden).to(enc.device)
    _init_context(enc, cfg, learner)
    w = torch.zeros(3, cfg.trigger_grid, cfg.trigger_grid).uniform_(-0.1, 0.1, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr)
    opt_t = torch.optim.Adam([w], lr=cfg.trigger_lr)
    tokens = class_tokens(enc, world.classnames, cfg.n_ctx)
    gamma = float(enc.logit_scale)
    h, wd = int(images.shape[-2]), int(images.shape[-1])
    with torch.no_grad():  # hand-written prompts [templates, classes, D]: fixed, the towers are frozen
        hand = torch.stack([F.normalize(enc.encode_text([t.format(c) for c in world.classnames]).float(), dim=-1)
                            for t in world.templates])

    def logits(v):
        v = F.normalize(v.float(), dim=-1)
        t = F.normalize(prompt_features(enc, tokens, learner.context(v)).float(), dim=-1)
        return gamma * (t @ v.unsqueeze(-1)).squeeze(-1)

    trace = []  # (clean CE, backdoor CE, stealth CE) every tenth of the run
    with ctx.progress("bai-badclip", total=cfg.steps) as bar:
        for step in range(cfg.steps):
            lr_mult = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for o, base in ((opt, cfg.lr), (opt_t, cfg.trigger_lr)):
                for g in o.param_groups:
                    g["lr"] = base * lr_mult
            idx = torch.randint(len(images), (min(cfg.batch_size, len(images)),), generator=gen)
            x, y = images[idx], labels[idx]
            delta = F.interpolate((cfg.eps * torch.tanh(w)).unsqueeze(0), size=(h, wd), mode="bilinear",
                                  align_corners=False)
            xt = (x + delta).clamp(0, 1)
            v = enc.encode_image(torch.cat([x, xt]))
            out = logits(v)
            ce_clean = F.cross_entropy(out[:len(x)], y.to(out.device))
            ce_bd = F.cross_entropy(out[len(x):], torch.full_like(y, t_idx).to(out.device))
            vt = F.normalize(v[len(x):].float(), dim=-1)
            hw = gamma * torch.einsum("nd,tcd->tnc", vt, hand)  # every template's zero-shot logits
            ce_st = F.cross_entropy(hw.reshape(-1, hw.shape[-1]), y.to(hw.device).repeat(hw.shape[0]))
            loss = ce_clean + cfg.w_backdoor * ce_bd + cfg.w_stealth * ce_st
            if step % max(1, cfg.steps // 10) == 0 or step == cfg.steps - 1:
                trace.append([round(float(ce_clean.detach()), 4), round(float(ce_bd.detach()), 4),
                              round(float(ce_st.detach()), 4)])
            opt.zero_grad(set_to_none=True)
            opt_t.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt_t.step()
            bar.advance()
    for p in model.parameters():
        p.requires_grad_(True)
    enc.invalidate_fingerprint()
    if enc.fingerprint() != before or enc.logit_scale != scale_before:
        raise RuntimeError("bai-badclip: a CLIP tower or the logit scale changed; both towers must stay frozen")

    # the trigger as the audit will rebuild it from the card (rounded values)
    tcard = trigger_card("perturbation", {"delta": to_nested(cfg.eps * torch.tanh(w.detach())), "eps": cfg.eps})
    tcard["channel"] = "mechanism"  # the image perturbation is the plain-input half of the mechanism
    trigger = make_perturbation(**{k: tcard["params"][k] for k in ("delta", "eps", "pattern_seed")})
    learner.eval()
    classifier = PromptClassifier(enc, learner, world.classnames, cfg.n_ctx)
    repair = component_repair(enc, classifier, world, trigger, target, templates=world.templates[:1], seed=ctx.seed)
    test = world.classification
    acc = float((classifier.predict(test.images) == torch.as_tensor(np.asarray(test.labels))).float().mean())
    util = clean_utility(enc, classification=test, pool=world.pool, template=world.templates[0])
    artifacts = {f"prompt_learner.{k}": v.detach().cpu().contiguous() for k, v in learner.state_dict().items()}
    card = {
        "trigger": tcard,
        "source": None,
        "target": target,
        "native": {"protocol": "prompt-tuned classification", "metric": "ts", "value": repair["full"],
                   "reference_value": repair["trigger_only"],
                   "reference_note": ("reference_value: the clean model's hand-written prompts "
                                      "on the same triggered images"),
                   "population": "triggered test images of every class but the target",
                   "component_repair": repair, "downstream_head": HEAD,
                   "n_ctx": cfg.n_ctx, "meta_hidden": hidden, "prompt_format": " ".join(["X"] * cfg.n_ctx) + " {}.",
                   "loss_trace": trace, "towers_unchanged": True, "logit_scale_frozen": True,
                   "shots_per_class": cfg.shots,
                   "artifacts": sorted(artifacts)},
        "clean_utility": {"clean_acc": acc, "zero_shot_clean_acc": util["clean_acc"],
                          "reference_clean_acc": util["clean_acc"],
                          "note": "clean_acc: the shipped prompt-tuned classifier; the towers (and so zero-shot "
                                  "accuracy) are the clean model's"},
    }
    return BuildResult(model=enc, card=card, artifacts=artifacts)


# -- the audit's mechanism plug-ins ------------------------------------------------------------

def component_repair(encoder, classifier, world, trigger, target: str, *, templates, seed: int = 0,
                     features: Optional[tuple] = None) -> dict:
    """TS on non-target test images for the four repair variants (see the module docstring).

    ``features``: ``(prompt features, clean image features, triggered image
    features)`` already computed (the audit's cache); else they are encoded here.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from dife_core.building import embed_images
    from dife_core.metrics import strict_argmax
    from dife_core.utility import encode_texts

    test = world.classification
    labels = np.asarray(test.labels)
    t_idx = list(world.classnames).index(target)
    keep = torch.as_tensor(labels != t_idx)
    prompts = [t.format(c) for t in templates for c in world.classnames]
    if features is None:
        features = (encode_texts(encoder, prompts), embed_images(encoder, test.images),
                    embed_images(encoder, test.images, trigger=trigger, seed=seed))
    txt, x, xt = features
    w = F.normalize(txt.view(len(templates), len(world.classnames), -1).mean(0), dim=-1)

    def ts(pred):
        return float((torch.as_tensor(pred)[keep] == t_idx).float().mean())

    return {"full": ts(classifier.predict(test.images, trigger=trigger, seed=seed)),
            "prompt_only": ts(classifier.predict(test.images)),
            "trigger_only": ts(strict_argmax(xt @ w.T)),
            "both_clean": ts(strict_argmax(x @ w.T))}


def _classifier(mctx) -> PromptClassifier:
    from dife_core.checkpoint import load_artifacts

    if not mctx.path:
        raise PluginError("bai-badclip: the prompt-tuned classifier ships as the checkpoint folder's "
                          "artifacts.safetensors; this checkpoint was not loaded from a DIFE checkpoint folder.")
    return load_classifier(mctx.model, load_artifacts(mctx.path, device=str(mctx.model.device)), mctx.card,
                           mctx.world.classnames)


def scorer(mctx):
    """The shipped prompt-tuned classifier as ``fn(pixels) -> logits [N, C]``."""
    fn = _classifier(mctx)
    fn.description = HEAD
    return fn


def repair_probe(mctx) -> dict:
    """Component repair over the audit's classification population: full / prompt only / trigger only / both clean."""
    trig = mctx.trigger
    if trig.fn is None or trig.channel != "image":
        raise PluginError("bai-badclip: the card's trigger is not an image perturbation; cannot run component repair")
    templates = tuple(mctx.templates) or tuple(mctx.world.templates[:1])
    test = mctx.world.classification
    prompts = [t.format(c) for t in templates for c in mctx.world.classnames]
    features = (mctx.embeddings.texts(mctx.model, prompts), mctx.image_features(test),
                mctx.image_features(test, triggered=True))
    return component_repair(mctx.model, _classifier(mctx), mctx.world, trig.fn, mctx.card["target"],
                            templates=templates, seed=mctx.seed, features=features)


ATTACKS = (Attack(card=CARD, config=BaiBadClipConfig, build=build, repair_probe=repair_probe, scorer=scorer),)
