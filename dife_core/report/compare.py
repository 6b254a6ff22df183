"""Rendering of :func:`dife_core.engine.compare.compare` for the terminal
(rich Text, no markup parsed), Markdown and JSON."""

from __future__ import annotations

from ..safetext import json_dumps, md_text, terminal
from .format import fmt_value

CHANGE_WORDS = {"status": "status changed", "interval": "moved beyond its interval",
                "value": "value changed (no interval)", "missing": "recorded in one run only"}


def _v(x) -> str:
    return fmt_value(x) if x is not None else "—"


def _ci(x) -> str:
    return f" [{fmt_value(x[0])}, {fmt_value(x[1])}]" if x else ""


def _cell_line(c: dict, esc) -> str:
    what = CHANGE_WORDS.get(c["change"], c["change"])
    d = f", Δ = {c['delta']:+.3f}" if c.get("delta") is not None else ""
    return (f"{esc(c['checkpoint'])} × {esc(c['interface'])}: {what}: "
            f"{esc(c.get('status_a') or '—')} {_v(c.get('value_a'))}{_ci(c.get('ci_a'))} → "
            f"{esc(c.get('status_b') or '—')} {_v(c.get('value_b'))}{_ci(c.get('ci_b'))}{d}")


def _lines(diff: dict, a: str, b: str, esc) -> list:
    """(heading, [lines]) sections; empty sections left out."""
    secs = []
    for key, label in (("checkpoints_only_in_a", f"checkpoints only in {a}"),
                       ("checkpoints_only_in_b", f"checkpoints only in {b}"),
                       ("interfaces_only_in_a", f"interfaces only in {a}"),
                       ("interfaces_only_in_b", f"interfaces only in {b}")):
        if diff.get(key):
            secs.append((label, [", ".join(esc(x) for x in diff[key])]))
    if diff.get("verdicts"):
        secs.append(("verdicts changed", [f"{esc(v['checkpoint'])}: {esc(v['decision_a'] or '—')} → "
                                          f"{esc(v['decision_b'] or '—')}" for v in diff["verdicts"]]))
    if diff.get("footprints"):
        secs.append(("footprints changed", [f"{esc(f['checkpoint'])}: {esc(f['footprint_a'] or '—')} → "
                                            f"{esc(f['footprint_b'] or '—')}" for f in diff["footprints"]]))
    if diff.get("cells"):
        secs.append(("cells changed", [_cell_line(c, esc) for c in diff["cells"]]))
    if diff.get("fingerprints"):
        secs.append(("weights differ", [f"{esc(f['checkpoint'])}: {', '.join(f['towers'])} tower"
                                        for f in diff["fingerprints"]]))
    return secs


def _summary(diff: dict) -> str:
    if diff.get("identical"):
        return f"no differences ({diff.get('unchanged_cells', 0)} cells compared)"
    return (f"{len(diff.get('cells') or [])} cell(s) changed, {diff.get('unchanged_cells', 0)} unchanged; "
            f"{len(diff.get('footprints') or [])} footprint(s) and {len(diff.get('verdicts') or [])} verdict(s) "
            f"changed")


def print_compare(diff: dict, a: str, b: str, console=None) -> None:
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    console = console or Console()
    console.print(Text(f"DIFE compare: A = {terminal(a)}, B = {terminal(b)}", style="bold"))
    console.print(Text(_summary(diff), style="green" if diff.get("identical") else "yellow"))
    for head, lines in _lines(diff, "A", "B", terminal):
        console.print(Text(head, style="bold underline"))
        for line in lines:
            console.print(Padding(Text(line), (0, 0, 0, 2), expand=False))


def compare_markdown(diff: dict, a: str, b: str) -> str:
    L = ["# DIFE compare", "", f"A = {md_text(a)}, B = {md_text(b)}: {_summary(diff)}.", ""]
    for head, lines in _lines(diff, "A", "B", md_text):
        L += [f"## {head.capitalize()}", ""] + [f"- {x}" for x in lines] + [""]
    return "\n".join(L) + "\n"


def compare_json(diff: dict, a: str, b: str) -> str:
    return json_dumps({"a": str(a), "b": str(b), **diff}, indent=2) + "\n"
