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
    import torch

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


#: name -> (formula, function, higher_is_better): what ``register_metrics`` publishes.
CATALOGUE: dict = {
    "target-success": ("TS = mean_i 1[argmax_c s(x_i^τ, t_c) = y*] over non-target images (strict win)",
                       target_success, True),
    "clean-accuracy": ("acc = mean_i 1[argmax_c s(x_i, t_c) = y_i] (strict win; a tie is a miss)", accuracy, True),
    "query-hijack-rate": ("QHR = mean over target-class images x⁺ of 1[argmax over P^τ = triggered source prompt]",
                          query_hijack_rate, True),
    "best-positive-rank": ("r* = 1 + #{negatives g : s(q, g) >= max_{p positive} s(q, p)}", best_positive_rank, False),
    "hits-at-k": ("H@K = mean_q 1[r*_q <= K]", hits_at_k, True),
    "mrr": ("MRR = mean_q 1 / r*_q", mrr, True),
    "selection-at-1": ("Sel@1 = mean over groups of 1[r* = 1] (top-1 candidate is a target)", selection_at_1, True),
    "recall-at-k": ("R@K = mean_q 1[rank of the query's own match <= K]", recall_at_k, True),
    "delta": ("Δm = m_attack − m_ref (signed)", delta, True),
    "cos-shift": ("mean_t cos(u(t^τ), u*) − cos(u(t), u*)", cos_shift, True),
    "nearer-target-rate": ("mean_t 1[cos(u(t^τ), u*) > cos(u(t^τ), u(t))]", nearer_target_rate, True),
}

__all__ = [
    "wins", "target_success", "accuracy", "query_hijack_rate", "best_positive_rank", "hits_at_k", "mrr",
    "selection_at_1", "recall_at_k", "delta", "chunked_best_positive_rank", "cos_shift",
    "nearer_target_rate", "CATALOGUE",
]
