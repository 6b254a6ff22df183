"""Shared formatting of results for every report (terminal, Markdown, HTML).

Titles and labels come from the results themselves: an interface's column
title is its card's ``short_title`` (else ``title``, else its id) and a
metric's label is ``results["metrics"][name]["label"]`` (else the name), so
a plugin's interface or metric reads as well as a built-in one. Every
function here returns plain strings; each report escapes them for its own
output (:mod:`dife_core.safetext`).
"""

from __future__ import annotations

import math
from typing import Optional

STATUS_WORDS = {"exposed": "exposed", "weak": "weak", "negative": "negative", "n.e.": "N.E.", "error": "error"}
FOOTPRINT_SLOTS = ("a00", "a10", "a01", "a11")
FOOTPRINT_RATIOS = ("signal", "vrs", "trs", "css")
FOOTPRINT_HEADS = {"signal": "signal", "vrs": "VRS", "trs": "TRS", "css": "CSS"}


def metric_label(name: str, results: Optional[dict] = None) -> str:
    m = ((results or {}).get("metrics") or {}).get(name)
    label = m.get("label") if isinstance(m, dict) else None
    return str(label or name)


def iface_title(iface: dict) -> str:
    return str(iface.get("short_title") or iface.get("title") or iface["id"])


def column_title(iface: dict, results: Optional[dict] = None, sep: str = " ") -> str:
    return f"{iface_title(iface)}{sep}{metric_label(iface['metric'], results)}"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_value(v, relative: bool = False) -> str:
    if not _finite(v):
        return "—"
    return f"{v:+.3f}" if relative else f"{v:.3f}"


def cell_text(cell: Optional[dict]) -> str:
    """The matrix entry: a number for measured cells, N.E. / error otherwise."""
    if cell is None:
        return "—"
    st = cell.get("status")
    if st == "n.e.":
        return "N.E."
    if st == "error":
        return "error"
    return fmt_value(cell.get("value"), bool((cell.get("card") or {}).get("relative")))


def interval(cell: Optional[dict]) -> Optional[tuple]:
    """``(low, high)`` when the record carries a finite interval (old stores do not)."""
    if not cell or cell.get("status") in ("n.e.", "error"):
        return None
    lo, hi = cell.get("ci_low"), cell.get("ci_high")
    return (lo, hi) if _finite(lo) and _finite(hi) else None


def ci_text(cell: Optional[dict]) -> str:
    """``[0.37, 0.67]`` or empty."""
    iv = interval(cell)
    if iv is None:
        return ""
    rel = bool((cell.get("card") or {}).get("relative"))
    return f"[{fmt_value(iv[0], rel)}, {fmt_value(iv[1], rel)}]"


def std_text(cell: Optional[dict]) -> str:
    """``± 0.012`` over seeds, or empty."""
    s = (cell or {}).get("std")
    return f"± {s:.3f}" if _finite(s) and (cell or {}).get("status") not in ("n.e.", "error") else ""


def cell_text_full(cell: Optional[dict]) -> str:
    """Value, spread over seeds and interval: ``0.520 ± 0.010 [0.370, 0.670]``."""
    return " ".join(x for x in (cell_text(cell), std_text(cell), ci_text(cell)) if x)


def straddles(cell: Optional[dict]) -> bool:
    return bool(cell and cell.get("straddles") and cell.get("status") not in ("n.e.", "error"))


def per_seed_text(cell: Optional[dict]) -> str:
    ps = (cell or {}).get("per_seed")
    if isinstance(ps, dict):
        items = list(ps.items())
    elif isinstance(ps, list):
        items = [(p.get("seed", i), p.get("value")) if isinstance(p, dict) else (i, p) for i, p in enumerate(ps)]
    else:
        return ""
    rel = bool(((cell or {}).get("card") or {}).get("relative"))
    return ", ".join(f"seed {k}: {fmt_value(v, rel)}" for k, v in items)


def num(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "—"
    return "—"  # never an arbitrary string: callers print the result unescaped


def ordered_interfaces(results: dict) -> list:
    """The interfaces in report order: the card's ``order`` (if any), then plan order."""
    ifaces = list(results.get("interfaces") or [])
    idx = {id(i): n for n, i in enumerate(ifaces)}
    return sorted(ifaces, key=lambda i: (i.get("order") if isinstance(i.get("order"), (int, float)) else 1000,
                                         idx[id(i)]))


def matrix(results: dict) -> tuple:
    """``(interfaces, rows)``: rows are ``(checkpoint entry, {interface id: cell})``, audited rows first."""
    ifaces = ordered_interfaces(results)
    by = {}
    for c in results.get("cells") or []:
        by.setdefault(c["checkpoint"], {})[c["interface"]] = c
    rows = []
    for role in ("audited", "control"):
        for ck in results.get("checkpoints") or []:
            if ck.get("role", "audited") == role:
                rows.append((ck, by.get(ck["name"], {})))
    return ifaces, rows


def footprint_of(results: dict, name: str) -> Optional[dict]:
    return next((f for f in results.get("footprints") or [] if f["checkpoint"] == name), None)


def prediction_text(f: Optional[dict]) -> str:
    if f is None or f.get("prediction_holds") is None:
        return "—"
    return "holds" if f["prediction_holds"] else "fails"


def prediction_notes(f: dict) -> list:
    """The lines under a footprint's prediction: its misses, then the cells it
    leaves out (confounded) or predicts weak for their cut."""
    out = list(f.get("mismatches") or [])
    if f.get("below_cut"):
        out.append("predicted weak for their cut (the footprint names the tower, not how far the score "
                   "moves): " + ", ".join(f["below_cut"]))
    if f.get("confounded"):
        out.append("not predicted, the control is exposed there (the trigger moves the clean towers too): "
                   + ", ".join(f["confounded"]))
    return out


def has_intervals(results: dict) -> bool:
    return any(interval(c) is not None for c in results.get("cells") or [])


def verdicts_of(results: dict) -> list:
    """The results' verdicts, or computed from the records (older results.json)."""
    vs = results.get("verdicts")
    if isinstance(vs, list):
        return vs
    from ..engine.verdicts import verdicts

    return verdicts(results)


def ci_method_text(cell: dict) -> str:
    m = cell.get("ci_method")
    n = cell.get("n")
    parts = [str(m)] if m else []
    if isinstance(n, int) and not isinstance(n, bool):
        parts.append(f"n = {n}")
    return ", ".join(parts)
