"""Footprint decision rule and prediction on the paper's branch-swap numbers."""

import pytest

from dife_core.engine.cells import entry_type
from dife_core.engine.footprint import check_prediction, decide, predict
from dife_core.engine.spec import FootprintParams

P = FootprintParams()


@pytest.mark.parametrize("a,fp", [
    ((0.0988, 0.9998, 0.0988, 0.9998), "visual"),    # BadEncoder
    ((0.0010, 0.0010, 0.9910, 0.9910), "textual"),   # BadTextTower
    ((0.0991, 0.9999, 0.0994, 1.0000), "visual"),    # ContrastivePoisoning
    ((0.0013, 0.0011, 0.0011, 0.0009), "weak"),      # ToxicTextCLIP: signal < 0.05
    ((0.1019, 0.0998, 0.1002, 1.0000), "coupled"),   # Bai-BadCLIP component repair
    ((0.0, 0.5, 0.5, 1.0), "coupled"),               # both halves needed, none leads
])
def test_decision_rule_reproduces_the_paper(a, fp):
    m = dict(zip(("a00", "a10", "a01", "a11"), a))
    d = decide(m, P)
    assert d["footprint"] == fp
    assert d["signal"] == pytest.approx(abs(a[3] - a[0]))


def test_ratios_use_eps():
    d = decide({"a00": 0.0, "a10": 0.0, "a01": 0.0, "a11": 0.0}, P)
    assert d["vrs"] == 0.0 and d["footprint"] == "weak"


def _cell(i, ch, ro, st, decision=None):
    card = {"readout": ro} if decision is None else {"readout": ro, "decision": decision}
    return {"interface": i, "channel": ch, "card": card, "status": st}


def test_visual_prediction_and_check():
    cells = [_cell("zs", "image", "score", "exposed"), _cell("down", "image", "image-features", "exposed"),
             _cell("rerank", "text", "score", "weak"), _cell("qhr", None, "score", "n.e.")]
    p = predict("visual", "branch-swap", cells)
    exp, weak = p["exposed"], p["weak"]
    assert exp == ["zs", "down"] and weak == ["rerank"] and p["below_cut"] == p["confounded"] == []
    assert check_prediction(exp, weak, cells) == (True, [])
    cells[2]["status"] = "exposed"
    holds, mism = check_prediction(exp, weak, cells)
    assert not holds and mism == ["rerank: predicted weak, measured exposed"]


def test_component_repair_coupled_predicts_mechanism_cells():
    cells = [_cell("zs", "image", "score", "weak"), _cell("down", "mechanism", "image-features", "exposed")]
    p = predict("coupled", "component-repair", cells)
    assert (p["exposed"], p["weak"]) == (["down"], ["zs"])


def test_cut_cells_are_predicted_weak_whatever_the_tower():
    """A footprint names the tower, not the size of the move: a cell whose card
    decides by a cut is predicted weak even where the tower rule reaches it."""
    cells = [_cell("zs", "image", "score", "exposed", "comparison"),
             _cell("filter", "image", "score", "weak", "cut"),
             _cell("tfilter", "text", "score", "weak", "cut")]
    p = predict("visual", "branch-swap", cells)
    assert p["exposed"] == ["zs"] and p["weak"] == ["filter", "tfilter"] and p["below_cut"] == ["filter"]
    assert check_prediction(p["exposed"], p["weak"], cells) == (True, [])
    cells[1]["status"] = "exposed"  # a backdoor strong enough to clear the cut is a miss, not hidden
    assert check_prediction(p["exposed"], p["weak"], cells)[1] == ["filter: predicted weak, measured exposed"]
    # without the key (records written before the field existed) a card is a comparison
    assert predict("visual", "branch-swap", [_cell("zs", "image", "score", "weak")])["exposed"] == ["zs"]


def test_confounded_cells_are_not_predicted():
    cells = [_cell("zs", "image", "score", "exposed"), _cell("knn", "image", "image-features", "exposed"),
             _cell("rerank", "text", "score", "weak")]
    p = predict("coupled", "component-repair", cells, confounded=("knn",))
    assert p["confounded"] == ["knn"] and "knn" not in p["exposed"] + p["weak"]
    assert p["weak"] == ["zs", "rerank"]


@pytest.mark.parametrize("value,relative,baseline,expect", [
    (0.99, False, 0.0, "exposed"), (0.99, False, 0.9, "weak"),  # no lift over the clean input
    (0.30, False, 0.0, "weak"), (0.0, False, 0.10, "negative"),
    (0.965, True, None, "exposed"), (-0.025, True, None, "negative"), (0.01, True, None, "weak"),
])
def test_entry_types(value, relative, baseline, expect):
    th = {"exposed": 0.5, "exposed_delta": 0.2, "negative_delta": -0.02}
    assert entry_type(value, relative=relative, baseline=baseline, thresholds=th) == expect


