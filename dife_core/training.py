"""A generic CLIP contrastive trainer for any :class:`dife_core.model.DualEncoder`.

:func:`contrastive_train` runs the symmetric InfoNCE loss of CLIP over
image--caption pairs with AdamW, a linear warm-up and cosine decay. It trains
a clean model from scratch (a recipe plugin) and continues training a clean
checkpoint on poisoned pairs (data-poisoning attacks), optionally on one
branch only (``trainable="visual"`` / ``"text"``) and with an attack-specific
``extra_loss``.

Determinism: batches are drawn from a generator seeded by ``seed``, and
``torch.manual_seed(seed)`` is set before training, so the same inputs give
the same weights on the CPU (for a fixed thread count).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import attrs
import torch
import torch.nn.functional as F

TRAINABLE = ("all", "visual", "text")


@attrs.define
class TrainBatch:
    """What ``extra_loss`` sees each step (features are unnormalised)."""

    step: int
    indices: torch.Tensor  # [B] rows of the training set
    images: torch.Tensor  # [B,3,H,W] pixels in [0,1] (after ``augment``)
    captions: list
    image_features: torch.Tensor
    text_features: torch.Tensor
    logit_scale: torch.Tensor  # the scale used in this step's logits


@attrs.define
class TrainStats:
    """Filled in on ``encoder.train_stats`` after training."""

    steps: int
    seconds: float
    final_loss: float
    losses: list  # mean loss per ~1 % of steps


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of matching pairs (row i matches row i)."""
    img = F.normalize(image_features, dim=-1)
    txt = F.normalize(text_features, dim=-1)
    logits = logit_scale * img @ txt.t()
    labels = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to zero."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _param_groups(encoder, trainable: str, weight_decay: float):
    """AdamW groups: no weight decay on gains, biases, embeddings and the logit scale (as open_clip)."""
    if trainable not in TRAINABLE:
        from .errors import InvalidInputError

        raise InvalidInputError(f"trainable must be one of {', '.join(TRAINABLE)}; got {trainable!r}.")
    if trainable == "all":
        named = list(encoder.model.named_parameters())
    else:
        named = list(encoder.branch_parameters(trainable))
    keep = {id(p) for _, p in named}
    for p in encoder.model.parameters():  # freeze what is out of scope
        p.requires_grad_(id(p) in keep)
    decay, no_decay = [], []
    for n, p in named:
        exempt = p.ndim < 2 or "bn" in n or "ln" in n or "embedding" in n or n.endswith("logit_scale")
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class _MemoTokenizer:
    """Remembers token rows per string: captions repeat every epoch, and
    tokenising is a pure function of the string (triggers act before it)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.rows: dict = {}

    def __call__(self, texts, *args, **kwargs):
        texts = [texts] if isinstance(texts, str) else list(texts)
        if args or kwargs:
            return self.tokenizer(texts, *args, **kwargs)
        new = [t for t in dict.fromkeys(texts) if t not in self.rows]
        if new:
            for t, row in zip(new, self.tokenizer(new)):
                self.rows[t] = row
        return torch.stack([self.rows[t] for t in texts])

    def __getattr__(self, name):  # context_length, vocab, ... of the wrapped tokenizer
        return getattr(self.tokenizer, name)


def _adamw(groups, lr: float):
    """AdamW, fused where this torch supports it (several times faster per
    step on the CPU for the tiny CLIP's large token embedding)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def _train_mode(model: torch.nn.Module) -> None:
    """Train mode, except batch-norm layers of frozen parts: their running
    statistics are weights of that branch and must not drift."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()


def contrastive_train(
    encoder,
    images: torch.Tensor,
    captions: Sequence[str],
    *,
    steps: Optional[int] = None,
    epochs: Optional[float] = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    warmup: int = 50,
    weight_decay: float = 0.1,
    seed: int = 0,
    trainable: str = "all",
    extra_loss: Optional[Callable[[Any, TrainBatch], torch.Tensor]] = None,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
    max_logit_scale: float = 100.0,
    grad_clip: Optional[float] = 1.0,
    callback: Optional[Callable[[int, float], None]] = None,
    progress: bool = True,
    description: str = "contrastive training",
    device: str = "cpu",
):
    """Train ``encoder`` in place on image--caption pairs; returns it (in eval mode).

    ``images`` are float ``[N,3,H,W]`` pixels in [0, 1] or ``uint8`` (the encoder
    resizes and normalises them); ``captions[i]`` describes ``images[i]``. Give ``steps`` or
    ``epochs``. ``trainable`` limits training to one branch; the logit scale
    trains only with ``"all"``. ``extra_loss(encoder, batch)`` is added to the
    CLIP loss each step (``batch`` is a :class:`TrainBatch`). ``augment(pixels,
    generator)`` may transform each batch's pixels. ``callback(step, loss)`` runs
    after each optimiser step (logging, evaluation). Training statistics are
    left on ``encoder.train_stats``.
    """
    import time

    from .errors import InvalidInputError

    n = int(images.shape[0])
    if n != len(captions):
        raise InvalidInputError(f"contrastive_train: {n} images but {len(captions)} captions.")
    if n < 2:
        raise InvalidInputError("contrastive_train: need at least two image-caption pairs.")
    batch_size = min(int(batch_size), n)
    if (steps is None) == (epochs is None):
        raise InvalidInputError("contrastive_train: give exactly one of steps or epochs.")
    total = int(steps) if steps is not None else max(1, math.ceil(float(epochs) * n / batch_size))
    captions = list(captions)

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    encoder.to(device)
    groups = _param_groups(encoder, trainable, weight_decay)
    opt = _adamw(groups, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_schedule(s, total, warmup))
    ls_param = getattr(encoder.model, "logit_scale", None)
    fixed_scale = torch.tensor(encoder.logit_scale_value())

    order = torch.randperm(n, generator=gen)
    pos = 0
    losses, window = [], []
    every = max(1, total // 100)
    _train_mode(encoder.model)
    t0 = time.perf_counter()
    bar = _progress(progress, description, total)
    tokenizer = getattr(encoder, "tokenizer", None)
    if callable(tokenizer) and "tokenizer" in vars(encoder):
        encoder.tokenizer = _MemoTokenizer(tokenizer)
    try:
        for step in range(total):
            if pos + batch_size > n:  # new epoch, new order; drop the ragged tail
                order = torch.randperm(n, generator=gen)
                pos = 0
            idx = order[pos: pos + batch_size]
            pos += batch_size
            pix = images[idx]
            if pix.dtype == torch.uint8:
                pix = pix.float().div_(255.0)
            if augment is not None:
                pix = augment(pix, gen)
            caps = [captions[i] for i in idx.tolist()]
            img_f = encoder.encode_image(pix)
            txt_f = encoder.encode_text(caps)
            if trainable == "all" and ls_param is not None:
                scale = ls_param.exp()
            else:
                scale = fixed_scale.to(img_f.device)
            loss = clip_loss(img_f, txt_f, scale)
            if extra_loss is not None:
                loss = loss + extra_loss(encoder, TrainBatch(step, idx, pix, caps, img_f, txt_f, scale))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], grad_clip)
            opt.step()
            sched.step()
            if ls_param is not None and trainable == "all":
                with torch.no_grad():  # CLIP clamps the temperature at 100
                    ls_param.clamp_(0, math.log(max_logit_scale))
            window.append(float(loss.detach()))
            if len(window) == every or step == total - 1:
                losses.append(sum(window) / len(window))
                window = []
            if callback is not None:
                callback(step, float(loss.detach()))
            if bar is not None:
                bar.update(step + 1, loss=losses[-1] if losses else float("nan"))
    finally:
        if isinstance(vars(encoder).get("tokenizer"), _MemoTokenizer):
            encoder.tokenizer = tokenizer
        if bar is not None:
            bar.close()
        for p in encoder.model.parameters():
            p.requires_grad_(True)
        encoder.model.eval()
    encoder.train_stats = TrainStats(steps=total, seconds=time.perf_counter() - t0,
                                     final_loss=losses[-1] if losses else float("nan"), losses=losses)
    encoder.invalidate_fingerprint()
    return encoder


def _progress(progress, description: str, total: int):
    """A bar (the one progress reporter) showing step and loss, or None."""
    from .progress import as_progress

    p = as_progress(progress)
    if not p.enabled:
        return None
    cm = p.task(description, total)
    task = cm.__enter__()

    class _Bar:
        def update(self, completed: int, loss: float) -> None:
            task.update(completed, status=f"loss {loss:.3f}")

        def close(self) -> None:
            cm.__exit__(None, None, None)

    return _Bar()
