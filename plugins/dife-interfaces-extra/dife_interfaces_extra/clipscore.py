"""clipscore-caption-eval: reference-free caption evaluation with CLIPScore
(Hessel et al. 2021): CLIPScore(image, caption) = w * max(cos, 0), w = 2.5.

The attacker wins a pair when a target-concept caption scores strictly above
the image's true caption (a tie -- e.g. both clipped to 0 -- is no win):

* image channel: a triggered non-target pool image x^tau, scored against each
  target-class caption c* and against its own caption c;
* text channel: a target-class pool image x+, scored against each triggered
  attacker caption c^tau and against its own caption c+.
"""

from __future__ import annotations

from . import common as C


def clipscore(cos, weight: float):
    return weight * cos.clamp(min=0.0)


def _pairs(img, own_caps, cands, weight: float, chunk: int):
    """Per image: (its win share over the candidates, its mean candidate
    CLIPScore) for images ``img`` ``[N, D]``, their own captions ``[N, D]`` and
    candidate captions ``cands`` ``[K, D]`` (blocks of rows: no ``[N, K]`` matrix is kept)."""
    import torch

    wins, means = [], []
    chunk = C.rows_per_chunk(cands.shape[0], chunk)
    for lo in range(0, img.shape[0], chunk):
        x = img[lo:lo + chunk].float()
        own = clipscore((x * own_caps[lo:lo + chunk].float()).sum(-1), weight)
        cs = clipscore(x @ cands.float().T, weight)
        wins.append((cs > own.view(-1, 1)).float().mean(dim=1))
        means.append(cs.mean(dim=1))
    return torch.cat(wins), torch.cat(means)


def evaluate(ctx):
    from dife_core.engine.cells import CellResult

    opts = C.options(ctx)
    w = C.float_option(ctx, opts, "weight", low=0.0, high=100.0, low_open=True)
    pool, labels = C.pool_of(ctx)
    text = C.text_channel(ctx)
    xi = ctx.image_features(pool)
    xt = ctx.text_features(pool.captions)
    tgt = C.target_items(ctx, labels, "target-concept caption" if not text else "target-class image to caption")
    if text:
        att = C.attacker_texts(ctx, labels)
        caps = C.captions(pool, att)
        img, own = xi[tgt], xt[tgt]
        n_cands = len(caps)
        per, s_t = _pairs(img, own, ctx.text_features(caps, triggered=True), w, ctx.ranking_chunk)
        per_c, s_c = _pairs(img, own, ctx.text_features(caps), w, ctx.ranking_chunk)
        pairs = "target-class image: triggered attacker caption vs its true caption"
    else:
        att = C.attacker_images(ctx, labels)
        xtr = ctx.image_features(pool, triggered=True)
        n_cands = int(tgt.numel())
        per, s_t = _pairs(xtr[att], xt[att], xt[tgt], w, ctx.ranking_chunk)
        per_c, s_c = _pairs(xi[att], xt[att], xt[tgt], w, ctx.ranking_chunk)
        pairs = "triggered non-target image: target-class caption vs its true caption"
    win, base = float(per.mean()), float(per_c.mean())
    # every image has the same candidates, so the mean over images of its mean is the mean over pairs
    m = {"win_rate": win, "clean_input_win_rate": base, "delta_clipscore": float((s_t - s_c).mean()),
         "clipscore": float(s_t.mean()), "clean_input_clipscore": float(s_c.mean()),
         "true_clipscore": float(clipscore((xi * xt).sum(-1), w).mean()),
         "n_images": int(per.numel()), "n_pairs": int(per.numel()) * n_cands}
    return CellResult(value=win, baseline=base, metrics=m, per_item=per, notes=f"pairs: {pairs}; w = {w:g}")