def test_diagnostic_readout_by_trigger_channel_and_source():
    from dife_core.engine.applicability import AttackProfile
    from dife_core.engine.footprint import diagnostic_readout

    def card(channel, name, source):
        return {"attack": "x", "modifies": "both towers", "source": source, "target": "airplane",
                "trigger": {"channel": channel, "name": name, "params": {}}}

    assert diagnostic_readout(AttackProfile.from_card(card("image", "patch", None))) == \
        ("zero-shot", "ts")
    assert diagnostic_readout(AttackProfile.from_card(card("text", "text-prefix", "automobile"))) == \
        ("prompt-conditioned", "qhr")
    # a suffix sentence with no source class: every class prompt carries it
    assert diagnostic_readout(AttackProfile.from_card(card("text", "text-suffix", None))) == \
        ("zero-shot", "ts-triggered-prompts")


def test_triggered_prompt_set_readout():
    """class_weights triggers only the source row with a source, every row without one;
    prompt_set_hijack scores clean non-target images against the fully triggered set."""
    from dife_core.engine.embeddings import AppliedTrigger, EmbeddingService
    from dife_core.engine.scoring import class_weights, prompt_set_hijack

    from . import handmade as H

    world, enc, emb = H.make_world(), H.HandEncoder("clean"), EmbeddingService()
    shift = AppliedTrigger("shift", "text", lambda ss: [s.replace("a photo of a", "an airplane next to a") for s in ss])
    clean = class_weights(emb, enc, world.classnames, world.templates)
    changed = lambda w: ((w - clean).abs().sum(-1) > 1e-6).tolist()  # noqa: E731
    assert changed(class_weights(emb, enc, world.classnames, world.templates, trigger=shift, source_index=1)) == \
        [False, True, False, False]
    assert changed(class_weights(emb, enc, world.classnames, world.templates, trigger=shift)) == [True] * 4
    # the same word in every prompt moves nothing relative: the readout stays at 0
    assert prompt_set_hijack(emb, enc, world, shift, world.templates, 0)["ts"] == 0.0
    # a trigger that erases every class name but the target's sends clean images to the target
    erase = AppliedTrigger("erase", "text",
                           lambda ss: [s if "airplane" in s else s.split(" of a ")[0] + " of a thing" for s in ss])
    r = prompt_set_hijack(emb, enc, world, erase, world.templates, 0)
    assert r["ts"] > 0.5 and r["baseline"] == 0.0 and r["n_images"] == 18


def _measured(a10, a01=0.05, readout="zs:ts"):
    return {"a00": 0.05, "a10": a10, "a01": a01, "a11": 0.9, "readout": readout, "probe": "branch-swap"}


def _thr_cell(i, ch, ro, st, relative=False):
    return {"interface": i, "channel": ch, "card": {"readout": ro, "relative": relative}, "status": st,
            "thresholds": {"exposed": 0.5, "exposed_delta": 0.2, "negative_delta": -0.02}}


def test_a_coupled_footprint_reaches_the_feature_cells_of_a_tower_exposed_alone():
    """Coupled via branch swap: neither tower carries most of the signal. A
    tower whose swap alone already makes the readout exposed (a10 for the
    visual tower) still carries the trigger into the cells reading it only."""
    from dife_core.engine.footprint import towers_alone

    cells = [_thr_cell("zs", "image", "score", "exposed"), _thr_cell("knn", "image", "image-features", "exposed"),
             _thr_cell("search", "text", "text-features", "weak")]
    assert decide(_measured(0.60), P)["footprint"] == "coupled"
    alone = towers_alone(_measured(0.60), cells)
    assert alone == ("visual",)
    p = predict("coupled", "branch-swap", cells, alone=alone)
    assert (p["exposed"], p["weak"]) == (["zs", "knn"], ["search"])
    # a visual swap below the readout's exposure (0.45 < 0.5) leaves the feature cells weak
    assert towers_alone(_measured(0.45), cells) == ()
    assert predict("coupled", "branch-swap", cells, alone=())["weak"] == ["knn", "search"]
    # a relative readout judges the swap as a delta; an unknown readout gives no tower
    rel = [_thr_cell("zs", "image", "score", "exposed", relative=True)]
    assert towers_alone(_measured(0.25), rel) == ("visual",)
    assert towers_alone(_measured(0.60, readout="other:ts"), cells) == ()
