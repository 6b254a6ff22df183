"""The README's and docs/findings.md's measured claims, checked against fresh runs (`make test-slow`).

* the default demo against the README table (statuses, values, footprints);
* the paper suite against docs/findings.md through benchmarks/compare_paper.py
  (28 / 30 status classes or better, 6 / 6 footprints, and each value in the
  findings table within a tolerance).

Both fail on any error cell and on incomplete results (the two runs are
marked ``slow``; reading the tables is checked in the default run). The tables are read
from the documents themselves, so an edited figure is checked, not a copy.
Cold, these train the default model and build the suites (about 25 minutes on
2 cores); with ``$DIFE_CACHE_DIR`` holding them, a couple of minutes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the short column names of the README and findings tables -> interface ids
COLUMNS = {"zero-shot TS": "zero-shot-classification", "prompted QHR": "prompt-conditioned-classification",
           "targeted H@1": "targeted-retrieval", "rerank ΔH@1": "text-reranking",
           "selection ΔSel@1": "candidate-selection", "downstream TS": "downstream-visual-classification",
           "image–text H@1": "image-text-retrieval"}
#: a figure in the docs is a seed-0 run on one machine; another machine's float
#: order (threads, BLAS) may move a rate by a few items
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return os.environ.get("DIFE_CACHE_DIR") or str(tmp_path_factory.mktemp("dife-cache"))


def _demo(out, cache_dir, *args):
    from click.testing import CliRunner

    from dife_core.cli import build_cli

    env = {"DIFE_CACHE_DIR": cache_dir}
    r = CliRunner(env=env).invoke(build_cli(), ["demo", "--out", str(out), "--no-progress", *args])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True, results.get("missing") or results.get("errors")
    errors = [(c["checkpoint"], c["interface"], c.get("reason")) for c in results["cells"] if c["status"] == "error"]
    assert not errors
    return results


def _number(text: str):
    text = text.strip().replace("−", "-")
    return None if text == "N.E." else float(text)


def readme_table() -> dict:
    """``{checkpoint: {column: text}}`` of the README's "What `make demo` shows" table."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| checkpoint | zero-shot TS"))
    header = [h.strip() for h in lines[start].strip("|").split("|")]
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def test_the_readme_table_is_read():
    rows = readme_table()
    assert set(rows) == {"contrastive-poisoning", "badtexttower"}
    assert set(next(iter(rows.values()))) == set(COLUMNS) - {"image–text H@1"} | {"footprint"}


@pytest.mark.slow
def test_default_demo_matches_the_readme_table(cache_dir, tmp_path):
    results = _demo(tmp_path / "demo", cache_dir)
    cells = {(c["checkpoint"], c["interface"]): c for c in results["cells"]}
    fps = {f["checkpoint"]: f for f in results["footprints"]}
    for ck, row in readme_table().items():
        for column, text in row.items():
            if column == "footprint":
                assert fps[ck]["footprint"] == text, ck
                continue
            cell = cells[(ck, COLUMNS[column])]
            want = _number(text)
            if want is None:
                assert cell["status"] == "n.e.", (ck, column, cell["value"])
            else:
                assert cell["status"] == "exposed", (ck, column, cell["status"])
                assert cell["value"] == pytest.approx(want, abs=TOLERANCE), (ck, column)
    assert results["controls"] and not any(c["flagged"] for c in results["controls"])


def findings_table() -> dict:
    """``{(checkpoint, interface): (value or None, class)}`` of docs/findings.md's cell-by-cell table."""
    out = {}
    for ln in (ROOT / "docs" / "findings.md").read_text().splitlines():
        m = re.match(r"\| ([a-z-]+) \| ([^|]+) \| ([^|]+) \| (exposed|weak/neg|N\.E\.) \| [^|]+ \| [^|]+ \| [^|]* \|$",
                     ln)
        if m and m.group(2).strip() in COLUMNS:
            out[(m.group(1), COLUMNS[m.group(2).strip()])] = (_number(m.group(3)), m.group(4).strip())
    return out


def test_the_findings_table_is_read():
    table = findings_table()
    assert len(table) == 36  # six checkpoints x (five scored columns + image-text retrieval)
    assert table[("badtexttower", "text-reranking")][1] == "exposed"


def _compare_paper():
    spec = importlib.util.spec_from_file_location("compare_paper", ROOT / "benchmarks" / "compare_paper.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_paper_suite_matches_docs_findings(cache_dir, tmp_path):
    results = _demo(tmp_path / "paper", cache_dir, "--suite", "paper")
    cmp = _compare_paper().compare(results)
    assert cmp["total"] == 30 and cmp["matches"] >= 28, _compare_paper().markdown(cmp)
    assert all(f["match"] for f in cmp["footprints"]), cmp["footprints"]
    ours = {(r["checkpoint"], r["interface"]): r for r in cmp["cells"]}
    for key, (value, cls) in findings_table().items():
        assert ours[key]["ours_class"] == cls, key
        if value is None:
            assert ours[key]["ours"] is None, key
        else:
            assert ours[key]["ours"] == pytest.approx(value, abs=TOLERANCE), key
