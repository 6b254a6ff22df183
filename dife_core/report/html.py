"""report.html: one self-contained page (inline CSS, plots as data URIs, no
scripts). Verdicts come first. Every string from a checkpoint, caption or
plugin goes through :func:`dife_core.safetext.html_text` (escaped, bidi and
control characters made visible); a Content-Security-Policy forbids scripts
and remote loads as a second line of defence."""

from __future__ import annotations

from ..safetext import html_text, json_dumps
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

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.exposed{background:#f4c7c3;font-weight:bold}td.weak{background:#eef6ee}td.negative{background:#d2e3f5}
td.ne{background:repeating-linear-gradient(45deg,#f2f2f2,#f2f2f2 4px,#e4e4e4 4px,#e4e4e4 8px);color:#666;
font-style:italic;text-align:center}
td.error{background:#333;color:#fff;text-align:center}
tr.control td:first-child{font-style:italic}td.straddles{outline:2px dashed #b60;outline-offset:-3px}
td small.ci{display:block;color:#555;font-weight:normal}
.verdict{margin:.3em 0}.decision{font-weight:bold;padding:0 .3em}.d-do-not-deploy{background:#f4c7c3}
.d-text-tower-only,.d-image-tower-only{background:#fce8b2}.d-no-exposure-found{background:#d9ead3}
.d-inconclusive{background:#e6d8f0}
.meta{color:#555}.warn{color:#b00;font-weight:bold}.ok{color:#070}
.charts{display:flex;flex-wrap:wrap;gap:1em}.charts figure{margin:0}
img{max-width:100%}
"""


def e(s) -> str:
    return html_text(s)


def _table(head: list, rows: list, *, cls: str = "") -> str:
    h = "".join(f"<th>{x}</th>" for x in head)
    body = "".join(rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _cell_td(c, results) -> str:
    if c is None:
        return '<td class="num">—</td>'
    st = c["status"]
    cls = {"n.e.": "ne", "error": "error"}.get(st, st) + (" straddles" if straddles(c) else "")
    title = c.get("reason") or (f"{c['status']}; {metric_label(c['metric'], results)}"
                                + ("; the interval straddles a threshold" if straddles(c) else ""))
    ci = ci_text(c)
    extra = f' <small class="ci">{e(ci)}</small>' if ci else ""
    return f'<td class="{e(cls)} num" title="{e(title)}">{e(cell_text(c))}{extra}</td>'


def _metrics_text(c, results) -> str:
    return ", ".join(f"{metric_label(k, results)} = {num(v, 4)}" for k, v in sorted((c.get("metrics") or {}).items()))


def _cap(s) -> str:
    s = "" if s is None else str(s)
    return s[:1].upper() + s[1:]


def _verdicts(results) -> list:
    vs = verdicts_of(results)
    if not vs:
        return []
    P = ["<h2>Verdicts</h2>"]
    for v in vs:
        notes = "".join(f"<li>{e(n)}</li>" for n in v.get("notes") or [])
        P.append(f'<div class="verdict"><b>{e(v["checkpoint"])}</b>: '
                 f'<span class="decision d-{e(v["decision"])}">{e(v["decision"])}</span> — {e(v.get("summary"))}. '
                 f'{e(_cap(v.get("reuse")))}.' + (f"<ul>{notes}</ul>" if notes else "") + "</div>")
    return P


def render_html(results: dict, *, plots: bool = True) -> str:
    from .plots import branch_swap_png, heatmap_png

    ifaces, rows = matrix(results)
    P = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
         f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f"<title>DIFE audit report</title><style>{CSS}</style></head><body>",
         "<h1>DIFE audit report</h1>",
         f'<p class="meta">DIFE {e(results.get("dife_version"))} · '
         f'world <code>{e((results.get("world") or {}).get("world"))}</code>'
         f' · seed {e(results.get("seed"))} · templates: '
         + ", ".join(f"<code>{e(t)}</code>" for t in results.get("templates") or []) + "</p>"]
    if not results.get("complete", True):
        P.append(f'<p class="warn">Incomplete audit: {len(results.get("missing") or [])} record(s) missing; '
                 f"run <code>dife audit SPEC --out DIR --resume</code>.</p>")
    P += _verdicts(results)
    from .scans import html_section

    P += html_section(results, plots=plots)
    P.append("<h2>Exposure matrix</h2>")
    P.append("<p>Each entry is the interface's primary metric"
             + (" with its 95% confidence interval below it; a dashed outline marks an interval that straddles "
                "a threshold (the status is uncertain)" if has_intervals(results) else "")
             + ". <b>N.E.</b> (hatched) = not applicable, with "
             "its reason on hover and below; it is never a number and never averaged.</p>")
    head = ["checkpoint"] + [e(column_title(i, results)) for i in ifaces] + ["footprint"]
    trs = []
    for ck, cells in rows:
        ctl = ck.get("role") == "control"
        f = footprint_of(results, ck["name"])
        tds = "".join(_cell_td(cells.get(i["id"]), results) for i in ifaces)
        name = e(ck["name"]) + (" <small>(control)</small>" if ctl else "")
        trs.append(f'<tr class="{"control" if ctl else "audited"}"><td>{name}</td>{tds}'
                   f'<td>{e(f["footprint"]) if f and f.get("footprint") else "—"}</td></tr>')
    P.append(_table(head, trs, cls="matrix"))
    if plots and rows and ifaces:
        P.append(f'<figure><img alt="exposure matrix heatmap" src="data:image/png;base64,{heatmap_png(results)}">'
                 "</figure>")

    ne = [c for c in results.get("cells") or [] if c["status"] in ("n.e.", "error")]
    if ne:
        P.append("<h2>N.E. reasons and errors</h2>")
        P.append(_table(["checkpoint", "interface", "status", "question", "reason"],
                        [f"<tr><td>{e(c['checkpoint'])}</td><td>{e(c['interface'])}</td><td>{e(c['status'])}</td>"
                         f"<td>{e(c.get('question') or '—')}</td><td>{e(c.get('reason'))}</td></tr>" for c in ne]))

    if results.get("footprints"):
        P.append("<h2>Effective footprint</h2>")
        P.append("<p>a00 = (C_V, C_T), a10 = (P_V, C_T), a01 = (C_V, P_T), a11 = (P_V, P_T) on the diagnostic "
                 "readout; component repair fills the slots with both clean / trigger only / prompt only / full.</p>")
        keys = FOOTPRINT_SLOTS + FOOTPRINT_RATIOS
        P.append(_table(
            ["checkpoint", "probe", "readout"] + list(FOOTPRINT_SLOTS) + [FOOTPRINT_HEADS[k] for k in FOOTPRINT_RATIOS]
            + ["footprint", "predicted exposed", "prediction"],
            [f"<tr><td>{e(f['checkpoint'])}</td><td>{e(f.get('probe'))}</td>"
             f"<td>{e(f.get('readout') or f.get('reason'))}</td>"
             + "".join(f'<td class="num">{num(f.get(k), 4)}</td>' for k in keys)
             + f"<td><b>{e(f.get('footprint') or '—')}</b></td>"
             f"<td>{e(', '.join(f.get('predicted_exposed') or []))}</td>"
             f"<td>{e(prediction_text(f))}"
             f"{''.join('<br><small>' + e(m) + '</small>' for m in prediction_notes(f))}"
             f"</td></tr>" for f in results["footprints"]]))
        if plots:
            P.append('<div class="charts">')
            for f in results["footprints"]:
                if f.get("a00") is None:
                    continue
                P.append(f'<figure><img alt="branch swap of {e(f["checkpoint"])}" '
                         f'src="data:image/png;base64,{branch_swap_png(f)}"></figure>')
            P.append("</div>")

    if results.get("controls"):
        P.append("<h2>Controls</h2><p>The clean reference audited under each attack's trigger spec: an auditor "
                 "should see that a clean model is not flagged.</p>")
        flagged = [c for c in results["controls"] if c["flagged"]]
        P.append(f'<p class="{"warn" if flagged else "ok"}">'
                 + (f"{len(flagged)} control row(s) flagged." if flagged else "No control row is flagged.") + "</p>")
        P.append(_table(["control", "of", "flagged", "exposed cells"],
                        [f"<tr><td>{e(c['checkpoint'])}</td><td>{e(c['control_of'])}</td>"
                         f"<td>{'yes' if c['flagged'] else 'no'}</td><td>{e(', '.join(c['exposed']) or '—')}</td></tr>"
                         for c in results["controls"]]))

    util_keys = sorted({k for ck in results.get("checkpoints") or [] for k in (ck.get("clean_utility") or {})})
    if util_keys:
        P.append("<h2>Clean utility</h2>")
        P.append(_table(["checkpoint", "role"] + [e(k) for k in util_keys],
                        [f"<tr><td>{e(ck['name'])}</td><td>{e(ck.get('role'))}</td>"
                         + "".join(f'<td class="num">{e(num((ck.get("clean_utility") or {}).get(k), 4))}</td>'
                                   for k in util_keys) + "</tr>"
                         for ck in results.get("checkpoints") or [] if ck.get("role") != "control"]))

    measured = [c for c in results.get("cells") or [] if c["status"] not in ("n.e.", "error")]
    if measured:
        P.append("<h2>Cell details</h2><p>Every measured cell: primary value, interval (method, number of items), "
                 "whether the interval straddles a threshold, per-seed values, every metric and the "
                 "interface's notes.</p>")
        P.append(_table(["checkpoint", "interface", "metric", "value", "interval", "method", "straddles",
                         "per seed", "metrics", "notes"],
                        [f"<tr><td>{e(c['checkpoint'])}</td><td>{e(c['interface'])}</td>"
                         f"<td>{e(metric_label(c.get('metric') or '', results))}</td>"
                         f'<td class="num">{e(cell_text_full(c))}</td><td class="num">{e(ci_text(c) or "—")}</td>'
                         f"<td>{e(ci_method_text(c) or '—')}</td>"
                         f"<td>{'yes' if straddles(c) else ('no' if 'straddles' in c else '—')}</td>"
                         f"<td>{e(per_seed_text(c) or '—')}</td>"
                         f"<td><small>{e(_metrics_text(c, results))}</small></td>"
                         f"<td><small>{e(c.get('notes') or '—')}</small></td></tr>"
                         for c in measured]))

    P.append("<h2>Checkpoints</h2>")
    P.append(_table(["name", "role", "loader", "visual fingerprint", "text fingerprint", "attack card"],
                    [f"<tr><td>{e(ck['name'])}</td><td>{e(ck.get('role'))}</td><td>{e(ck.get('loader'))}</td>"
                     f"<td><code>{e((ck.get('fingerprint') or {}).get('visual'))}</code></td>"
                     f"<td><code>{e((ck.get('fingerprint') or {}).get('text'))}</code></td>"
                     f"<td><code>{e(json_dumps(ck.get('attack'), sort_keys=True))}</code></td></tr>"
                     for ck in results.get("checkpoints") or [] if ck.get("role") != "control"]))
    P.append("<h2>Interface cards</h2>")
    P.append(_table(["interface", "readout", "trigger channels", "target event", "population", "reference",
                     "metric", "plugin"],
                    [f"<tr><td>{e(i['id'])}</td><td>{e(i.get('readout'))}</td>"
                     f"<td>{e(', '.join(i.get('trigger_channels') or []))}</td>"
                     f"<td>{e(i.get('target_event'))}</td><td>{e(i.get('population') or '—')}</td>"
                     f"<td>{e(i.get('reference') or '—')}</td><td>{e(metric_label(i['metric'], results))}</td>"
                     f"<td>{e(i.get('plugin'))}</td></tr>" for i in ifaces]))
    P.append("<h2>Thresholds</h2><pre>" + e(json_dumps({"entry types": results.get("thresholds"),
                                                       "footprint": results.get("footprint_params")}, indent=2))
             + "</pre>")
    if results.get("plugins"):
        P.append("<h2>Plugins</h2>" + _table(["plugin", "version"],
                                              [f"<tr><td>{e(p['name'])}</td><td>{e(p['version'])}</td></tr>"
                                               for p in results["plugins"]]))
    P.append("</body></html>")
    return "\n".join(P)
