"""Cells: what an evaluator returns, entry types, cell records and keys.

An interface's ``evaluate(ctx)`` returns a :class:`CellResult` (its primary
metric value, all metrics, the reference condition's values and the primary
metric under the clean input) or raises :class:`NotEvaluable` when the target
event or reference turns out undefined. The engine turns that into the cell
record of results.json (docs/engine.md), deciding the entry type from
the configured thresholds.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Optional

import attrs

from ..errors import DifeError


class NotEvaluable(DifeError):
    """Raised by an evaluator: the cell is N.E. ``question`` is the failed
    applicability question ("target event" or "reference")."""

    def __init__(self, reason: str, *, question: str = "target event"):
        super().__init__(reason)
        self.reason = reason
        self.question = question


@attrs.define
class CellResult:
    """What an evaluator measured.

    ``value`` is the primary metric (the card's ``metric``). ``baseline`` is
    the same metric under the clean input on the same model (absolute cards;
    it separates an attack effect from a model that already favours the
    target). ``reference`` holds the reference condition's values for
    relative cards (e.g. ``{"condition": "clean query", "h@1": 0.1}``).
    """

    value: float
    metrics: dict = attrs.Factory(dict)
    reference: Optional[dict] = None
    baseline: Optional[float] = None
    notes: Optional[str] = None
    #: per-item values whose mean is ``value`` (absolute cards: 0/1 hits per
    #: image / query; relative cards: the attack condition's per-item values),
    #: for the cell's confidence interval
    per_item: Any = None
    #: relative cards: the reference condition's per-item values, paired with ``per_item``
    per_item_reference: Any = None


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and (math.isnan(x) or math.isinf(x)))


def entry_type(value: float, *, relative: bool, baseline: Optional[float], thresholds: dict) -> str:
    """exposed / weak / negative (docs/metrics.md, "Entry types")."""
    if relative:
        if value >= thresholds["exposed_delta"]:
            return "exposed"
        if value <= thresholds["negative_delta"]:
            return "negative"
        return "weak"
    lift = value - baseline if _finite(baseline) else None
    if value >= thresholds["exposed"] and (lift is None or lift >= thresholds["exposed_delta"]):
        return "exposed"
    if lift is not None and lift <= thresholds["negative_delta"]:
        return "negative"
    return "weak"


def _clean(x):
    """JSON-safe floats (NaN/inf -> None), recursively."""
    if isinstance(x, float):
        return x if _finite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return _clean(x.item())
    return x


def card_fields(card) -> dict:
    """The five fields of an interface card (plus metrics), as recorded in a cell."""
    return {
        "readout": card.readout, "trigger_channels": list(card.trigger_channels), "target_event": card.target_event,
        "population": card.population, "reference": card.reference, "metric": card.metric,
        "extra_metrics": list(card.extra_metrics), "relative": card.relative, "decision": card.decision,
    }


def make_record(*, checkpoint: str, card, status: str, value=None, metrics=None, reference=None, reason=None,
                channel=None, question=None, thresholds=None, baseline=None, notes=None) -> dict:
    """A cell record with the stable keys of results.json (plus extensions)."""
    rec = {
        "checkpoint": checkpoint,
        "interface": card.name,
        "status": status,
        "metric": card.metric,
        "value": _clean(value) if status not in ("n.e.", "error") else None,
        "metrics": _clean(metrics or {}),
        "reference": _clean(reference),
        "reason": reason,
        "card": card_fields(card),
        # extensions
        "channel": channel,
        "question": question,
        "baseline": _clean(baseline),
        "thresholds": thresholds,
        "notes": notes,
    }
    return rec


def _as_list(x) -> list:
    if x is None:
        return []
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().reshape(-1).tolist()
    elif hasattr(x, "tolist"):
        x = x.reshape(-1).tolist()
    return [float(v) for v in x]


def interval(result: CellResult, *, relative: bool, seed: int = 0) -> Optional[dict]:
    """``{ci_low, ci_high, n, ci_method}`` of a result's primary value, or
    None when the evaluator gave no per-item values. Proportions of 0/1 hits
    get Wilson's interval; deltas a paired bootstrap over the same items;
    other means a bootstrap (seeded: the same cell gives the same interval)."""
    from . import intervals as I

    a = _as_list(result.per_item)
    if not a:
        return None
    b = _as_list(result.per_item_reference)
    if relative and b:
        if len(b) != len(a):
            return None
        lo, hi = I.paired_bootstrap(a, b, seed=seed)
        method = I.PAIRED_BOOTSTRAP
    elif all(v in (0.0, 1.0) for v in a):
        lo, hi = I.wilson(sum(a), len(a))
        method = I.WILSON
    else:
        lo, hi = I.bootstrap(a, seed=seed)
        method = I.BOOTSTRAP
    return {"ci_low": float(lo), "ci_high": float(hi), "n": len(a), "ci_method": method}


def record_from_result(result: CellResult, *, checkpoint: str, card, channel: str, thresholds: dict,
                       seed: int = 0) -> dict:
    value = float(result.value) if result.value is not None else float("nan")
    if not _finite(value):
        return make_record(checkpoint=checkpoint, card=card, status="n.e.", channel=channel,
                           question="target event", metrics=result.metrics,
                           reason="the primary metric is undefined on this population (no query has a target)")
    status = entry_type(value, relative=card.relative, baseline=result.baseline, thresholds=thresholds)
    ci = interval(result, relative=card.relative, seed=seed)
    straddles = False
    if ci is not None:
        from .intervals import straddles as _straddles

        cut = thresholds["exposed_delta"] if card.relative else thresholds["exposed"]
        low_cut = thresholds["negative_delta"] if card.relative else None
        # the status follows the point value (the paper's convention); a cell whose
        # interval reaches across a threshold is flagged, so a reader knows it could flip
        straddles = _straddles(ci["ci_low"], ci["ci_high"], (cut, low_cut))
    rec = make_record(checkpoint=checkpoint, card=card, status=status, value=value, metrics=result.metrics,
                      reference=result.reference, channel=channel, thresholds=thresholds,
                      baseline=result.baseline, notes=result.notes)
    if ci is not None:
        rec.update(ci)
    rec["straddles"] = bool(straddles)
    return rec


def stable_key(obj) -> str:
    """A content key: sha256 of canonical JSON, 24 hex characters."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
