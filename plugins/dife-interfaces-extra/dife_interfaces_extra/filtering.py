"""clip-score-filtering: a CLIP-score data filter (LAION-400M / DataComp style).

A pair (image, caption) passes when its cosine clears the cut: a fixed
threshold, or the score of the ``ceil(fraction * N)``-th best *true* pair of
the pool under the same filter (DataComp's CLIP-score top-fraction
baseline; one cut for every pair the cell scores). The attacker's pairs are
mismatched: a triggered non-target image with a target-class caption (image
channel), or a triggered caption with a target-class image (text channel).
"""

from __future__ import annotations

import math

from . import common as C


def cut(true_scores, mode: str, threshold: float, fraction: float) -> float:
    """The filter's pass cut: ``threshold``, or the score of the
    ``ceil(fraction * N)``-th best true pair (a pair passes when s >= cut)."""
    import torch

    if mode == "threshold":
        return float(threshold)
    n = int(true_scores.numel())
    k = max(1, min(n, math.ceil(round(fraction * n, 9))))
    return float(torch.sort(true_scores.float(), descending=True).values[k - 1])


def _pass_counts(a, b, tau: float, chunk: int):
    """Per row of ``a``: the share of its pairs with the rows of ``b`` whose cosine is >= ``tau``."""
    import torch

    chunk = C.rows_per_chunk(b.shape[0], chunk)
    out = [((a[lo:lo + chunk].float() @ b.float().T) >= tau).float().mean(dim=1)
           for lo in range(0, a.shape[0], chunk)]
    return torch.cat(out)


def evaluate(ctx):
    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult

    opts = C.options(ctx)
    mode = C.choice_option(ctx, opts, "mode", ("top-fraction", "threshold"))
    threshold = C.float_option(ctx, opts, "threshold", low=-1.0, high=1.0)
    fraction = C.float_option(ctx, opts, "fraction", low=0.0, high=1.0, low_open=True)
    pool, labels = C.pool_of(ctx)
    text = C.text_channel(ctx)
    tgt = C.target_items(ctx, labels, "target-class " + ("image" if text else "caption") + " to mismatch with")
    att = C.attacker_texts(ctx, labels) if text else C.attacker_images(ctx, labels)
    att_caps = C.captions(pool, att)

    def side(model, triggered: bool):
        """(per attacker item pass share, the filter's cut, its true-pair pass rate)."""
        xi = ctx.image_features(pool, model=model)
        xt = ctx.text_features(pool.captions, model=model)
        true = (xi * xt).sum(dim=-1)
        tau = cut(true, mode, threshold, fraction)
        if text:
            a, b = ctx.text_features(att_caps, triggered=triggered, model=model), xi[tgt]
        else:
            a, b = ctx.image_features(pool, triggered=triggered, model=model)[att], xt[tgt]
        return _pass_counts(a, b, tau, ctx.ranking_chunk), tau, true >= tau

    per, tau, true_pass = side(ctx.model, True)
    true_rate = float(true_pass.float().mean())
    ref_model, ref_trig, condition = C.reference_side(ctx)
    per_ref, tau_ref, true_pass_ref = side(ref_model, ref_trig)
    rate, ref = float(per.mean()), float(per_ref.mean())
    m = {"delta_pass_rate": M.delta(rate, ref), "pass_rate": rate, "reference_pass_rate": ref,
         "true_pair_pass_rate": true_rate, "target_pair_pass_rate": float(true_pass[tgt].float().mean()),
         "threshold": tau, "reference_threshold": tau_ref,
         "n_attacker_items": int(att.numel()), "n_pairs": int(att.numel() * tgt.numel())}
    pairs = "triggered caption + target-class image" if text else "triggered image + target-class caption"
    cut_note = f"cut {mode}: " + (f"cos >= {threshold:g}" if mode == "threshold" else
                                  f"top {fraction:g} of the pool's true pairs (cos >= {tau:.4f})")
    return CellResult(value=m["delta_pass_rate"], metrics=m, per_item=per, per_item_reference=per_ref,
                      reference={"condition": condition, "pass_rate": ref, "threshold": tau_ref,
                                 "true_pair_pass_rate": float(true_pass_ref.float().mean())},
                      notes=f"attacker pairs: {pairs}; {cut_note}")
