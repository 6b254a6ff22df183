"""benchmarks/compare_paper.py: status classes, counting and footprints (the tables in docs/findings.md)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_paper.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_paper", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_run_that_reproduces_the_paper_scores_30_of_30():
    cp = _module()
    cells, footprints = [], []
    for ck, ref in cp.PAPER.items():
        for iface, value in ref.items():
            if value is None:
                cells.append({"checkpoint": ck, "interface": iface, "status": "n.e.", "value": None})
            else:
                status = "exposed" if cp.paper_class(iface, value) == "exposed" else "weak"
                cells.append({"checkpoint": ck, "interface": iface, "status": status, "value": value})
        footprints.append({"checkpoint": ck, "footprint": cp.PAPER_FOOTPRINT[ck], "prediction_holds": True})
    cmp = cp.compare({"cells": cells, "footprints": footprints})
    assert (cmp["matches"], cmp["total"]) == (30, 30)
    assert all(f["match"] for f in cmp["footprints"])
    # one flipped scored cell and one missing footprint are counted as mismatches
    flip = next(c for c in cells if c["checkpoint"] == "toxictextclip" and c["interface"] == "text-reranking")
    flip["status"] = "exposed"
    cmp = cp.compare({"cells": cells, "footprints": footprints[:-1]})
    assert cmp["matches"] == 29 and not cmp["footprints"][-1]["match"]
    text = cp.markdown(cmp)
    assert "**29 / 30**" in text and text.count("**mismatch**") == 2


def test_status_classes():
    cp = _module()
    assert (cp.paper_class("text-reranking", 0.25) == "exposed"
            and cp.paper_class("text-reranking", -0.025) == "weak/neg")
    assert cp.paper_class("zero-shot-classification", 0.0971) == "weak/neg"
    assert cp.paper_class("targeted-retrieval", None) == "N.E."
    assert cp.our_class({"status": "negative"}) == "weak/neg" and cp.our_class(None) == "missing"
