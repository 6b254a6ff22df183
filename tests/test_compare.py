"""`dife compare`: exactly the changed cells, footprints and verdicts."""

import copy
import json

from dife_core.engine.compare import cell_change, compare

from .handmade_results import make_results, set_cell


def _fine_tuned(results, name):
    """``name``'s backdoor removed: its exposed cells become weak, footprint weak."""
    r = copy.deepcopy(results)
    changed = []
    for c in r["cells"]:
        if c["checkpoint"] == name and c["status"] == "exposed":
            c.update(status="weak", value=0.02, ci_low=0.01, ci_high=0.05, straddles=False)
            changed.append(c["interface"])
    for f in r["footprints"]:
        if f["checkpoint"] == name:
            f.update(footprint="weak", a10=0.01, a11=0.02)
    r.pop("verdicts", None)
    return r, changed


def test_compare_names_exactly_the_changed_cells():
    a = make_results()
    b, changed = _fine_tuned(a, "badtexttower")
    d = compare(a, b)
    assert sorted((c["checkpoint"], c["interface"]) for c in d["cells"]) == sorted(
        ("badtexttower", i) for i in changed)
    assert all(c["change"] == "status" and c["status_a"] == "exposed" and c["status_b"] == "weak"
               for c in d["cells"])
    assert d["footprints"] == [{"checkpoint": "badtexttower", "footprint_a": "textual", "footprint_b": "weak"}]
    assert d["verdicts"] == [{"checkpoint": "badtexttower", "decision_a": "image-tower-only",
                              "decision_b": "no-exposure-found"}]
    assert not d["identical"] and d["unchanged_cells"] == len(a["cells"]) - len(changed)
    assert compare(a, copy.deepcopy(a))["identical"]


def test_movement_within_and_beyond_intervals():
    a = make_results({"v": "visual"})
    # moved, but the intervals overlap: not a change
    b = set_cell(a, "v", "zero-shot-classification", value=0.95, ci_low=0.92, ci_high=0.97)
    assert compare(a, b)["cells"] == []
    # moved beyond: the intervals are disjoint
    b = set_cell(a, "v", "zero-shot-classification", value=0.7, ci_low=0.63, ci_high=0.76)
    [c] = compare(a, b)["cells"]
    assert c["change"] == "interval" and c["delta"] < 0 and c["ci_b"] == [0.63, 0.76]
    # no intervals (an older store): any change of value counts
    a0 = make_results({"v": "visual"}, with_ci=False)
    b0 = set_cell(a0, "v", "zero-shot-classification", value=0.97)
    assert [c["change"] for c in compare(a0, b0)["cells"]] == ["value"]
    assert cell_change({"status": "weak", "value": 0.1}, {"status": "weak", "value": 0.1 + 1e-12}) is None
    assert cell_change({"status": "weak", "value": 0.1}, None) == "missing"


def test_rows_and_interfaces_in_one_run_only():
    a = make_results({"v": "visual", "t": "textual"})
    b = make_results({"v": "visual", "x": "coupled"})
    b["interfaces"] = [i for i in b["interfaces"] if i["id"] != "text-embedding"]
    b["cells"] = [c for c in b["cells"] if c["interface"] != "text-embedding"]
    d = compare(a, b)
    assert d["checkpoints_only_in_a"] == ["t", "clean@t"] and d["checkpoints_only_in_b"] == ["x", "clean@x"]
    assert d["interfaces_only_in_a"] == ["text-embedding"] and d["interfaces_only_in_b"] == []
    assert d["cells"] == []  # rows and interfaces in one run only are not cell changes


def test_compare_command_outputs(tmp_path, capsys):
    from dife_core.cli import main

    a = make_results()
    b, changed = _fine_tuned(a, "badencoder")
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    main(["compare", str(pa), str(pb), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert {c["interface"] for c in d["cells"]} == set(changed) and {c["checkpoint"] for c in d["cells"]} == {
        "badencoder"}
    main(["compare", str(pa), str(pb), "--markdown"])
    md = capsys.readouterr().out
    assert md.startswith("# DIFE compare") and "## Cells changed" in md and "badencoder × zero-shot" in md
    main(["compare", str(pa), str(pb)])
    out = capsys.readouterr().out
    assert "footprints changed" in out and "badencoder: visual → weak" in out
    try:
        main(["compare", str(pa), str(pb), "--exit-code"])
    except SystemExit as e:
        assert e.code == 1
    else:
        raise AssertionError("--exit-code did not exit 1 on differing runs")


def test_compare_refuses_a_malformed_results_file(tmp_path, capsys):
    from dife_core.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"checkpoints": [], "cells": [{"checkpoint": 1}]}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_results({"v": "visual"})))
    for path in (bad, tmp_path / "none.json"):
        try:
            main(["compare", str(path), str(good)])
        except SystemExit as e:
            assert e.code == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err
    assert "cells[0].checkpoint" in (main_err := _err(main, bad, good, capsys)) and "results.json" in main_err


def _err(main, a, b, capsys):
    try:
        main(["compare", str(a), str(b)])
    except SystemExit:
        pass
    return capsys.readouterr().err


def test_compare_refuses_malformed_optional_sections(tmp_path, capsys):
    from dife_core.cli import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_results({"v": "visual"})))
    for key, value, where in (("verdicts", [{"decision": "x"}], "verdicts[0].checkpoint"),
                              ("footprints", "visual", "footprints"),
                              ("interfaces", [{"title": "t"}], "interfaces[0].id")):
        r = make_results({"v": "visual"})
        r[key] = value
        bad = tmp_path / f"{key}.json"
        bad.write_text(json.dumps(r))
        assert where in _err(main, bad, good, capsys)
