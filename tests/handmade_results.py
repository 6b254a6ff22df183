"""Hand-made results dicts for report, verdict, compare and export tests.

:func:`make_results` builds a results.json-shaped dict (no engine run): the
eight built-in interfaces, audited rows of a chosen footprint kind, one
control row per audited row, footprints, controls, and (optionally) an
interval per measured cell.
"""

from __future__ import annotations

import copy

from dife_core.engine.intervals import straddles, wilson

IFACES = [
    # id, title, short title, metric, readout, trigger channels, relative
    ("zero-shot-classification", "zero-shot visual classification", "zero-shot cls.", "ts", "score", ["image"], False),
    ("prompt-conditioned-classification", "prompt-conditioned classification", "prompted cls.", "qhr", "score",
     ["text"], False),
    ("targeted-retrieval", "targeted retrieval (text→image)", "targeted retr.", "h@1", "score", ["text"], False),
    ("image-text-retrieval", "image–text retrieval (image→text)", "image–text retr.", "h@1", "score", ["image"],
     False),
    ("text-reranking", "text reranking", "text rerank", "delta_h@1", "score", ["text"], True),
    ("candidate-selection", "candidate selection", "cand. selection", "delta_sel@1", "score", ["text"], True),
    ("downstream-visual-classification", "downstream visual classification", "downstream visual", "ts",
     "image-features", ["image", "mechanism"], False),
    ("text-embedding", "text-embedding readout", "text embedding", "ts", "text-features", ["text"], False),
]
METRICS = {"ts": "TS", "qhr": "QHR", "h@1": "H@1", "delta_h@1": "ΔH@1", "delta_sel@1": "ΔSel@1"}
THRESHOLDS = {"exposed": 0.5, "exposed_delta": 0.2, "negative_delta": -0.02}
SLOTS = {"visual": (0.0, 0.99, 0.01, 1.0), "textual": (0.0, 0.01, 0.97, 0.98), "coupled": (0.02, 0.1, 0.15, 0.95),
         "weak": (0.01, 0.02, 0.01, 0.02)}
CHANNEL = {"visual": "image", "textual": "text", "coupled": "image", "weak": "image"}
# the paper suite's six checkpoints, by footprint kind
PAPER = {"badencoder": "visual", "liang-badclip": "visual", "contrastive-poisoning": "visual",
         "bai-badclip": "coupled", "toxictextclip": "textual", "badtexttower": "textual"}


def _interval(cell, n, with_ci):
    if not with_ci or cell["status"] in ("n.e.", "error"):
        return
    v = cell["value"]
    if cell["card"]["relative"]:
        lo, hi = max(-1.0, v - 0.1), min(1.0, v + 0.1)
        method, th = "paired-bootstrap", [THRESHOLDS["exposed_delta"], THRESHOLDS["negative_delta"]]
    else:
        lo, hi = wilson(round(v * n), n)
        method, th = "wilson", [THRESHOLDS["exposed"]]
    cell.update(ci_low=lo, ci_high=hi, n=n, ci_method=method, straddles=straddles(lo, hi, th))


def cell(checkpoint, iface, status, value=None, *, reason=None, channel=None, n=200, with_ci=True):
    iid, title, short, metric, readout, channels, relative = iface
    c = {"checkpoint": checkpoint, "interface": iid, "status": status, "metric": metric,
         "value": value if status not in ("n.e.", "error") else None,
         "metrics": {metric: value, "n_images": n} if value is not None else {},
         "reference": None, "reason": reason,
         "card": {"readout": readout, "trigger_channels": channels, "target_event": "target wins",
                  "population": "classification", "reference": None, "metric": metric, "extra_metrics": [],
                  "relative": relative},
         "channel": channel, "question": "trigger channel" if status == "n.e." else None, "baseline": None,
         "thresholds": THRESHOLDS, "notes": None}
    _interval(c, n, with_ci)
    return c


