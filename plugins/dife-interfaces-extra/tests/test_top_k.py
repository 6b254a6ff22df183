"""The top-k selection the searches and the kNN head use (``topk`` plus a tie
rule) equals a stable descending sort, ties included."""

import random

import torch

from dife_interfaces_extra import common as C
from dife_interfaces_extra.knn_classifier import knn_votes


def _sorted_mask(s, k, before_ties=None):
    """Reference: a stable descending sort, ``before_ties`` columns first among ties."""
    g = s.shape[1]
    perm = torch.arange(g) if before_ties is None else torch.cat(
        [torch.nonzero(before_ties).flatten(), torch.nonzero(~before_ties).flatten()])
    order = perm[torch.sort(s[:, perm], dim=1, descending=True, stable=True).indices[:, :k]]
    mask = torch.zeros_like(s, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask


VALUES = [-1.0, 0.0, 0.25, 0.5, 1.0, float("-inf")]  # few values: many ties


def _cases(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        q, g = rng.randint(1, 6), rng.randint(1, 12)
        yield ([[rng.choice(VALUES) for _ in range(g)] for _ in range(q)], [rng.random() < 0.5 for _ in range(g)],
               rng.randint(1, 14))


def test_top_k_mask_equals_a_stable_sort():
    for rows, flags, k in _cases(400):
        s, first = torch.tensor(rows), torch.tensor(flags)
        for before in (None, first):
            got = C.top_k_mask(s, k, before_ties=before)
            assert torch.equal(got, _sorted_mask(s, k, before)), (rows, flags, k, before)
            assert (got.sum(dim=1) == min(k, s.shape[1])).all()


def test_knn_votes_equal_the_sorted_neighbours():
    for rows, _, k in _cases(150, seed=1):
        s = torch.tensor(rows).clamp(min=-1.0)
        g = s.shape[1]
        labels = torch.tensor([i % 3 for i in range(g)])
        # queries x memory with identity memory: the scores are the given rows
        for weighting in ("cosine", "uniform"):
            got = knn_votes(s, torch.eye(g), labels, 3, k, weighting)
            near = _sorted_mask(s, k)
            w = torch.where(near, s, 0.0) if weighting == "cosine" else near.float()
            want = torch.zeros(s.shape[0], 3).index_add_(1, labels, w)
            assert torch.allclose(got, want, atol=1e-6), (rows, k, weighting)
