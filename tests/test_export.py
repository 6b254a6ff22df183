"""`dife export`: one row per cell with every metric, readable as is; the
pandas snippet of docs/reports.md runs on the exported files."""

import csv
import json
import re
from pathlib import Path

import pytest

from dife_core.report.export import rows, to_csv, to_jsonl

from .handmade_results import make_results

DOC = Path(__file__).resolve().parents[1] / "docs" / "reports.md"


def test_rows_flatten_every_metric():
    r = make_results({"v": "visual"})
    cols, rs = rows(r)
    assert len(rs) == len(r["cells"])
    assert cols[:5] == ["checkpoint", "role", "interface", "metric", "status"]
    assert {"metric.ts", "metric.h@1", "metric.n_images", "ci_low", "ci_high", "n", "straddles"} <= set(cols)
    zs = next(x for x in rs if x["checkpoint"] == "v" and x["interface"] == "zero-shot-classification")
    assert zs["metric.ts"] == zs["value"] == 0.98 and zs["role"] == "audited" and zs["footprint"] == "visual"


def test_csv_and_jsonl_parse_with_the_standard_library():
    r = make_results()
    parsed = list(csv.DictReader(to_csv(r).splitlines()))
    assert len(parsed) == len(r["cells"])
    ne = next(p for p in parsed if p["status"] == "n.e.")
    assert ne["value"] == "" and ne["reason"]
    lines = [json.loads(line) for line in to_jsonl(r).splitlines()]
    assert len(lines) == len(r["cells"]) and list(lines[0]) == list(parsed[0])
    assert float(parsed[1]["value"] or 0) == (lines[1]["value"] or 0)


def test_export_command_and_the_docs_snippet(tmp_path, monkeypatch, capsys):
    from dife_core.cli import main

    res = tmp_path / "results.json"
    res.write_text(json.dumps(make_results()))
    monkeypatch.chdir(tmp_path)
    main(["export", str(res), "--format", "csv", "--output", "cells.csv"])
    main(["export", str(res), "--format", "jsonl", "--output", "cells.jsonl"])
    main(["export", str(res)])  # standard output, CSV by default
    assert capsys.readouterr().out == (tmp_path / "cells.csv").read_text()
    assert len(list(csv.DictReader((tmp_path / "cells.csv").open()))) == 96
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    try:
        import pandas  # noqa: F401
    except ImportError:
        pytest.skip("pandas is not installed: the CSV/JSONL were checked with the csv and json modules")
    exec(compile(snippet, str(DOC), "exec"), {})
