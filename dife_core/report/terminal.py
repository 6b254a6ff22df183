"""The exposure matrix in the terminal (rich). N.E. is grey and spelled out,
never a number; every string from a checkpoint or plugin is printed as plain
text (no rich markup is interpreted)."""

from __future__ import annotations

from .format import cell_text, column_title, footprint_of, matrix, num, prediction_text

STYLES = {"exposed": "bold red", "weak": "green", "negative": "blue", "n.e.": "dim italic", "error": "bold magenta"}


def print_matrix(results: dict, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: do not squeeze the matrix into 80 columns
            console = Console(width=max(console.width, 200))
    ifaces, rows = matrix(results)
    t = Table(title="DIFE exposure matrix", show_lines=False, box=box.SIMPLE_HEAD)
    t.add_column("checkpoint", no_wrap=True)
    for i in ifaces:
        t.add_column(Text(column_title(i, sep="\n")), justify="right", no_wrap=True, min_width=6)
    t.add_column("footprint")
    section = None
    for ck, cells in rows:
        role = ck.get("role", "audited")
        if role != section and section is not None:
            t.add_section()
        section = role
        name = Text(ck["name"] + ("  (control)" if role == "control" else ""))
        entries = []
        for i in ifaces:
            c = cells.get(i["id"])
            entries.append(Text(cell_text(c), style=STYLES.get(c["status"], "") if c else "dim"))
        f = footprint_of(results, ck["name"])
        fp = Text(f["footprint"] or "—") if f else Text("")
        t.add_row(name, *entries, fp)
    console.print(t)
    legend = Text("exposed ", style=STYLES["exposed"]) + Text("weak ", style=STYLES["weak"]) + \
        Text("negative ", style=STYLES["negative"]) + Text("N.E. = not applicable ", style=STYLES["n.e."]) + \
        Text("error", style=STYLES["error"])
    console.print(legend)
    if results["footprints"]:
        ft = Table(title="Effective footprint (branch swap / component repair)", box=box.SIMPLE_HEAD)
        for col in ("checkpoint", "probe", "a00", "a10", "a01", "a11", "signal", "VRS", "TRS", "CSS",
                    "footprint", "prediction"):
            ft.add_column(col)
        for f in results["footprints"]:
            ft.add_row(Text(f["checkpoint"]), Text(str(f.get("probe") or "—")),
                       *[Text(num(f.get(k))) for k in ("a00", "a10", "a01", "a11", "signal", "vrs", "trs", "css")],
                       Text(str(f.get("footprint") or "—")), Text(prediction_text(f)))
        console.print(ft)
    flagged = [c for c in results.get("controls", []) if c["flagged"]]
    if results.get("controls"):
        if flagged:
            console.print(Text("Controls: the clean reference is flagged under " +
                               ", ".join(c["control_of"] for c in flagged) + " — check the thresholds.",
                               style="bold red"))
        else:
            console.print(Text(f"Controls: the clean reference is not flagged under any of "
                               f"{len(results['controls'])} trigger spec(s).", style="green"))
    if not results.get("complete", True):
        console.print(Text(f"Incomplete audit: {len(results['missing'])} record(s) missing; "
                           f"run again with --resume.", style="bold yellow"))
