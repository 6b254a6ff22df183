"""report.md: verdicts, the matrix, reasons, footprints, controls, clean
utility and a per-cell detail section with every interval.

Strings from checkpoints, captions or plugins go through
:func:`dife_core.safetext.md_text`, so they cannot break a table, start
emphasis or a link, smuggle HTML, or hide bidi controls.
"""

from __future__ import annotations

from ..safetext import json_dumps, md_text
from .format import (
    FOOTPRINT_HEADS,
    FOOTPRINT_RATIOS,
    FOOTPRINT_SLOTS,
    cell_text,
    cell_text_full,
    ci_method_text,
    ci_text,
    column_title,
    footprint_of,
    has_intervals,
    matrix,
    metric_label,
    num,
    per_seed_text,
    prediction_notes,
    prediction_text,
    straddles,
    verdicts_of,
)

md = md_text  # kept for callers of the old name


def _table(head: list, rows: list) -> list:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _cap(s) -> str:
    s = "" if s is None else str(s)
    return s[:1].upper() + s[1:]


def verdict_section(results: dict) -> list:
    vs = verdicts_of(results)
    if not vs:
        return []
    L = ["## Verdicts", ""]
    for v in vs:
        L.append(f"- **{md(v['checkpoint'])}**: **{md(v['decision'])}** — {md(v.get('summary'))}. "
                 f"{md(_cap(v.get('reuse')))}.")
        for note in v.get("notes") or []:
            L.append(f"  - {md(note)}")
    return L + [""]


def _entry(c) -> str:
    if c is None or c["status"] in ("n.e.", "error"):
        return cell_text(c)
    t = cell_text_full(c)
    return f"{t} ({md(c['status'])}{', straddles' if straddles(c) else ''})"


def render_markdown(results: dict) -> str:
    ifaces, rows = matrix(results)
    L = ["# DIFE audit report", ""]
    L.append(f"DIFE {md(results.get('dife_version'))} · world `{md((results.get('world') or {}).get('world'))}` · "
             f"seed {md(results.get('seed'))} · templates: "
             + ", ".join(f"`{md(t)}`" for t in results.get("templates") or []))
    L.append("")
    if not results.get("complete", True):
        L += [f"**Incomplete audit**: {len(results.get('missing') or [])} record(s) missing; run `dife audit SPEC "
              f"--out DIR --resume`.", ""]
    L += verdict_section(results)
    from .scans import markdown_section

    L += markdown_section(results)
    L += ["## Exposure matrix", "",
          "Values are each interface's primary metric"
          + (" with its 95% confidence interval" if has_intervals(results) else "")
          + "; N.E. = not applicable (never a number, never averaged); status in brackets"
          + ("; *straddles* = the interval contains a threshold, so the status is uncertain" if has_intervals(results)
             else "") + ".", ""]
    body = []
    for ck, cells in rows:
        name = md(ck["name"]) + (" *(control)*" if ck.get("role") == "control" else "")
        f = footprint_of(results, ck["name"])
        body.append([name] + [_entry(cells.get(i["id"])) for i in ifaces]
                    + [md(f["footprint"]) if f and f.get("footprint") else "—"])
    L += _table(["checkpoint"] + [md(column_title(i, results)) for i in ifaces] + ["footprint"], body)

    ne = [c for c in results.get("cells") or [] if c["status"] in ("n.e.", "error")]
    if ne:
        L += ["## N.E. reasons and errors", ""]
        L += _table(["checkpoint", "interface", "status", "question", "reason"],
                    [[md(c["checkpoint"]), md(c["interface"]), md(c["status"]), md(c.get("question") or "—"),
                      md(c.get("reason"))] for c in ne])

    fps = results.get("footprints") or []
    if fps:
        L += ["## Effective footprint", "",
              "a00 = (C_V, C_T), a10 = (P_V, C_T), a01 = (C_V, P_T), a11 = (P_V, P_T) on the diagnostic readout "
              "(component repair: both clean, trigger only, prompt only, full).", ""]
        L += _table(["checkpoint", "probe", "readout", *FOOTPRINT_SLOTS,
                     *[FOOTPRINT_HEADS[k] for k in FOOTPRINT_RATIOS], "footprint", "predicted exposed", "prediction"],
                    [[md(f["checkpoint"]), md(f.get("probe")), md(f.get("readout") or f.get("reason")),
                      *[num(f.get(k), 4) for k in FOOTPRINT_SLOTS + FOOTPRINT_RATIOS],
                      md(f.get("footprint") or "—"), md(", ".join(f.get("predicted_exposed") or [])) or "—",
                      prediction_text(f)] for f in fps])
        for f in fps:
            for m in prediction_notes(f):
                L.append(f"- {md(f['checkpoint'])}: {md(m)}")
        L.append("")

    if results.get("controls"):
        L += ["## Controls (clean reference under each attack's trigger)", ""]
        L += _table(["control", "of", "flagged", "exposed cells"],
                    [[md(c["checkpoint"]), md(c["control_of"]), "**yes**" if c["flagged"] else "no",
                      md(", ".join(c["exposed"])) or "—"] for c in results["controls"]])

    util_keys = sorted({k for ck in results.get("checkpoints") or [] for k in (ck.get("clean_utility") or {})})
    if util_keys:
        L += ["## Clean utility", ""]
        L += _table(["checkpoint", "role"] + [md(k) for k in util_keys],
                    [[md(ck["name"]), md(ck.get("role"))] + [num((ck.get("clean_utility") or {}).get(k), 4)
                                                             for k in util_keys]
                     for ck in results.get("checkpoints") or [] if ck.get("role") != "control"])

    measured = [c for c in results.get("cells") or [] if c["status"] not in ("n.e.", "error")]
    if measured:
        L += ["## Cell details", "",
              "Every measured cell: primary value, interval (method, number of items), whether the interval "
              "straddles a threshold, per-seed values, every metric and the interface's notes.", ""]
        L += _table(["checkpoint", "interface", "metric", "value", "interval", "method", "straddles", "per seed",
                     "metrics", "notes"],
                    [[md(c["checkpoint"]), md(c["interface"]), md(metric_label(c.get("metric") or "", results)),
                      cell_text(c), ci_text(c) or "—", md(ci_method_text(c)) or "—",
                      "yes" if straddles(c) else ("no" if "straddles" in c else "—"),
                      md(per_seed_text(c)) or "—",
                      md(", ".join(f"{metric_label(k, results)} = {num(v, 4)}"
                                   for k, v in sorted((c.get("metrics") or {}).items()))),
                      md(c.get("notes")) or "—"]
                     for c in measured])

    L += ["## Interface cards", ""]
    L += _table(["interface", "readout", "trigger channels", "target event", "population", "reference", "metric"],
                [[md(i["id"]), md(i.get("readout")), md(", ".join(i.get("trigger_channels") or [])),
                  md(i.get("target_event")), md(i.get("population") or "—"), md(i.get("reference") or "—"),
                  md(metric_label(i["metric"], results))]
                 for i in matrix(results)[0]])
    L += ["## Thresholds", "", "```", json_dumps({"entry types": results.get("thresholds"),
                                                  "footprint": results.get("footprint_params")}, indent=2,
                                                 ensure_ascii=True), "```", ""]
    if results.get("plugins"):
        L += ["## Plugins", ""]
        L += _table(["plugin", "version"], [[md(p.get("name")), md(p.get("version"))] for p in results["plugins"]])
    return "\n".join(L) + "\n"
