"""The audit in the terminal (rich): verdicts first, then the exposure
matrix, the footprint table and the controls.

Fits any width from 80 columns up without cutting a number or a name: the
matrix is printed checkpoints × interfaces when that fits, else with keyed
columns and a legend, else transposed (interfaces × checkpoints, in as many
blocks of checkpoints as needed), else one block per checkpoint; the
footprint table likewise (:mod:`.layout`). N.E. is spelled out, never a
number; a ``~`` after a value marks a cell whose interval straddles a
threshold. Every untrusted string is a :class:`rich.text.Text` made by
:func:`dife_core.safetext.rich_text`: no markup is parsed, control and bidi
characters are shown escaped.
"""

from __future__ import annotations

from ..safetext import terminal
from .format import (
    FOOTPRINT_HEADS,
    FOOTPRINT_RATIOS,
    FOOTPRINT_SLOTS,
    cell_text,
    footprint_of,
    iface_title,
    matrix,
    metric_label,
    num,
    prediction_text,
    straddles,
    verdicts_of,
)
from .layout import first_fitting, table, wrap_words

STYLES = {"exposed": "bold red", "weak": "green", "negative": "blue", "n.e.": "dim italic", "error": "bold magenta"}
DECISION_STYLES = {"do-not-deploy": "bold red", "text-tower-only": "bold yellow", "image-tower-only": "bold yellow",
                   "no-exposure-found": "bold green", "inconclusive": "bold magenta"}
NAME_MAX = 14  # longer checkpoint names become keys (C1, C2, ...) in transposed layouts


def _entry(c):
    from rich.text import Text

    if c is None:
        return Text("—", style="dim")
    return Text(cell_text(c) + ("~" if straddles(c) else ""), style=STYLES.get(c.get("status"), ""))


def _ck_label(ck) -> str:
    return terminal(ck["name"])


def _fp_text(results, ck):
    f = footprint_of(results, ck["name"])
    if ck.get("role") == "control":
        return ""
    return terminal(f.get("footprint") or "—") if f else "—"


def _matrix_wide(results, ifaces, rows, *, keyed: bool):
    """Checkpoints × interfaces; headers wrapped at words, or keys + legend."""
    from rich.text import Text

    heads, legend = [], []
    for n, i in enumerate(ifaces):
        label = terminal(metric_label(i["metric"], results))
        if keyed:
            key = f"I{n + 1}"
            heads.append(f"{key}\n{label}")
            legend.append(Text(f"{key} = {terminal(iface_title(i))} ({label})", style="dim"))
        else:
            title = terminal(iface_title(i))
            width = max([7] + [len(w) for w in title.split()] + [len(label)])
            heads.append(wrap_words(title, width) + "\n" + label)
    body, section = [], None
    for ck, cells in rows:
        role = ck.get("role", "audited")
        if section is not None and role != section:
            body.append(None)
        section = role
        name = _ck_label(ck) + ("  (control)" if role == "control" else "")
        body.append([Text(name)] + [_entry(cells.get(i["id"])) for i in ifaces]
                    + [_fp_text(results, ck)])
    t = table("DIFE exposure matrix", ["checkpoint"] + heads + ["footprint"], body,
              justify=["left"] + ["right"] * len(ifaces) + ["left"])
    return [t] + legend


_BREAK_AFTER = "-@_/.:"


def split_name(name: str, width: int = NAME_MAX):
    """``name`` as header lines of at most ``width`` characters, broken only
    after ``-@_/.:`` (so every piece reads as part of the name), or None when
    a piece is longer than ``width``."""
    pieces, cur = [], ""
    for ch in name:
        cur += ch
        if ch in _BREAK_AFTER:
            pieces.append(cur)
            cur = ""
    if cur:
        pieces.append(cur)
    lines, line = [], ""
    for p in pieces:
        if len(p) > width:
            return None
        if line and len(line) + len(p) > width:
            lines.append(line)
            line = p
        else:
            line += p
    if line:
        lines.append(line)
    return lines


