"""Reports rendered from the stored records: results.json, report.md,
report.html and the terminal table. Reports never feed back into results."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .terminal import print_matrix


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_reports(out_dir, *, plots: bool = True) -> dict:
    """Assemble results from ``out_dir``'s cell store and (re)write
    results.json, report.md and report.html. Returns the results dict."""
    from ..engine.results import assemble
    from .html import render_html
    from .markdown import render_markdown

    out = Path(out_dir)
    results = assemble(out)
    _write(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    _write(out / "report.md", render_markdown(results))
    _write(out / "report.html", render_html(results, plots=plots))
    return results


__all__ = ["render_reports", "print_matrix"]
