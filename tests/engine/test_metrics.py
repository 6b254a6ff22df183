"""Metric formulas against hand-computed cases, including the tie rule."""

import math

import pytest
import torch

from dife_core import metrics as M


def test_target_success_counts_strict_wins_only():
    scores = torch.tensor([[0.9, 0.1, 0.0],   # target 0 wins
                           [0.5, 0.5, 0.0],   # tie with class 1: not a win
                           [0.1, 0.8, 0.2],   # class 1 wins
                           [0.3, 0.2, 0.1]])  # target wins
    assert M.target_success(scores, 0) == pytest.approx(0.5)


def test_accuracy_counts_a_tie_as_a_miss():
    scores = torch.tensor([[1.0, 1.0], [0.2, 0.8], [0.7, 0.3]])
    assert M.accuracy(scores, [0, 1, 0]) == pytest.approx(2 / 3)
    assert M.accuracy(scores, [1, 1, 0]) == pytest.approx(2 / 3)


def test_qhr_is_the_share_won_by_the_triggered_source_column():
    # target-class images scored against P^tau (column 1 = triggered source prompt)
    scores = torch.tensor([[0.4, 0.6, 0.1], [0.7, 0.6, 0.1], [0.2, 0.9, 0.3], [0.5, 0.5, 0.0]])
    assert M.query_hijack_rate(scores, 1) == pytest.approx(0.5)


def test_best_positive_rank_with_multiple_targets_and_ties():
    scores = torch.tensor([
        [0.9, 0.8, 0.7, 0.6],  # best target (col 2) beaten by 2 negatives -> r* = 3
        [0.5, 0.5, 0.1, 0.0],  # target col 0 ties negative col 1 -> tie counts against: r* = 2
        [0.1, 0.2, 0.3, 0.4],  # targets cols 2,3: best 0.4 first -> r* = 1
        [0.3, 0.2, 0.1, 0.0],  # no target -> 0 (undefined)
    ])
    pos = torch.tensor([[False, False, True, True], [True, False, False, False],
                        [False, False, True, True], [False] * 4])
    r = M.best_positive_rank(scores, pos)
    assert r.tolist() == [3, 2, 1, 0]
    assert M.hits_at_k(r, 1) == pytest.approx(1 / 3)
    assert M.hits_at_k(r, 2) == pytest.approx(2 / 3)
    assert M.hits_at_k(r, 5) == pytest.approx(1.0)
    assert M.mrr(r) == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert M.selection_at_1(r) == pytest.approx(1 / 3)


def test_undefined_ranks_give_nan_not_zero():
    r = torch.tensor([0, 0])
    assert math.isnan(M.hits_at_k(r, 1)) and math.isnan(M.mrr(r))


def test_delta_is_signed():
    assert M.delta(0.25, 0.75) == pytest.approx(-0.5)
    assert M.delta(None, 0.1) is None


@pytest.mark.parametrize("chunk,qchunk", [(1, 1), (3, 2), (7, 5), (1000, 1000)])
def test_chunked_rank_equals_dense(chunk, qchunk):
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(11, 6, generator=g), dim=1)
    gal = torch.nn.functional.normalize(torch.randn(23, 6, generator=g), dim=1)
    gal[5] = gal[4]  # an exact duplicate: exercises the tie rule
    qk = torch.randint(0, 4, (11,), generator=g)
    gk = torch.randint(0, 4, (23,), generator=g)
    dense = M.best_positive_rank(q @ gal.T, qk.view(-1, 1) == gk.view(1, -1))
    chunked = M.chunked_best_positive_rank(q, gal, qk, gk, chunk=chunk, query_chunk=qchunk)
    assert chunked.tolist() == dense.tolist()


def test_text_feature_metrics():
    tgt = torch.tensor([1.0, 0.0])
    clean = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    trig = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.2, 1.0]]), dim=1)
    assert M.nearer_target_rate(trig, clean, tgt) == pytest.approx(0.5)
    expect = float(((trig @ tgt) - (clean @ tgt)).mean())
    assert M.cos_shift(trig, clean, tgt) == pytest.approx(expect)


def test_builtin_metrics_are_registered():
    from dife_core.plugins import get_registry

    names = set(get_registry().all("metrics"))
    # every metric a built-in card names resolves to a registered metric with a label
    assert {"ts", "qhr", "h@1", "h@5", "h@10", "mrr", "sel@1", "clean_acc", "delta_h@1", "delta_sel@1",
            "delta_mrr", "cos_shift"} <= names
    reg = get_registry()
    for iface in reg.all("interfaces").values():
        if reg.owner("interfaces", iface.name).startswith("dife_core"):
            for m in (iface.card.metric, *iface.card.extra_metrics):
                assert m in names, (iface.name, m)
    assert reg.get("metrics", "delta_sel@1").to_dict()["label"] == "ΔSel@1"
