"""The extra interfaces inside a whole audit: audited by default after the
built-ins, no extra encoder pass, clean controls not flagged; and the CLI
lists the plugin as providing them."""

import collections
import json
import os
import subprocess
import sys

import pytest

from dife_core.builtins.interfaces import BUILTIN_INTERFACES
from dife_core.engine.runner import Audit
from dife_core.engine.spec import AuditSpec

EXTRA = ("clip-score-filtering", "clipscore-caption-eval", "image-knn-retrieval", "text-semantic-search",
         "knn-classifier")


def _audit(spec: dict, out):
    from dife_core.engine import render_reports

    audit = Audit(AuditSpec.from_dict(spec), out, resume=False, progress=False)
    audit.run()
    return audit, render_reports(out)


def test_extra_interfaces_add_no_encoder_pass_and_controls_stay_clean(tmp_path, soft):
    base, _ = _audit(soft.spec_dict(interfaces=list(BUILTIN_INTERFACES)), tmp_path / "builtins")
    soft.CALLS.clear()
    full, res = _audit(soft.spec_dict(), tmp_path / "all")
    # the default ("all") audits the five after the built-ins, in card order
    ids = [i["id"] for i in res["interfaces"]]
    assert ids[-5:] == list(EXTRA) and set(BUILTIN_INTERFACES) <= set(ids[:-5])
    assert {i["id"]: i["plugin"] for i in res["interfaces"]}["knn-classifier"] == "dife-interfaces-extra"
    # the same encode jobs (tower x input set x trigger) as the built-ins alone: zero extra encoder passes
    jobs = collections.Counter(e[:4] for e in full.embeddings.log)
    assert set(jobs) == {e[:4] for e in base.embeddings.log}
    assert max(jobs.values()) == 1
    assert max(collections.Counter(soft.CALLS).values()) == 1  # no row encoded twice, hybrids included
    cells = {(c["checkpoint"], c["interface"]): c for c in res["cells"]}
    # every extra cell is measured or N.E. by the card's rule; never an error
    assert all(cells[(r, i)]["status"] != "error" for r in ("visual", "textual") for i in EXTRA)
    assert cells[("textual", "image-knn-retrieval")]["question"] == "readout"
    assert cells[("visual", "text-semantic-search")]["question"] == "readout"
    assert cells[("visual", "clip-score-filtering")]["channel"] == "image"
    assert cells[("textual", "clip-score-filtering")]["channel"] == "text"
    # controls: the clean reference under each attack's trigger is not flagged on any extra interface
    for row in ("clean@textual", "clean@visual"):
        assert all(cells[(row, i)]["status"] != "exposed" for i in EXTRA), row
    # the relative cards' records carry their reference condition
    assert cells[("visual", "image-knn-retrieval")]["reference"]["condition"] == "clean query, same model"
    assert "h@k" in cells[("visual", "image-knn-retrieval")]["reference"]


def test_the_footprint_prediction_from_the_cards_on_the_extra_cells(tmp_path, soft):
    """Saturating carriers: the engine's card-derived prediction (channel x readout) names exactly the
    comparison cells that come out exposed; the textual carrier's image-feature cells are N.E.
    (bypassed). The filter decides by a cut, so it is predicted weak; these carriers are strong enough
    to clear it, and the record says so as a miss instead of hiding it."""
    _, res = _audit(soft.spec_dict(strong=True), tmp_path)
    cells = {(c["checkpoint"], c["interface"]): c for c in res["cells"]}
    fps = {f["checkpoint"]: f for f in res["footprints"]}
    assert fps["visual"]["footprint"] == "visual" and fps["textual"]["footprint"] == "textual"
    expect = {"visual": {"clipscore-caption-eval", "image-knn-retrieval", "knn-classifier"},
              "textual": {"clipscore-caption-eval", "text-semantic-search"}}
    for row, exposed in expect.items():
        assert set(fps[row]["predicted_exposed"]) & set(EXTRA) == exposed, row
        assert fps[row]["below_cut"] == ["clip-score-filtering"], row
        assert "clip-score-filtering: predicted weak, measured exposed" in fps[row]["mismatches"], row
        for i in EXTRA:
            status = cells[(row, i)]["status"]
            measured = exposed | {"clip-score-filtering"}
            assert status == ("exposed" if i in measured else "n.e."), (row, i, cells[(row, i)])
    for row in ("clean@textual", "clean@visual"):
        assert all(cells[(row, i)]["status"] != "exposed" for i in EXTRA), row


def test_list_plugins_shows_the_interfaces():
    env = {**os.environ, "DIFE_LOAD_PLUGINS": os.environ.get("DIFE_LOAD_PLUGINS", "interfaces_extra")}
    r = subprocess.run([sys.executable, "-m", "dife_core", "list-plugins", "--json"], capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    (me,) = [p for p in json.loads(r.stdout) if p["name"] == "dife-interfaces-extra"]
    assert me["error"] is None
    assert sorted(me["provides"]["interfaces"]) == sorted(EXTRA)
    assert {"delta_pass_rate", "win_rate", "delta_h@k"} <= set(me["provides"]["metrics"])


def test_after_the_builtins_the_extra_cells_run_no_encode_job(soft):
    """The cell API with one shared embedding service: the built-in cells and each row's clean utility
    (what an audit measures anyway) encode everything the five extra cards read."""
    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.engine.evaluate import evaluate_cell, world_templates
    from dife_core.engine.scoring import clean_utility

    world = soft.make_world()
    m = {k: soft.SoftEncoder(k) for k in ("clean", "visual", "textual")}
    emb = EmbeddingService(seed=0, batch_size=16)
    rows = [("visual", soft.VISUAL_CARD), ("textual", soft.TEXTUAL_CARD), ("clean", soft.VISUAL_CARD),
            ("clean", soft.TEXTUAL_CARD)]
    for row, card in rows:
        clean_utility(emb, m[row], world, world_templates(world))
        for iface in BUILTIN_INTERFACES:
            evaluate_cell(m[row], m["clean"], world, card, iface, embeddings=emb)
    before = list(emb.log)
    statuses = []
    for row, card in rows:
        for iface in EXTRA:
            statuses.append(evaluate_cell(m[row], m["clean"], world, card, iface, embeddings=emb)["status"])
    assert emb.log == before
    assert "error" not in statuses and statuses.count("n.e.") == 2 * 3  # 3 readout-bypassed cells per carrier


def test_block_sizes_do_not_change_any_value(soft, world, models, monkeypatch):
    from dife_core.engine.evaluate import evaluate_cell
    from dife_interfaces_extra import common

    def run(**kw):
        return [evaluate_cell(models[row], models["clean"], world, card, i, **kw)
                for row, card in (("visual", soft.VISUAL_CARD), ("textual", soft.TEXTUAL_CARD)) for i in EXTRA]

    ref = run()
    monkeypatch.setattr(common, "MAX_ELEMENTS", 7)
    for a, b in zip(ref, run(ranking_chunk=2)):
        assert a["status"] == b["status"] and a["value"] == pytest.approx(b["value"], abs=1e-6), a["interface"]
        assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-6), a["interface"]  # float32 block sums
