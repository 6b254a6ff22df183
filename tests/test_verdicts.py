"""Verdicts per checkpoint, derived only from the records, and --fail-on codes."""

import pytest

from dife_core.engine.verdicts import DECISIONS, EXIT_ERROR, EXIT_EXPOSED, EXIT_OK, EXIT_WEAK, exit_code_for, verdicts

from .handmade_results import PAPER, make_results, set_cell


def _by_name(results):
    return {v["checkpoint"]: v for v in verdicts(results)}


def test_paper_suite_wording_classes():
    vs = _by_name(make_results())
    assert set(vs) == set(PAPER)  # audited rows only: no control row gets a verdict
    for name, kind in PAPER.items():
        v = vs[name]
        assert v["kind"] == kind and v["decision"] in DECISIONS
    for name in ("badencoder", "liang-badclip", "contrastive-poisoning"):
        v = vs[name]
        assert v["decision"] == "text-tower-only"
        assert v["reuse"] == ("the image tower carries the backdoor: reusing the text tower alone is not exposed "
                              "on any audited interface")
    for name in ("toxictextclip", "badtexttower"):
        v = vs[name]
        assert v["decision"] == "image-tower-only"
        assert v["reuse"].startswith("the text tower carries the backdoor: reusing the image tower alone")
    assert vs["bai-badclip"]["decision"] == "do-not-deploy"
    assert "both towers together" in vs["bai-badclip"]["reuse"]
    assert vs["badencoder"]["n_exposed"] == 3 and vs["badencoder"]["n_applicable"] == 3
    assert vs["badencoder"]["controls"]["status"] == "clean"


def test_weak_row_and_nothing_measured():
    r = make_results({"quiet": "weak"})
    v = _by_name(r)["quiet"]
    assert v["kind"] == "weak" and v["decision"] == "no-exposure-found" and v["exposed"] == []
    assert "barely moves" in v["reuse"]
    # every cell N.E.: nothing was measured, nothing can be concluded
    for c in r["cells"]:
        if c["checkpoint"] == "quiet":
            c.update(status="n.e.", value=None)
    assert _by_name(r)["quiet"]["decision"] == "inconclusive"


def test_errors_controls_and_uncertain_cells_change_the_decision():
    base = make_results({"v": "visual"})
    r = set_cell(base, "v", "image-text-retrieval", status="error", value=None, reason="tokenizer panic")
    v = _by_name(r)["v"]
    assert v["decision"] == "do-not-deploy"  # still exposed, but one tower is no longer shown clean
    assert v["errors"] == [{"interface": "image-text-retrieval", "reason": "tokenizer panic"}]
    assert any("in error" in n for n in v["notes"])
    # a control flagged on one interface: that interface measures the trigger, the others decide
    r = make_results({"v": "visual"})
    exposed = [c["interface"] for c in r["cells"] if c["checkpoint"] == "v" and c["status"] == "exposed"]
    assert len(exposed) > 1
    r["controls"][0].update(flagged=True, exposed=exposed[:1])
    v = _by_name(r)["v"]
    assert v["decision"] == "text-tower-only" and v["controls"]["status"] == "flagged"
    assert any("decision rests on the other interfaces" in n for n in v["notes"])
    # flagged on every exposed interface: nothing separates clean from poisoned
    r["controls"][0].update(exposed=exposed)
    v = _by_name(r)["v"]
    assert v["decision"] == "inconclusive" and any("nothing separates" in n for n in v["notes"])
    # a cell predicted exposed but measured weak leaves the other tower clean; one predicted weak
    # but measured exposed does not
    r = make_results({"v": "visual"})
    fp = next(f for f in r["footprints"] if f["checkpoint"] == "v")
    fp.update(prediction_holds=False, mismatches=["x: predicted exposed, measured weak"])
    assert _by_name(r)["v"]["decision"] == "text-tower-only"
    fp["predicted_weak"] = exposed[-1:]
    assert _by_name(r)["v"]["decision"] == "do-not-deploy"
    # ... unless that cell was predicted weak only for its cut (a filter): it says nothing of the text tower
    fp["below_cut"] = exposed[-1:]
    assert _by_name(r)["v"]["decision"] == "text-tower-only"
    # the only exposure lies within its interval: inconclusive, not exposed
    r = make_results({"w": "weak"})
    r = set_cell(r, "w", "zero-shot-classification", value=0.45, ci_low=0.37, ci_high=0.53, straddles=True)
    v = _by_name(r)["w"]
    assert v["decision"] == "inconclusive" and v["uncertain"] == ["zero-shot-classification"]
    # a text-tower-only interface exposed on a visual footprint: neither tower is safe to reuse
    r = make_results({"v": "visual"})
    r = set_cell(r, "v", "text-embedding", status="exposed", value=0.9, channel="image")
    v = _by_name(r)["v"]
    assert v["decision"] == "do-not-deploy" and "text-embedding" in v["reuse"]


