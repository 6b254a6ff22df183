"""Metric functions of the DIFE audit (formulas in docs/metrics.md).

Every function takes scores (higher = better match) and returns a float in
plain Python. Inputs may be torch tensors or numpy arrays. torch is imported
inside the functions, so importing this module stays cheap.

**Tie rule.** Ties count *against* the target event: a class / candidate wins
only with a score strictly greater than every competitor, and the rank of the
best positive is ``1 + #{negatives scoring >= it}``. An attack therefore never
gets credit from an exact tie (e.g. a triggered prompt whose embedding equals
the target prompt's), and clean accuracy counts a tie as a miss.
"""

from __future__ import annotations

import math
from typing import Optional


def _t(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(x)


def _mean(mask) -> float:
    mask = _t(mask)
    if mask.numel() == 0:
        return float("nan")
    return float(mask.float().mean())


# -- classification --------------------------------------------------------------

def wins(scores, index) -> "object":
    """Bool ``[N]``: row ``i`` is won by column ``index`` (a scalar or ``[N]``),
    i.e. its score is strictly greater than every other column's."""
    import torch

    s = _t(scores).float()
    n, c = s.shape
    idx = _t(index).long().to(s.device)
    if idx.ndim == 0:
        idx = idx.expand(n)
    own = s.gather(1, idx.view(-1, 1)).squeeze(1)
    others = s.clone()
    others.scatter_(1, idx.view(-1, 1), float("-inf"))
    best_other = others.max(dim=1).values if c > 1 else torch.full_like(own, float("-inf"))
    return own > best_other


def strict_argmax(scores) -> "object":
    """Long ``[N]``: the column that strictly wins each row, or -1 where the top
    score is tied (the tie rule: a tie is nobody's win)."""
    import torch

    s = _t(scores).float()
    top = s.max(dim=1)
    tied = (s == top.values.view(-1, 1)).sum(dim=1) > 1
    return torch.where(tied, torch.full_like(top.indices, -1), top.indices)


def target_success(scores, target: int) -> float:
    """TS = mean 1[ŷ = y*]: share of rows whose strict winner is ``target``."""
    return _mean(wins(scores, target))


def accuracy(scores, labels) -> float:
    """Clean accuracy: share of rows whose strict winner is their own label."""
    return _mean(wins(scores, labels))


def query_hijack_rate(scores, source: int) -> float:
    """QHR: ``scores`` are target-class images scored against the class-prompt
    set with the source prompt replaced by its triggered version; the share of
    rows won by the (triggered) source column."""
    return target_success(scores, source)


# -- rankings ----------------------------------------------------------------------

def best_positive_rank(scores, positive) -> "object":
    """r* per query: 1 + number of negatives scoring >= the best positive.

    ``scores`` ``[Q, G]``, ``positive`` bool ``[Q, G]``. Queries without any
    positive get rank 0 (undefined; excluded from H@K / MRR).
    """
    import torch

    s = _t(scores).float()
    pos = _t(positive).bool().to(s.device)
    neg_inf = torch.tensor(float("-inf"), device=s.device)
    best = torch.where(pos, s, neg_inf).max(dim=1).values
    beaten = ((s >= best.view(-1, 1)) & ~pos).sum(dim=1)
    r = beaten + 1
    return torch.where(pos.any(dim=1), r, torch.zeros_like(r))


def _defined(ranks):
    r = _t(ranks).long()
    return r[r > 0]


def hits_at_k(ranks, k: int) -> float:
    """H@K = mean 1[r* <= K] over queries with a defined rank."""
    r = _defined(ranks)
    return _mean(r <= int(k))


def mrr(ranks) -> float:
    """MRR = mean 1/r* over queries with a defined rank."""
    r = _defined(ranks)
    if r.numel() == 0:
        return float("nan")
    return float((1.0 / r.double()).mean())


def selection_at_1(ranks) -> float:
    """Sel@1 = share of groups whose top-1 candidate is a target (r* = 1)."""
    return hits_at_k(ranks, 1)


def recall_at_k(ranks, k: int) -> float:
    """Clean retrieval recall@K: H@K where the positives are the query's own
    matches (its caption / image, or an identical duplicate of it)."""
    return hits_at_k(ranks, k)


def delta(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    """Signed Δm = m_attack − m_ref (None when either side is undefined)."""
    if value is None or reference is None:
        return None
    if isinstance(value, float) and math.isnan(value) or isinstance(reference, float) and math.isnan(reference):
        return float("nan")
    return float(value) - float(reference)


def chunked_best_positive_rank(queries, gallery, query_keys, gallery_keys, *, chunk: int = 4096,
                               device=None, query_chunk: int = 1024):
    """r* for every query over a large gallery without a ``[Q, G]`` matrix.

    ``queries`` ``[Q, D]`` and ``gallery`` ``[G, D]`` are L2-normalised
    features (score = cosine; the logit scale does not change ranks); item
    ``g`` is a positive of query ``q`` iff ``query_keys[q] == gallery_keys[g]``.
    Two passes over gallery chunks: the best positive score per query, then
    the number of negatives scoring at least that much. Memory is
    ``query_chunk x chunk`` scores at a time. Same tie rule as
    :func:`best_positive_rank`.
    """
    import torch

    q_all = _t(queries).float()
    g_all = _t(gallery).float()
    qk_all = _t(query_keys).long()
    gk_all = _t(gallery_keys).long()
    dev = torch.device(device) if device is not None else q_all.device
    out = torch.zeros(q_all.shape[0], dtype=torch.long)
    for q0 in range(0, q_all.shape[0], query_chunk):
        q = q_all[q0:q0 + query_chunk].to(dev)
        qk = qk_all[q0:q0 + query_chunk].to(dev)
        best = torch.full((q.shape[0],), float("-inf"), device=dev)
        has = torch.zeros(q.shape[0], dtype=torch.bool, device=dev)
        for g0 in range(0, g_all.shape[0], chunk):
            g = g_all[g0:g0 + chunk].to(dev)
            pos = qk.view(-1, 1) == gk_all[g0:g0 + chunk].to(dev).view(1, -1)
            s = q @ g.T
            best = torch.maximum(best, torch.where(pos, s, torch.tensor(float("-inf"), device=dev)).max(dim=1).values)
            has |= pos.any(dim=1)
        beaten = torch.zeros(q.shape[0], dtype=torch.long, device=dev)
        for g0 in range(0, g_all.shape[0], chunk):
            g = g_all[g0:g0 + chunk].to(dev)
            pos = qk.view(-1, 1) == gk_all[g0:g0 + chunk].to(dev).view(1, -1)
            s = q @ g.T
            beaten += ((s >= best.view(-1, 1)) & ~pos).sum(dim=1)
        r = beaten + 1
        out[q0:q0 + query_chunk] = torch.where(has, r, torch.zeros_like(r)).cpu()
    return out


# -- text features ------------------------------------------------------------------

def cos_shift(triggered, clean, target) -> float:
    """Mean over texts of cos(u(t^τ), u*) − cos(u(t), u*): how much the trigger
    moves a text's embedding towards the target text (features L2-normalised;
    ``target`` is ``[D]`` or ``[N, D]``)."""
    tt, tc, tg = _t(triggered).float(), _t(clean).float(), _t(target).float()
    if tg.ndim == 1:
        tg = tg.expand_as(tt)
    if tt.shape[0] == 0:
        return float("nan")
    return float(((tt * tg).sum(-1) - (tc * tg).sum(-1)).mean())


def nearer_target_rate(triggered, clean, target) -> float:
    """Text-embedding TS: share of texts whose triggered embedding is strictly
    nearer the target text than its own clean embedding:
    1[cos(u(t^τ), u*) > cos(u(t^τ), u(t))]."""
    tt, tc, tg = _t(triggered).float(), _t(clean).float(), _t(target).float()
    if tg.ndim == 1:
        tg = tg.expand_as(tt)
    return _mean((tt * tg).sum(-1) > (tt * tc).sum(-1))


def _catalogue() -> dict:
    """Every metric a built-in card names: name -> (label, formula, function, higher_is_better)."""
    cat = {
        "ts": ("TS", "TS = mean_i 1[the target wins row i] over triggered non-target images (strict win)",
               target_success, True),
        "clean_acc": ("clean acc", "acc = mean_i 1[argmax_c s(x_i, t_c) = y_i] (strict win; a tie is a miss)",
                      accuracy, True),
        "clean_input_ts": ("clean-input TS", "TS on the same images without the trigger", target_success, True),
        "qhr": ("QHR", "QHR = mean over target-class images x⁺ of 1[the triggered source prompt wins over P^τ]",
                query_hijack_rate, True),
        "clean_prompt_qhr": ("clean-prompt QHR", "QHR with the clean source prompt", query_hijack_rate, True),
        "leakage": ("leakage", "share of other non-target images the triggered source prompt wins",
                    target_success, False),
        "mrr": ("MRR", "MRR = mean_q 1 / r*_q", mrr, True),
        "sel@1": ("Sel@1", "Sel@1 = mean over groups of 1[r* = 1] (top-1 candidate is a target)",
                  selection_at_1, True),
        "reference_sel@1": ("reference Sel@1", "Sel@1 of the clean selector on the clean query", selection_at_1,
                            True),
        "clean_query_sel@1": ("clean-query Sel@1", "Sel@1 of the audited selector on the clean query",
                              selection_at_1, True),
        "reference_mrr": ("reference MRR", "MRR of the clean selector on the clean query", mrr, True),
        "delta_sel@1": ("ΔSel@1", "ΔSel@1 = Sel@1(audited, triggered) − Sel@1(reference)", delta, True),
        "cos_shift": ("cos shift", "mean_t cos(u(t^τ), u*) − cos(u(t), u*)", cos_shift, True),
        "clean_mrr": ("clean MRR", "MRR of the clean query", mrr, True),
        "delta_mrr": ("ΔMRR", "ΔMRR = MRR(triggered) − MRR(reference)", delta, True),
    }
    for k in (1, 5, 10):
        cat[f"h@{k}"] = (f"H@{k}", f"H@{k} = mean_q 1[r*_q <= {k}]", hits_at_k, True)
        cat[f"clean_h@{k}"] = (f"clean H@{k}", f"H@{k} of the clean query", hits_at_k, True)
        cat[f"delta_h@{k}"] = (f"ΔH@{k}", f"ΔH@{k} = H@{k}(triggered) − H@{k}(reference)", delta, True)
    return cat


#: name -> (label, formula, function, higher_is_better): what ``register_metrics`` publishes.
CATALOGUE: dict = _catalogue()

__all__ = [
    "wins", "strict_argmax", "target_success", "accuracy", "query_hijack_rate", "best_positive_rank", "hits_at_k",
    "mrr",
    "selection_at_1", "recall_at_k", "delta", "chunked_best_positive_rank", "cos_shift",
    "nearer_target_rate", "CATALOGUE",
]