def _row_cells(name, kind, *, control=False, value=None, n=200, with_ci=True):
    ch = CHANNEL[kind]
    out = []
    for iface in IFACES:
        readout, channels, relative = iface[4], iface[5], iface[6]
        if ch not in channels:
            out.append(cell(name, iface, "n.e.", reason=f"no {channels[0]} trigger channel", with_ci=with_ci))
            continue
        exposed = not control and (kind in ("visual", "textual") or (kind == "coupled" and readout == "score"))
        v = value if value is not None else ((0.9 if relative else 0.98) if exposed else 0.01)
        st = ("exposed" if v >= THRESHOLDS["exposed_delta"] else "weak") if relative else \
             ("exposed" if v >= THRESHOLDS["exposed"] else "weak")
        out.append(cell(name, iface, st, v, channel=ch, n=n, with_ci=with_ci))
    return out


def footprint(name, kind):
    a00, a10, a01, a11 = SLOTS[kind]
    d = a11 - a00 + 1e-8
    return {"checkpoint": name, "a00": a00, "a10": a10, "a01": a01, "a11": a11, "signal": abs(a11 - a00),
            "vrs": (a10 - a00) / d, "trs": (a01 - a00) / d, "css": (a11 - max(a10, a01)) / d, "footprint": kind,
            "probe": "branch-swap", "predicted_exposed": [], "prediction_holds": True, "predicted_weak": [],
            "mismatches": [], "readout": "zero-shot-classification:ts"}


def make_results(rows=None, *, with_ci=True, controls=True, n=200) -> dict:
    """``rows``: ``{name: kind}`` (kind: visual / textual / coupled / weak);
    default: the paper suite's six checkpoints."""
    rows = dict(PAPER if rows is None else rows)
    checkpoints, cells, fps, ctl = [], [], [], []
    for name, kind in rows.items():
        checkpoints.append({"name": name, "role": "audited", "loader": "handmade", "control_of": None,
                            "fingerprint": {"visual": f"v-{name}", "text": f"t-{name}"},
                            "attack": {"attack": name}, "clean_utility": {"clean_acc": 0.93}})
        cells += _row_cells(name, kind, n=n, with_ci=with_ci)
        fps.append(footprint(name, kind))
    if controls:
        for name, kind in rows.items():
            cname = f"clean@{name}"
            checkpoints.append({"name": cname, "role": "control", "loader": "handmade", "control_of": name,
                                "fingerprint": {"visual": "v-clean", "text": "t-clean"}, "attack": None,
                                "clean_utility": None})
            cells += _row_cells(cname, kind, control=True, n=n, with_ci=with_ci)
            ctl.append({"checkpoint": cname, "control_of": name, "flagged": False, "exposed": []})
    return {
        "dife_version": "test", "spec": {}, "seed": 0, "plugins": [], "checkpoints": checkpoints, "cells": cells,
        "footprints": fps,
        "interfaces": [{"id": i[0], "title": i[1], "short_title": i[2], "metric": i[3], "readout": i[4],
                        "trigger_channels": i[5], "relative": i[6], "target_event": "target wins",
                        "population": "classification", "reference": None, "plugin": "test", "order": n_}
                       for n_, i in enumerate(IFACES)],
        "metrics": {k: {"label": v, "direction": "higher", "formula": k} for k, v in METRICS.items()},
        "world": {"world": "hand"}, "templates": ["a photo of a {}"], "thresholds": THRESHOLDS,
        "footprint_params": {"weak_signal": 0.05, "ratio": 0.7, "lead": 0.2, "eps": 1e-8},
        "controls": ctl, "complete": True, "missing": [],
    }


def set_cell(results, checkpoint, interface, **fields) -> dict:
    """A copy of ``results`` with one cell's fields replaced."""
    r = copy.deepcopy(results)
    for c in r["cells"]:
        if c["checkpoint"] == checkpoint and c["interface"] == interface:
            c.update(fields)
            return r
    raise KeyError((checkpoint, interface))
