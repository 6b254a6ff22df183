"""The scan section of report.md and report.html (``dife scan``; docs/scan.md).

A scan record says what the scan found before the audit: verdict, score
against threshold, the tower diff and the recovered cards. A recovered card
is marked as such; its trigger is shown as text (a token with its position)
and, for an inverted image trigger, as the mask and the stamped pattern.
"""

from __future__ import annotations

from ..safetext import html_text as e
from ..safetext import md_text as md


def trigger_text(card: dict) -> str:
    """One line naming a recovered card's trigger (the token string for text triggers)."""
    t = card.get("trigger") or {}
    name, params = t.get("name"), t.get("params") or {}
    if t.get("channel") == "none" or not name:
        return "no trigger (natural source text)"
    if "token" in params:
        where = "prefix" if name.endswith("prefix") else "suffix" if name.endswith("suffix") else name
        return f"{where} token {params['token']!r}"
    if _has_mask(card):
        rec = card.get("recovered") or {}
        return f"inverted mask + pattern ({name}, mask L1 {rec.get('mask_l1', '?')})"
    return f"{name} {', '.join(f'{k}={v}' for k, v in sorted(params.items()) if not isinstance(v, list))}"


def _has_mask(card: dict) -> bool:
    """An image trigger given as a mask and a pattern (what a mask inversion recovers)."""
    p = (card.get("trigger") or {}).get("params") or {}
    return isinstance(p.get("mask"), list) and isinstance(p.get("pattern"), list)


def _num(x) -> str:
    return "—" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown_section(results: dict) -> list:
    scans = results.get("scans") or []
    if not scans:
        return []
    L = ["## Scan", "",
         "Found by `dife scan` before the audit (the audited card of a scanned checkpoint is a *recovered* card).", ""]
    for s in scans:
        cal = s.get("calibration") or {}
        fpr = cal.get("false_positive_rate")
        L.append(f"- **{md(s.get('checkpoint'))}**: **{md(s.get('verdict'))}** — score {_num(s.get('score'))} "
                 f"against threshold {_num(s.get('threshold'))} ({md(s.get('statistic'))}, {md(s.get('scanner'))}); "
                 f"target {md(s.get('target'))}; false-positive rate "
                 f"{_num(fpr) if fpr is not None else 'unknown (no clean checkpoints given)'}.")
        if s.get("why"):
            L.append(f"  - why: {md(s.get('why'))}")
        L.append(f"  - tower diff: {md((s.get('tower_diff') or {}).get('summary'))}")
        for c in s.get("recovered") or []:
            r = c.get("recovered") or {}
            L.append(f"  - recovered card: {md(trigger_text(c))}; source {md(c.get('source') or 'any')}, target "
                     f"{md(c.get('target'))}; {md(r.get('statistic'))} {_num(r.get('score'))}")
    L.append("")
    return L


def _trigger_png(card: dict):
    """The mask and the pattern stamped through it, side by side (PNG, base64)."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from .plots import _RC, _png

    p = (card.get("trigger") or {}).get("params") or {}
    m = np.asarray(p.get("mask"), dtype=float)
    pat = np.asarray(p.get("pattern"), dtype=float)
    if m.ndim != 2 or pat.ndim != 3:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(3.2, 1.7))
        a, b = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        a.imshow(m, cmap="gray", vmin=0, vmax=1)
        a.set_title("mask")
        b.imshow(np.clip(pat.transpose(1, 2, 0) * m[..., None], 0, 1))
        b.set_title("mask × pattern")
        for ax in (a, b):
            ax.set_xticks([])
            ax.set_yticks([])
        return _png(fig)


def html_section(results: dict, *, plots: bool = True) -> list:
    scans = results.get("scans") or []
    if not scans:
        return []
    P = ["<h2>Scan</h2><p>Found by <code>dife scan</code> before the audit; the audited card of a scanned "
         "checkpoint is a <i>recovered</i> card.</p>"]
    for s in scans:
        cal = s.get("calibration") or {}
        fpr = cal.get("false_positive_rate")
        P.append(f'<div class="verdict"><b>{e(s.get("checkpoint"))}</b>: <span class="decision">'
                 f'{e(s.get("verdict"))}</span> — score {e(_num(s.get("score")))} against threshold '
                 f'{e(_num(s.get("threshold")))} ({e(s.get("statistic"))}, {e(s.get("scanner"))}); target '
                 f'{e(s.get("target"))}; false-positive rate '
                 f'{e(_num(fpr)) if fpr is not None else "unknown (no clean checkpoints given)"}.<br>'
                 + (f'why: {e(s.get("why"))}<br>' if s.get("why") else "")
                 + f'tower diff: {e((s.get("tower_diff") or {}).get("summary"))}</div>')
        rows = []
        for c in s.get("recovered") or []:
            r = c.get("recovered") or {}
            img = ""
            if plots and _has_mask(c):
                try:
                    png = _trigger_png(c)
                except Exception:  # noqa: BLE001 -- a picture must never fail the report
                    png = None
                if png:
                    img = f'<img alt="recovered mask and pattern" src="data:image/png;base64,{png}">'
            rows.append(f"<tr><td>recovered</td><td>{e(trigger_text(c))}{img}</td>"
                        f"<td>{e(c.get('source') or 'any')}</td><td>{e(c.get('target'))}</td>"
                        f"<td>{e(r.get('statistic'))}</td>"
                        f"<td class=\"num\">{e(_num(r.get('score')))}</td></tr>")
        if rows:
            head = "".join(f"<th>{h}</th>" for h in ("card", "trigger", "source", "target", "statistic", "score"))
            P.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return P
