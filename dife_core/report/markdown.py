"""report.md: the matrix, reasons, footprints, controls and clean utility.

Strings from checkpoints, captions or plugins are escaped so they cannot
break a table or smuggle HTML into a Markdown renderer.
"""

from __future__ import annotations

import json

from .format import cell_text, column_title, footprint_of, matrix, metric_label, num, prediction_text


def md(s) -> str:
    s = "" if s is None else str(s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    s = s.replace("`", "\\`").replace("*", "\\*").replace("_", "\\_").replace("[", "\\[").replace("]", "\\]")
    return " ".join(s.split())


def _table(head: list, rows: list) -> list:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def render_markdown(results: dict) -> str:
    ifaces, rows = matrix(results)
    L = ["# DIFE audit report", ""]
    L.append(f"DIFE {md(results['dife_version'])} · world `{md(results.get('world', {}).get('world'))}` · "
             f"seed {results['seed']} · templates: " + ", ".join(f"`{md(t)}`" for t in results.get("templates", [])))
    L.append("")
    if not results.get("complete", True):
        L += [f"**Incomplete audit**: {len(results['missing'])} record(s) missing; run `dife audit SPEC --out DIR "
              f"--resume`.", ""]
    L += ["## Exposure matrix", "",
          "Values are each interface's primary metric; N.E. = not applicable (never a number, never averaged); "
          "status in brackets.", ""]
    body = []
    for ck, cells in rows:
        name = md(ck["name"]) + (" *(control)*" if ck.get("role") == "control" else "")
        ents = []
        for i in ifaces:
            c = cells.get(i["id"])
            t = cell_text(c)
            ents.append(t if c is None or c["status"] in ("n.e.", "error") else f"{t} ({c['status']})")
        f = footprint_of(results, ck["name"])
        body.append([name] + ents + [md(f["footprint"]) if f and f.get("footprint") else "—"])
    L += _table(["checkpoint"] + [md(column_title(i)) for i in ifaces] + ["footprint"], body)

    ne = [c for c in results["cells"] if c["status"] in ("n.e.", "error")]
    if ne:
        L += ["## N.E. reasons and errors", ""]
        L += _table(["checkpoint", "interface", "status", "question", "reason"],
                    [[md(c["checkpoint"]), md(c["interface"]), md(c["status"]), md(c.get("question") or "—"),
                      md(c.get("reason"))] for c in ne])

    if results["footprints"]:
        L += ["## Effective footprint", "",
              "a00 = (C_V, C_T), a10 = (P_V, C_T), a01 = (C_V, P_T), a11 = (P_V, P_T) on the diagnostic readout "
              "(component repair: both clean, trigger only, prompt only, full).", ""]
        L += _table(["checkpoint", "probe", "readout", "a00", "a10", "a01", "a11", "signal", "VRS", "TRS", "CSS",
                     "footprint", "predicted exposed", "prediction"],
                    [[md(f["checkpoint"]), md(f.get("probe")), md(f.get("readout") or f.get("reason")),
                      *[num(f.get(k)) for k in ("a00", "a10", "a01", "a11", "signal", "vrs", "trs", "css")],
                      md(f.get("footprint") or "—"), md(", ".join(f.get("predicted_exposed") or [])) or "—",
                      prediction_text(f)] for f in results["footprints"]])
        for f in results["footprints"]:
            for m in f.get("mismatches") or []:
                L.append(f"- {md(f['checkpoint'])}: {md(m)}")
        L.append("")

    if results.get("controls"):
        L += ["## Controls (clean reference under each attack's trigger)", ""]
        L += _table(["control", "of", "flagged", "exposed cells"],
                    [[md(c["checkpoint"]), md(c["control_of"]), "**yes**" if c["flagged"] else "no",
                      md(", ".join(c["exposed"])) or "—"] for c in results["controls"]])

    util_keys = sorted({k for ck in results["checkpoints"] for k in (ck.get("clean_utility") or {})})
    if util_keys:
        L += ["## Clean utility", ""]
        L += _table(["checkpoint", "role"] + [md(k) for k in util_keys],
                    [[md(ck["name"]), md(ck.get("role"))] + [num((ck.get("clean_utility") or {}).get(k))
                                                             for k in util_keys]
                     for ck in results["checkpoints"] if ck.get("role") != "control"])

    L += ["## Interface cards", ""]
    L += _table(["interface", "readout", "trigger channels", "target event", "population", "reference", "metric"],
                [[md(i["id"]), md(i["readout"]), md(", ".join(i["trigger_channels"])), md(i["target_event"]),
                  md(i["population"] or "—"), md(i["reference"] or "—"), md(metric_label(i["metric"]))]
                 for i in results.get("interfaces", [])])
    L += ["## Thresholds", "", "```", json.dumps({"entry types": results.get("thresholds"),
                                                  "footprint": results.get("footprint_params")}, indent=2), "```", ""]
    if results["plugins"]:
        L += ["## Plugins", ""]
        L += _table(["plugin", "version"], [[md(p["name"]), md(p["version"])] for p in results["plugins"]])
    return "\n".join(L) + "\n"
