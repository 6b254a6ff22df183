"""Confidence intervals for cell metrics (pure functions, no torch).

* :func:`wilson`: a proportion ``k / n`` (TS, QHR, H@k, Sel@1, ...). Wilson's
  score interval stays inside [0, 1] and is sensible at k = 0 or k = n and
  for small n, where the normal approximation is not.
* :func:`paired_bootstrap`: a difference between two conditions measured on
  the *same* items (triggered vs clean query, ΔH@1, ΔMRR, ...). Items are
  resampled with replacement and both conditions use the same draw, so the
  interval reflects the pairing.
* :func:`bootstrap`: any statistic of one list of per-item values (MRR is
  the mean reciprocal rank: :func:`mrr_interval`).

Bootstrap intervals are percentile intervals, seeded: the same inputs and
seed give the same interval. With no items an interval is the whole range
the statistic can take, i.e. it says nothing (and straddles every threshold).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

WILSON = "wilson"
BOOTSTRAP = "bootstrap"
PAIRED_BOOTSTRAP = "paired-bootstrap"


def wilson(k: float, n: int, z: float = 1.96) -> tuple:
    """Wilson score interval ``(low, high)`` of the proportion ``k / n``;
    ``(0.0, 1.0)`` when ``n == 0``."""
    n = int(n)
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k = {k} is not between 0 and n = {n}")
    p = k / n
    z2 = z * z
    den = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    # rounding can leave p = 0 or 1 a hair outside its own interval; it never is
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def _mean(x):
    return float(sum(x) / len(x))


def _percentiles(samples, alpha: float) -> tuple:
    import numpy as np

    lo, hi = np.quantile(np.asarray(samples, dtype=float), [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap(values: Sequence[float], stat: Optional[Callable] = None, *, n_boot: int = 1000, seed: int = 0,
              alpha: float = 0.05, empty: tuple = (0.0, 1.0)) -> tuple:
    """Percentile bootstrap interval ``(low, high)`` of ``stat(values)``
    (default: the mean); ``empty`` when there are no values."""
    import numpy as np

    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return empty
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    if stat is None:  # the mean, vectorised
        return _percentiles(x[idx].mean(axis=1), alpha)
    return _percentiles([stat(x[i]) for i in idx], alpha)


def paired_bootstrap(per_item_a: Sequence[float], per_item_b: Sequence[float], stat: Optional[Callable] = None, *,
                     n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     empty: tuple = (-1.0, 1.0)) -> tuple:
    """Percentile interval ``(low, high)`` of ``stat(a) - stat(b)`` where
    ``a[i]`` and ``b[i]`` are the same item under two conditions (default
    ``stat``: the mean). ``empty`` when there are no items."""
    import numpy as np

    a = np.asarray(list(per_item_a), dtype=float)
    b = np.asarray(list(per_item_b), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap: {a.size} items in a, {b.size} in b; a pairing needs equal counts")
    if a.size == 0:
        return empty
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(int(n_boot), a.size))
    if stat is None:  # difference of means = mean of differences, vectorised
        return _percentiles((a - b)[idx].mean(axis=1), alpha)
    return _percentiles([stat(a[i]) - stat(b[i]) for i in idx], alpha)


def mrr_interval(reciprocal_ranks: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> tuple:
    """Bootstrap interval of the mean reciprocal rank (one value 1/rank per query)."""
    return bootstrap(reciprocal_ranks, n_boot=n_boot, seed=seed, empty=(0.0, 1.0))


def straddles(low, high, thresholds) -> bool:
    """True when some threshold lies inside the interval ``[low, high]``:
    the cell's status could flip within its uncertainty."""
    if low is None or high is None:
        return False
    return any(low <= t <= high for t in thresholds if t is not None) and low < high


def mean_std(values: Sequence[float]) -> tuple:
    """``(mean, std)`` over seeds; std is the sample standard deviation
    (n − 1), 0.0 for a single seed."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("mean_std of no values")
    m = _mean(v)
    if len(v) < 2:
        return (m, 0.0)
    return (m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)))


__all__ = ["wilson", "bootstrap", "paired_bootstrap", "mrr_interval", "straddles", "mean_std", "WILSON",
           "BOOTSTRAP", "PAIRED_BOOTSTRAP"]
