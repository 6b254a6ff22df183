"""Reports rendered from the stored records: results.json, report.md,
report.html and the terminal table. Reports never feed back into results.

Every file is written through :func:`dife_core.outdir.write_text_atomic`
(no link in the output folder is followed); results.json goes through
:func:`dife_core.safetext.json_dumps`, so a lone surrogate in a record is
written as its escape instead of aborting the write.
"""

from __future__ import annotations

from pathlib import Path

from .terminal import print_matrix


def render_reports(out_dir, *, plots: bool = True) -> dict:
    """Assemble results from ``out_dir``'s cell store and (re)write
    results.json, report.md and report.html. Returns the results dict
    (with ``verdicts``)."""
    from ..engine.results import assemble
    from ..engine.verdicts import verdicts
    from ..outdir import write_text_atomic
    from ..safetext import json_dumps
    from .html import render_html
    from .markdown import render_markdown

    out = Path(out_dir)
    results = assemble(out)
    from ..scan import read_scans

    scans = read_scans(out)  # a `dife scan` folder: what the scan found before the audit
    if scans:
        results["scans"] = scans
    if "verdicts" not in results:
        results["verdicts"] = verdicts(results)
    write_text_atomic(out, "results.json", json_dumps(results, indent=2) + "\n")
    write_text_atomic(out, "report.md", render_markdown(results))
    write_text_atomic(out, "report.html", render_html(results, plots=plots))
    return results


__all__ = ["render_reports", "print_matrix"]
