"""benchmarks/bench_scan.py's bookkeeping: re-runs replace rows, each row keeps
its reference, and the summary counts what the verdicts decide."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scan.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_scan", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(name, kind, verdict, score, deciding, target=None, true_target=None, matrix=None):
    r = {"checkpoint": name, "kind": kind, "verdict": verdict, "normalised_score": score,
         "deciding_score": deciding, "target": target, "true_target": true_target, "tower_diff": "visual changed"}
    if matrix:
        r["matrix"] = matrix
    return r


def test_a_later_run_replaces_a_row_in_place_and_rows_keep_their_reference(tmp_path):
    b = _load()
    m = {"applicable": 7, "same_class": 6, "same_footprint": False}
    first = {"reference": "ref-a", "rows": [_row("x", "attack", "clean", 0.1, 0.1, None, "cat"),
                                            _row("y", "clean", "clean", 0.2, 0.2)]}
    again = {"reference": "ref-b", "rows": [_row("x", "attack", "backdoored", 3.0, 3.0, "cat", "cat", m)]}
    (tmp_path / "a.json").write_text(json.dumps(first))
    (tmp_path / "b.json").write_text(json.dumps(again))

    class A:
        files = [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
        json = str(tmp_path / "all.json")

    b.cmd_combine(A)
    doc = json.loads((tmp_path / "all.json").read_text())
    assert [r["checkpoint"] for r in doc["rows"]] == ["x", "y"]
    assert doc["rows"][0]["verdict"] == "backdoored" and doc["rows"][0]["reference"] == "ref-b"
    assert doc["rows"][1]["reference"] == "ref-a" and doc["reference"] == ["ref-a", "ref-b"]
    s = doc["summary"]
    assert (s["flagged_attacks"], s["target_right"], s["matrix_same_class"], s["matrix_applicable"],
            s["same_footprint"]) == (1, 1, 6, 7, 0)


def test_the_deciding_auroc_ignores_leads():
    """A clean model whose only high score is a lead (it cannot decide) ranks
    below every flagged attack on the deciding score, not on the best score."""
    b = _load()
    rows = [_row("att", "attack", "backdoored", 2.0, 2.0, "cat", "cat"),
            _row("seed", "clean", "inconclusive", 2.5, 0.0)]
    s = b.summarize(rows)
    assert s["auroc"] == 0.0 and s["auroc_deciding"] == 1.0
