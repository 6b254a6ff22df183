"""`dife toxictextclip-stress`: the stress test from the command line."""

import json

from click.testing import CliRunner

from dife_core.cli import build_cli


def test_listed_and_bad_sweeps_are_refused():
    r = CliRunner().invoke(build_cli(), ["--help"])
    assert "toxictextclip-stress" in r.output
    r = CliRunner().invoke(build_cli(), ["toxictextclip-stress", "--rates", "0.01,lots"])
    assert r.exit_code == 2 and "--rates" in r.output and "lots" in r.output


def test_table_marks_the_native_best():
    from dife_backdoors.commands import stress_table

    rec = {"poison_rate": 0.01, "epochs": 1.0, "native_value": 0.2, "native_reference_value": 0.1,
           "clean_acc": 0.9, "rerank_delta_h@1": -0.025, "retrieval_delta_h@1": None, "reused": False, "seconds": 12.0}
    res = {"records": [{**rec, "name": "a"}, {**rec, "name": "b", "native_value": 0.3, "reused": True}]}
    res["best"] = res["records"][1]
    rows = stress_table(res)
    assert rows[0].startswith("| variant") and len(rows) == 4
    assert "`b` (best)" in rows[3] and "reused" in rows[3] and "-0.025" in rows[2] and "n/a" in rows[2]


def test_runs_a_one_variant_sweep_on_the_test_world(tmp_path, monkeypatch):
    from dife_shapes.testing import _cache_dir

    monkeypatch.setenv("DIFE_CACHE_DIR", _cache_dir())  # the clean test model other tests share
    r = CliRunner().invoke(build_cli(), ["toxictextclip-stress", "--preset", "test", "--rates", "0.01",
                                         "--epochs", "0.1", "--out", str(tmp_path), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])
    (rec,) = res["records"]
    assert (rec["poison_rate"], rec["epochs"]) == (0.01, 0.1) and res["best"]["name"] == rec["name"]
    assert (tmp_path / rec["name"] / "dife.json").is_file()
    assert rec["rerank_delta_h@1"] is not None
