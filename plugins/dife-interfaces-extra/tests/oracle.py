"""Independent oracles: plain Python loops over embeddings encoded here
(not through the embedding service), one per extra interface's definition."""

from __future__ import annotations

import math


def vecs(feats) -> list:
    import torch.nn.functional as F

    return [list(map(float, r)) for r in F.normalize(feats.float(), dim=-1)]


def images(model, pixels) -> list:
    return vecs(model.encode_image(pixels))


def texts(model, strings) -> list:
    return vecs(model.encode_text(list(strings)))


def cos(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


# -- clip-score-filtering ------------------------------------------------------------------

def cut(true_scores, mode, threshold, fraction) -> float:
    if mode == "threshold":
        return threshold
    k = max(1, math.ceil(round(fraction * len(true_scores), 9)))
    return sorted(true_scores, reverse=True)[k - 1]


def filtering(img, cap, att_side, tgt_side, mode="top-fraction", threshold=0.28, fraction=0.3) -> dict:
    """``img``/``cap``: the filter's clean pool features; ``att_side``: attacker
    features (triggered or not); ``tgt_side``: the target-class features they
    are paired with. A pair passes when cos >= the cut."""
    true = [cos(a, b) for a, b in zip(img, cap)]
    tau = cut(true, mode, threshold, fraction)
    passes = [1.0 if cos(a, b) >= tau else 0.0 for a in att_side for b in tgt_side]
    return {"pass_rate": mean(passes), "threshold": tau, "true_rate": mean(1.0 if t >= tau else 0.0 for t in true)}


# -- clipscore-caption-eval ---------------------------------------------------------------------

def clipscore(a, b, w=2.5) -> float:
    return w * max(cos(a, b), 0.0)


def clipscore_wins(images_, own_caps, cands, w=2.5) -> tuple:
    """(win rate, mean candidate CLIPScore): image i wins against candidate j
    when CLIPScore(i, cand j) > CLIPScore(i, own caption i)."""
    wins, scores = [], []
    for x, own in zip(images_, own_caps):
        s_own = clipscore(x, own, w)
        for c in cands:
            s = clipscore(x, c, w)
            wins.append(1.0 if s > s_own else 0.0)
            scores.append(s)
    return mean(wins), scores


# -- nearest-neighbour search -------------------------------------------------------------------

def search(queries, own, gallery, is_target, k, exclude_own=True) -> dict:
    """H@K, P@K and MRR of each query over the gallery without its own item."""
    h, p, rr = [], [], []
    for q, qi in zip(queries, own):
        items = [(cos(q, g), t, j) for j, (g, t) in enumerate(zip(gallery, is_target))
                 if not (exclude_own and j == qi)]
        best = max(s for s, t, _ in items if t)
        r = 1 + sum(1 for s, t, _ in items if not t and s >= best)
        h.append(1.0 if r <= k else 0.0)
        rr.append(1.0 / r)
        top = sorted(items, key=lambda it: (-it[0], it[1], it[2]))[:k]  # ties: non-targets first
        p.append(sum(1 for _, t, _ in top if t) / k)
    return {"h@k": mean(h), "p@k": mean(p), "mrr": mean(rr)}


# -- kNN classifier -----------------------------------------------------------------------------

def knn_predict(x, memory, labels, n_classes, k, weighting="cosine") -> int:
    sims = sorted(((cos(x, m), j) for j, m in enumerate(memory)), key=lambda t: (-t[0], t[1]))[:k]
    votes = [0.0] * n_classes
    for s, j in sims:
        votes[labels[j]] += s if weighting == "cosine" else 1.0
    top = max(votes)
    return votes.index(top) if votes.count(top) == 1 else -1
