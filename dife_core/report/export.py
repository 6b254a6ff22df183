"""`dife export`: one row per cell, as CSV or JSON Lines, readable by
pandas as is (``pd.read_csv(path)`` / ``pd.read_json(path, lines=True)``).

Columns: checkpoint, role, interface, metric, status, value, ci_low,
ci_high, n, ci_method, straddles, std, reason, question, footprint, then
``metric.<name>`` for every metric any cell recorded (empty where a cell
has none). Missing values are empty cells in CSV and ``null`` in JSON Lines.
In CSV a text field that a spreadsheet would run as a formula (starting
with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with
``'``: checkpoint names and reasons are untrusted.
"""

from __future__ import annotations

import csv
import io
import re

from ..safetext import json_dumps

BASE_COLUMNS = ("checkpoint", "role", "interface", "metric", "status", "value", "ci_low", "ci_high", "n",
                "ci_method", "straddles", "std", "reason", "question", "footprint")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rows(results: dict) -> tuple:
    """``(columns, rows)``: rows are dicts keyed by the columns."""
    roles = {ck["name"]: ck.get("role", "audited") for ck in results.get("checkpoints") or []}
    fps = {f["checkpoint"]: f.get("footprint") for f in results.get("footprints") or []}
    metric_names = sorted({str(k) for c in results.get("cells") or [] for k in (c.get("metrics") or {})})
    columns = list(BASE_COLUMNS) + [f"metric.{m}" for m in metric_names]
    out = []
    for c in results.get("cells") or []:
        r = {k: c.get(k) for k in BASE_COLUMNS}
        r["role"] = roles.get(c["checkpoint"])
        r["footprint"] = fps.get(c["checkpoint"])
        ms = {str(k): v for k, v in (c.get("metrics") or {}).items()}
        for m in metric_names:
            v = ms.get(m)
            r[f"metric.{m}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json_dumps(v)
        out.append(r)
    return columns, out


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, str):
        # a lone surrogate cannot be written as UTF-8: keep it as its escape
        v = _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", v)
        return "'" + v if v.startswith(FORMULA_START) else v
    if isinstance(v, (dict, list)):
        return json_dumps(v)
    return v


def to_csv(results: dict) -> str:
    columns, rs = rows(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rs:
        w.writerow([_csv_value(r[k]) for k in columns])
    return buf.getvalue()


def to_jsonl(results: dict) -> str:
    columns, rs = rows(results)
    return "".join(json_dumps({k: r[k] for k in columns}) + "\n" for r in rs)


def export(results: dict, fmt: str) -> str:
    if fmt == "csv":
        return to_csv(results)
    if fmt == "jsonl":
        return to_jsonl(results)
    raise ValueError(f"unknown export format {fmt!r}")
