"""Confidence intervals: Wilson for proportions, seeded (paired) bootstrap."""

import math

import pytest

from dife_core.engine.intervals import bootstrap, mean_std, mrr_interval, paired_bootstrap, straddles, wilson


def test_wilson_known_values():
    lo, hi = wilson(21, 40)  # 0.525 on 40 items: far from firm
    assert lo == pytest.approx(0.3725, abs=0.003) and hi == pytest.approx(0.6706, abs=0.003)
    lo, hi = wilson(1980, 2000)
    assert 0.98 < lo < 0.99 < hi < 1.0
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)  # no items: says nothing
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_wilson_narrows_with_n():
    w = [wilson(round(0.7 * n), n) for n in (10, 100, 1000)]
    widths = [hi - lo for lo, hi in w]
    assert widths[0] > widths[1] > widths[2]
    assert all(lo <= 0.7 <= hi for lo, hi in w)


def test_paired_bootstrap_is_seeded_and_paired():
    a = [1, 1, 1, 0, 1, 1, 0, 1, 1, 1] * 5
    b = [0, 1, 0, 0, 0, 1, 0, 0, 1, 0] * 5
    one = paired_bootstrap(a, b, seed=3)
    assert one == paired_bootstrap(a, b, seed=3)
    cont_a, cont_b = [i * 0.37 % 1 for i in range(40)], [i * 0.53 % 1 for i in range(40)]
    assert paired_bootstrap(cont_a, cont_b, seed=3) != paired_bootstrap(cont_a, cont_b, seed=4)
    lo, hi = one
    assert lo <= 0.5 <= hi and lo > 0  # mean(a) - mean(b) = 0.5, clearly positive
    # identical conditions: the paired difference is exactly 0 on every resample
    assert paired_bootstrap(a, a, seed=0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])
    assert paired_bootstrap([], []) == (-1.0, 1.0)
    # a custom statistic (e.g. MRR from ranks) is resampled with the same draws
    lo, hi = paired_bootstrap([1, 2, 1, 3], [4, 4, 2, 5], stat=lambda r: float((1 / r).mean()), n_boot=200, seed=1)
    assert lo <= hi and lo > -1


def test_bootstrap_and_mrr():
    rr = [1.0, 0.5, 1 / 3, 1.0, 0.25, 1.0]
    lo, hi = mrr_interval(rr, seed=0)
    assert lo <= sum(rr) / len(rr) <= hi and 0 <= lo and hi <= 1
    assert bootstrap([], empty=(0.0, 1.0)) == (0.0, 1.0)
    assert bootstrap([0.3] * 5) == (pytest.approx(0.3), pytest.approx(0.3))


def test_straddles_and_mean_std():
    assert straddles(0.37, 0.67, [0.5]) and not straddles(0.6, 0.9, [0.5])
    assert straddles(-0.05, 0.1, [0.2, -0.02]) and not straddles(0.5, 0.5, [0.5])
    assert not straddles(None, 0.4, [0.3])
    m, s = mean_std([0.9903, 0.9891, 0.9915])
    assert m == pytest.approx(0.9903) and s == pytest.approx(0.0012)
    assert mean_std([0.5]) == (0.5, 0.0) and not math.isnan(mean_std([1, 1])[1])
