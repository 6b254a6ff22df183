"""Compare two audits (``dife compare RUN_A RUN_B``): did a fine-tune remove
the backdoor, did a change to DIFE move a figure?

Rows are matched by checkpoint name and cells by (checkpoint, interface). A
cell is reported when

* its status changed (``change = "status"``);
* both runs carry an interval and the intervals do not overlap
  (``"interval"``): the value moved beyond its uncertainty;
* either run has no interval and the value changed at all (``"value"``);
* it is recorded in one run only (``"missing"``).

A value that moved within overlapping intervals is not a change. Footprints
(the class), verdicts (the decision) and tower fingerprints are compared
too, and checkpoints / interfaces audited in one run only are listed.
Everything is derived from the two results dicts; nothing is recomputed.
"""

from __future__ import annotations

import math
from typing import Optional

TOLERANCE = 1e-9  # float noise, not a change


def _num(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _iv(c: dict) -> Optional[tuple]:
    lo, hi = _num(c.get("ci_low")), _num(c.get("ci_high"))
    return (lo, hi) if lo is not None and hi is not None else None


def cell_change(a: Optional[dict], b: Optional[dict]) -> Optional[str]:
    """How a cell differs between two runs, or None (see the module docstring)."""
    if a is None or b is None:
        return None if a is b else "missing"
    if a.get("status") != b.get("status"):
        return "status"
    va, vb = _num(a.get("value")), _num(b.get("value"))
    if va is None or vb is None:
        return None if (va is None) == (vb is None) else "value"
    ia, ib = _iv(a), _iv(b)
    if ia is not None and ib is not None:
        return "interval" if (ia[1] < ib[0] or ib[1] < ia[0]) else None
    return "value" if abs(va - vb) > TOLERANCE else None


def _cells(results: dict) -> dict:
    return {(c["checkpoint"], c["interface"]): c for c in results.get("cells") or []}


def _names(results: dict) -> list:
    return [ck["name"] for ck in results.get("checkpoints") or []]


def _iface_ids(results: dict) -> list:
    ids = [i["id"] for i in results.get("interfaces") or []]
    return ids or sorted({c["interface"] for c in results.get("cells") or []})


def _only(xs: list, ys: list) -> list:
    s = set(ys)
    return [x for x in xs if x not in s]


def _verdict_map(results: dict) -> dict:
    vs = results.get("verdicts")
    if not isinstance(vs, list):
        from .verdicts import verdicts

        vs = verdicts(results)
    return {v["checkpoint"]: v for v in vs}


def compare(a: dict, b: dict) -> dict:
    """The differences between results ``a`` and ``b`` (JSON-ready)."""
    names_a, names_b = _names(a), _names(b)
    ifs_a, ifs_b = _iface_ids(a), _iface_ids(b)
    common_ck = [n for n in names_a if n in set(names_b)]
    common_if = [i for i in ifs_a if i in set(ifs_b)]
    ca, cb = _cells(a), _cells(b)
    cells, unchanged = [], 0
    for ck in common_ck:
        for i in common_if:
            x, y = ca.get((ck, i)), cb.get((ck, i))
            if x is None and y is None:
                continue
            how = cell_change(x, y)
            if how is None:
                unchanged += 1
                continue
            va, vb = _num((x or {}).get("value")), _num((y or {}).get("value"))
            cells.append({"checkpoint": ck, "interface": i, "change": how,
                          "status_a": (x or {}).get("status"), "status_b": (y or {}).get("status"),
                          "value_a": va, "value_b": vb,
                          "delta": (vb - va) if va is not None and vb is not None else None,
                          "ci_a": list(_iv(x)) if x and _iv(x) else None,
                          "ci_b": list(_iv(y)) if y and _iv(y) else None})
    fa = {f["checkpoint"]: f for f in a.get("footprints") or []}
    fb = {f["checkpoint"]: f for f in b.get("footprints") or []}
    footprints = []
    for ck in common_ck:
        fpa, fpb = (fa.get(ck) or {}).get("footprint"), (fb.get(ck) or {}).get("footprint")
        if (ck in fa or ck in fb) and fpa != fpb:
            footprints.append({"checkpoint": ck, "footprint_a": fpa, "footprint_b": fpb})
    va, vb = _verdict_map(a), _verdict_map(b)
    verdicts = [{"checkpoint": ck, "decision_a": (va.get(ck) or {}).get("decision"),
                 "decision_b": (vb.get(ck) or {}).get("decision")}
                for ck in common_ck if (ck in va or ck in vb)
                and (va.get(ck) or {}).get("decision") != (vb.get(ck) or {}).get("decision")]
    pa = {ck["name"]: ck.get("fingerprint") or {} for ck in a.get("checkpoints") or []}
    pb = {ck["name"]: ck.get("fingerprint") or {} for ck in b.get("checkpoints") or []}
    fingerprints = []
    for ck in common_ck:
        towers = [t for t in ("visual", "text") if pa[ck].get(t) != pb[ck].get(t)]
        if towers:
            fingerprints.append({"checkpoint": ck, "towers": towers})
    out = {
        "checkpoints_only_in_a": _only(names_a, names_b), "checkpoints_only_in_b": _only(names_b, names_a),
        "interfaces_only_in_a": _only(ifs_a, ifs_b), "interfaces_only_in_b": _only(ifs_b, ifs_a),
        "cells": cells, "unchanged_cells": unchanged, "footprints": footprints, "verdicts": verdicts,
        "fingerprints": fingerprints,
    }
    out["identical"] = not any(v for k, v in out.items() if k != "unchanged_cells")
    return out


__all__ = ["compare", "cell_change", "TOLERANCE"]