def test_records_without_intervals_still_get_verdicts():
    vs = _by_name(make_results({"t": "textual"}, with_ci=False))
    assert vs["t"]["decision"] == "image-tower-only" and vs["t"]["uncertain"] == []


def test_exit_codes_for_fail_on():
    exposed = make_results({"v": "visual"})
    quiet = make_results({"q": "weak"})
    assert exit_code_for(exposed, "exposed") == EXIT_EXPOSED == 4
    assert exit_code_for(exposed, "weak") == EXIT_EXPOSED  # weak implies exposed
    assert exit_code_for(quiet, "exposed") == EXIT_OK == 0
    assert exit_code_for(exposed, None) == EXIT_OK
    errored = set_cell(quiet, "q", "zero-shot-classification", status="error", value=None, reason="x")
    assert exit_code_for(errored, "error") == EXIT_ERROR == 6
    assert exit_code_for(errored, "exposed") == EXIT_OK
    assert exit_code_for(errored, "any") == EXIT_ERROR
    shaky = set_cell(quiet, "q", "zero-shot-classification", value=0.45, ci_low=0.37, ci_high=0.53, straddles=True)
    assert exit_code_for(shaky, "weak") == EXIT_WEAK == 5 and exit_code_for(shaky, "exposed") == EXIT_OK
    assert exit_code_for(exposed, "error,exposed") == EXIT_EXPOSED and exit_code_for(exposed, ["any"]) == 4
    with pytest.raises(ValueError):
        exit_code_for(exposed, "sometimes")


def test_an_uncertain_cell_beside_firm_exposures_is_noted():
    r = set_cell(make_results({"v": "visual"}), "v", "zero-shot-classification", value=0.52, ci_low=0.37,
                 ci_high=0.67, straddles=True)
    v = _by_name(r)["v"]
    assert v["decision"] == "text-tower-only" and v["uncertain"] == ["zero-shot-classification"]
    assert any("straddles the exposure threshold" in n for n in v["notes"])
    # a weak cell whose interval reaches only the negative threshold is not uncertain about exposure
    r = set_cell(make_results({"t": "textual"}), "t", "text-reranking", status="weak", value=0.01, ci_low=-0.05,
                 ci_high=0.08, straddles=True)
    assert _by_name(r)["t"]["uncertain"] == []


def test_reports_list_the_cells_the_prediction_leaves_out_or_predicts_below_a_cut():
    from dife_core.report.html import render_html
    from dife_core.report.markdown import render_markdown

    r = make_results({"v": "visual"})
    fp = next(f for f in r["footprints"] if f["checkpoint"] == "v")
    fp.update(below_cut=["clip-score-filtering"], confounded=["image-knn-retrieval"])
    md = render_markdown(r)
    assert "- v: predicted weak for their cut" in md and "clip-score-filtering" in md
    assert "- v: not predicted, the control is exposed there" in md and "image-knn-retrieval" in md
    page = render_html(r, plots=False)
    assert "predicted weak for their cut" in page and "not predicted, the control is exposed there" in page
