"""`dife merge RUN... --out DIR`: finished audits combined into one report.

Runs merge when they measured the same thing: the same populations, seeds,
thresholds, interfaces, prompt templates and clean reference. Every
difference is listed in one error naming the runs; an audited checkpoint
name in two runs is an error naming both. The merged folder holds
results.json, report.md and report.html (no record store: the records stay
in each run); `dife compare` and `dife export` read it like any audit.
"""

from __future__ import annotations

from pathlib import Path

import click

from dife_core import hookimpl
from dife_core.errors import InvalidInputError

#: what must agree between runs, and how a message names it
SHARED = (
    ("populations", lambda r: {"dataset": (r.get("spec") or {}).get("populations"), "world": r.get("world")}),
    ("seeds", lambda r: r.get("seeds") or [r.get("seed")]),
    ("thresholds", lambda r: r.get("thresholds")),
    ("interfaces", lambda r: sorted(i.get("id") for i in r.get("interfaces") or [])),
    ("templates", lambda r: r.get("templates")),
    ("footprint rule", lambda r: r.get("footprint_params")),
    ("clean reference", lambda r: [c.get("fingerprint") for c in r["checkpoints"] if c.get("role") == "reference"]),
)


def merge_results(runs: list) -> dict:
    """One results dict from ``[(label, results)]`` (see the module docstring)."""
    from dife_core.engine.verdicts import verdicts
    from dife_core.safetext import terminal

    if len(runs) < 2:
        raise InvalidInputError("dife merge needs at least two runs.")
    first_label, first = runs[0]
    differ = []
    for what, get in SHARED:
        want = get(first)
        odd = [label for label, r in runs[1:] if get(r) != want]
        if odd:
            differ.append(f"{what} differ: {', '.join(odd)} against {first_label} "
                          f"(e.g. {str(get(dict(runs)[odd[0]]))[:160]} vs {str(want)[:160]})")
    owner: dict = {}
    for label, r in runs:
        for ck in r["checkpoints"]:
            if ck.get("role", "audited") != "audited":
                continue
            if ck["name"] in owner:
                differ.append(f"checkpoint {ck['name']!r} is in both {owner[ck['name']]} and {label}; "
                              f"rename one (the spec's name key) and audit it again")
            else:
                owner[ck["name"]] = label
    if differ:
        raise InvalidInputError(terminal("the runs cannot be merged: " + "; ".join(differ) + "."))

    merged = {k: v for k, v in first.items() if k != "verdicts"}
    reference = [c for c in first["checkpoints"] if c.get("role") == "reference"]
    by_role = lambda role: [c for _, r in runs for c in r["checkpoints"] if c.get("role", "audited") == role]  # noqa: E731
    merged["checkpoints"] = reference + by_role("audited") + by_role("control")
    for key in ("cells", "footprints", "controls", "missing", "errors"):
        merged[key] = [x for _, r in runs for x in r.get(key) or []]
    merged["metrics"] = {k: v for _, r in runs for k, v in (r.get("metrics") or {}).items()}
    plugins = {}
    for _, r in runs:
        for p in r.get("plugins") or []:
            plugins.setdefault(p.get("name"), p)
    merged["plugins"] = list(plugins.values())
    spec = dict(first.get("spec") or {})
    spec["checkpoints"] = [c for _, r in runs for c in (r.get("spec") or {}).get("checkpoints") or []]
    merged["spec"] = spec
    merged["complete"] = all(r.get("complete", True) for _, r in runs)
    merged["merged_from"] = [label for label, _ in runs]
    merged["verdicts"] = verdicts(merged)
    return merged


def merge_runs(paths, out_dir, *, force: bool = False) -> dict:
    """Merge the audits in ``paths`` (output folders or results.json files) into ``out_dir``."""
    from dife_core.outdir import check_out_dir, clear_owned, make_out_dir, write_text_atomic
    from dife_core.report.html import render_html
    from dife_core.report.load import load_run
    from dife_core.report.markdown import render_markdown
    from dife_core.safetext import json_dumps

    runs = [(str(p), load_run(p)) for p in paths]
    merged = merge_results(runs)
    out = Path(out_dir)
    if any(Path(p).resolve() == out.resolve() for p in paths):
        raise InvalidInputError(f"--out {out} is one of the runs being merged; choose another folder.")
    if check_out_dir(out, resume=False, force=force) == "replace":
        clear_owned(out)
    make_out_dir(out)
    write_text_atomic(out, "results.json", json_dumps(merged, indent=2) + "\n")
    write_text_atomic(out, "report.md", render_markdown(merged))
    write_text_atomic(out, "report.html", render_html(merged))
    return merged


@hookimpl
def register_commands(cli):
    @cli.command("merge")
    @click.argument("runs", nargs=-1, required=True, type=click.Path())
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Folder for the merged results.json, report.md and report.html.")
    @click.option("--force", is_flag=True, help="Write into a non-empty folder (replacing DIFE's files there).")
    @click.option("--quiet", is_flag=True, help="Do not print the exposure matrix.")
    def merge(runs, out_dir, force, quiet):
        """Combine finished audits (output folders or results.json files) into one report. The runs must
        share populations, seeds, thresholds, interfaces and clean reference; checkpoint names must differ.
        See docs/scale-out.md."""
        from dife_core.report import print_matrix

        merged = merge_runs(runs, out_dir, force=force)
        if not quiet:
            print_matrix(merged)
        n = sum(1 for c in merged["checkpoints"] if c.get("role", "audited") == "audited")
        click.echo(f"merged {len(runs)} runs ({n} checkpoints) into {out_dir}/results.json, report.md, report.html")