def _matrix_transposed(results, ifaces, rows, width):
    """Interfaces × checkpoints, audited rows then controls, each split into
    blocks of as many checkpoint columns as fit. A long name is broken after
    a ``-``/``@``; one that cannot be is shown as a key (C1, C2, ...) with a
    legend line."""
    from rich.text import Text

    from .layout import fits

    labels = [f"{terminal(iface_title(i))} ({terminal(metric_label(i['metric'], results))})" for i in ifaces]
    heads, legend = [], []
    for k, (ck, _) in enumerate(rows):
        name = _ck_label(ck)
        lines = split_name(name)
        if lines is None:
            heads.append(f"C{k + 1}")
            legend.append(Text(f"C{k + 1} = {name}", style="dim"))
        else:
            heads.append("\n".join(lines))

    def block(idx, title, with_fp):
        body = [[Text(labels[j])] + [_entry(rows[k][1].get(i["id"])) for k in idx] for j, i in enumerate(ifaces)]
        if with_fp:
            body.append(None)
            body.append([Text("footprint")] + [Text(_fp_text(results, rows[k][0])) for k in idx])
        return table(title, ["interface"] + [heads[k] for k in idx], body, justify=["left"] + ["right"] * len(idx))

    out = []
    for role, title in (("audited", "DIFE exposure matrix"),
                        ("control", "Controls: the clean reference under each attack's trigger")):
        todo = [k for k, (ck, _) in enumerate(rows) if ck.get("role", "audited") == role]
        first = True
        while todo:
            n = len(todo)
            t = title if first else title + " (continued)"
            while n > 1 and not fits([block(todo[:n], t, role == "audited")], width):
                n -= 1
            out.append(block(todo[:n], t, role == "audited"))
            todo, first = todo[n:], False
    return out + legend


def _matrix_blocks(results, ifaces, rows):
    """One block per checkpoint: interface, value, status."""
    from rich.text import Text

    out = [Text("DIFE exposure matrix", style="bold")]
    for ck, cells in rows:
        out.append(Text(""))
        out.append(Text(_ck_label(ck) + ("  (control)" if ck.get("role") == "control" else "")
                        + f"  footprint: {_fp_text(results, ck) or '—'}", style="bold"))
        for i in ifaces:
            c = cells.get(i["id"])
            line = Text("  " + terminal(iface_title(i)) + f" ({terminal(metric_label(i['metric'], results))}): ")
            line.append_text(_entry(c))
            out.append(line)
    return out


def _status_legend(results):
    from rich.text import Text

    legend = Text("exposed ", style=STYLES["exposed"]) + Text("weak ", style=STYLES["weak"]) + \
        Text("negative ", style=STYLES["negative"]) + Text("N.E. = not applicable ", style=STYLES["n.e."]) + \
        Text("error", style=STYLES["error"])
    out = [legend]
    if any(straddles(c) for c in results.get("cells") or []):
        out.append(Text("~ = the cell's confidence interval straddles a threshold: its status is uncertain "
                        "(intervals in report.md)", style="dim"))
    return out


def _footprint_layouts(results, width):
    from rich.text import Text

    fps = results.get("footprints") or []
    names = [terminal(f["checkpoint"]) for f in fps]
    nums = {k: [num(f.get(k)) for f in fps] for k in FOOTPRINT_SLOTS + FOOTPRINT_RATIOS}
    title = "Effective footprint (branch swap / component repair)"

    def full():
        body = [[names[n], terminal(f.get("probe") or "—")] + [nums[k][n] for k in FOOTPRINT_SLOTS + FOOTPRINT_RATIOS]
                + [terminal(f.get("footprint") or "—"), prediction_text(f)] for n, f in enumerate(fps)]
        heads = ["checkpoint", "probe", *FOOTPRINT_SLOTS, *[FOOTPRINT_HEADS[k] for k in FOOTPRINT_RATIOS],
                 "footprint", "prediction"]
        return [table(title, heads, body, justify=["left", "left"] + ["right"] * 8)]

    def split():
        a = [[names[n], terminal(f.get("footprint") or "—")] + [nums[k][n] for k in FOOTPRINT_SLOTS]
             for n, f in enumerate(fps)]
        b = [[names[n]] + [nums[k][n] for k in FOOTPRINT_RATIOS] + [prediction_text(f)] for n, f in enumerate(fps)]
        probes = sorted({str(f.get("probe") or "—") for f in fps})
        probe_line = (f"probe: {terminal(probes[0])} (every row)" if len(probes) == 1 else
                      "probe: " + "; ".join(f"{names[n]}: {terminal(f.get('probe') or '—')}"
                                            for n, f in enumerate(fps)))
        return [table(title, ["checkpoint", "footprint", *FOOTPRINT_SLOTS], a, justify=["left"] * 2 + ["right"] * 4),
                table(None, ["checkpoint", *[FOOTPRINT_HEADS[k] for k in FOOTPRINT_RATIOS], "prediction"],
                      b, justify=["left"] + ["right"] * 4),
                Text(probe_line, style="dim")]

    def blocks():
        out = [Text(title, style="bold")]
        for n, f in enumerate(fps):
            out.append(Text(f"{names[n]}: {terminal(f.get('footprint') or '—')} "
                            f"({terminal(f.get('probe') or '—')}; prediction {prediction_text(f)})", style="bold"))
            out.append(Text("  " + "  ".join(f"{k}={nums[k][n]}" for k in FOOTPRINT_SLOTS)))
            out.append(Text("  " + "  ".join(f"{FOOTPRINT_HEADS[k]}={nums[k][n]}" for k in FOOTPRINT_RATIOS)))
        return out

    return [full, split, blocks]


def verdict_lines(results) -> list:
    from rich.text import Text

    vs = verdicts_of(results)
    if not vs:
        return []
    from rich.padding import Padding

    out = [Text("Verdicts", style="bold underline")]
    for v in vs:
        line = Text(terminal(v["checkpoint"]) + ": ", style="bold")
        line.append(terminal(v["decision"]), style=DECISION_STYLES.get(v["decision"], "bold"))
        line.append(" — " + terminal(v.get("summary", "")))
        out.append(line)
        out.append(Padding(Text(terminal(v.get("reuse", ""))), (0, 0, 0, 2), expand=False))
        for note in v.get("notes") or []:
            out.append(Padding(Text("note: " + terminal(note), style="dim"), (0, 0, 0, 2), expand=False))
    return out


def print_matrix(results: dict, console=None) -> None:
    """Print verdicts, the exposure matrix, the footprint table and the
    controls, each in the widest layout that fits ``console.width``."""
    from rich.console import Console
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze the matrix into 80 columns
            console = Console(width=max(console.width, 200))
    width = console.width
    for r in verdict_lines(results):
        console.print(r)
    ifaces, rows = matrix(results)
    if rows:
        for r in first_fitting(width, [lambda: _matrix_wide(results, ifaces, rows, keyed=False),
                                       lambda: _matrix_wide(results, ifaces, rows, keyed=True),
                                       lambda: _matrix_transposed(results, ifaces, rows, width),
                                       lambda: _matrix_blocks(results, ifaces, rows)]):
            console.print(r)
        for r in _status_legend(results):
            console.print(r)
    if results.get("footprints"):
        for r in first_fitting(width, _footprint_layouts(results, width)):
            console.print(r)
    controls = results.get("controls") or []
    flagged = [c for c in controls if c.get("flagged")]
    if controls:
        if flagged:
            console.print(Text("Controls: the clean reference is flagged under " +
                               ", ".join(terminal(c["control_of"]) for c in flagged) + " — check the thresholds.",
                               style="bold red"))
        else:
            console.print(Text(f"Controls: the clean reference is not flagged under any of "
                               f"{len(controls)} trigger spec(s).", style="green"))
    if not results.get("complete", True):
        console.print(Text(f"Incomplete audit: {len(results.get('missing') or [])} record(s) missing; "
                           f"run again with --resume.", style="bold yellow"))
