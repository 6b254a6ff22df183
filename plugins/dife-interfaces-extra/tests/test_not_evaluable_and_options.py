"""N.E. from the card (the engine's four questions) and from each evaluator's
own target event; options read from the spec, checked, and documented."""

import attrs
import pytest

from dife_core.engine.evaluate import evaluate_cell
from dife_core.plugins import get_registry

EXTRA = ("clip-score-filtering", "clipscore-caption-eval", "image-knn-retrieval", "text-semantic-search",
         "knn-classifier")


def rec(models, world, row, card, iface, *, clean=True, **kw):
    return evaluate_cell(models[row], models["clean"] if clean else None, world, card, iface, **kw)


def _ne(r, question, reason):
    assert r["status"] == "n.e." and r["value"] is None, r
    assert r["question"] == question, r
    assert reason in r["reason"], r["reason"]


def test_readout_and_channel_questions_follow_the_cards(soft, world, models):
    # a text-tower attack does not reach image features; a visual one does not reach text features
    for iface in ("image-knn-retrieval", "knn-classifier"):
        _ne(rec(models, world, "textual", soft.TEXTUAL_CARD, iface), "readout", "bypassed footprint")
    _ne(rec(models, world, "visual", soft.VISUAL_CARD, "text-semantic-search"), "readout", "bypassed footprint")
    # an image trigger on a card that reaches text features through both towers still has no text channel
    both = {**soft.VISUAL_CARD, "modifies": "both towers"}
    _ne(rec(models, world, "visual", both, "text-semantic-search"), "trigger channel", "no text trigger channel")
    both_t = {**soft.TEXTUAL_CARD, "modifies": "both towers"}
    for iface in ("image-knn-retrieval", "knn-classifier"):
        _ne(rec(models, world, "textual", both_t, iface), "trigger channel", "no image trigger channel")
    # the score cards take either channel
    for iface in ("clip-score-filtering", "clipscore-caption-eval"):
        assert rec(models, world, "visual", soft.VISUAL_CARD, iface)["channel"] == "image"
        assert rec(models, world, "textual", soft.TEXTUAL_CARD, iface)["channel"] == "text"


def test_relative_cards_without_a_trigger_need_the_clean_reference(soft, world, models):
    for iface in ("clip-score-filtering", "text-semantic-search"):
        _ne(rec(models, world, "textual", soft.NATURAL_CARD, iface, clean=False), "reference", "no reference")
        r = rec(models, world, "textual", soft.NATURAL_CARD, iface)
        assert r["status"] not in ("n.e.", "error") and r["channel"] == "none", r
        assert r["reference"]["condition"] in ("clean reference model, same inputs",
                                               "clean reference model, same query"), r["reference"]


def test_no_pool_or_no_classification_is_ne(soft, world, models):
    no_pool = attrs.evolve(world, pool=None)
    for iface in EXTRA[:4]:
        card = soft.TEXTUAL_CARD if iface == "text-semantic-search" else soft.VISUAL_CARD
        row = "textual" if iface == "text-semantic-search" else "visual"
        _ne(rec(models, no_pool, row, card, iface), "target event", "no pool population")
    _ne(rec(models, attrs.evolve(world, classification=None), "visual", soft.VISUAL_CARD, "knn-classifier"),
        "target event", "no classification population")


def test_no_target_items_in_the_pool_is_ne(soft, world, models):
    T = soft.CLASSES.index(soft.TARGET)
    w = attrs.evolve(world, pool=soft.without_class(world.pool, T, "soft0/pool-no-target"))
    for iface in EXTRA[:3]:
        _ne(rec(models, w, "visual", soft.VISUAL_CARD, iface), "target event", "no target-class items")
    for iface in ("clip-score-filtering", "clipscore-caption-eval", "text-semantic-search"):
        _ne(rec(models, w, "textual", soft.TEXTUAL_CARD, iface), "target event", "no target-class items")


def test_text_channel_without_source_captions_is_ne(soft, world, models):
    Sr = soft.CLASSES.index(soft.SOURCE)
    w = attrs.evolve(world, pool=soft.without_class(world.pool, Sr, "soft0/pool-no-source"))
    for iface in ("clip-score-filtering", "clipscore-caption-eval", "text-semantic-search"):
        _ne(rec(models, w, "textual", soft.TEXTUAL_CARD, iface), "target event", "no captions of the source class")
    # the image channel does not need them
    assert rec(models, w, "visual", soft.VISUAL_CARD, "clip-score-filtering")["status"] != "n.e."


def test_knn_classifier_needs_a_train_memory_with_the_target(soft, world, models):
    T = soft.CLASSES.index(soft.TARGET)
    _ne(rec(models, attrs.evolve(world, train=None), "visual", soft.VISUAL_CARD, "knn-classifier"),
        "target event", "no train population")
    w = attrs.evolve(world, train=soft.without_class(world.train, T, "soft0/train-no-target"))
    _ne(rec(models, w, "visual", soft.VISUAL_CARD, "knn-classifier"), "target event", "never predict the target")
    _ne(rec(models, world, "visual", soft.VISUAL_CARD, "knn-classifier", options={"k": 33}), "target event",
        "exceed the 32 labelled train images")


def test_k_larger_than_the_pool_is_ne(soft, world, models):
    _ne(rec(models, world, "visual", soft.VISUAL_CARD, "image-knn-retrieval", options={"k": 32}),
        "target event", "do not fit the pool")
    assert rec(models, world, "visual", soft.VISUAL_CARD, "image-knn-retrieval",
               options={"k": 31})["metrics"]["h@k"] == 1.0


@pytest.mark.parametrize("iface,opts,key", [
    ("clip-score-filtering", {"mode": "median"}, "mode"),
    ("clip-score-filtering", {"fraction": 0.0}, "fraction"),
    ("clip-score-filtering", {"threshold": 1.5}, "threshold"),
    ("clip-score-filtering", {"threshold": float("nan")}, "threshold"),
    ("clipscore-caption-eval", {"weight": -1}, "weight"),
    ("image-knn-retrieval", {"k": 0}, "k"),
    ("image-knn-retrieval", {"k": 2.5}, "k"),
    ("knn-classifier", {"weighting": "softmax"}, "weighting"),
    ("knn-classifier", {"k": True}, "k"),
])
def test_bad_option_values_are_errors_naming_the_key(soft, world, models, iface, opts, key):
    r = rec(models, world, "visual", soft.VISUAL_CARD, iface, options=opts)
    assert r["status"] == "error" and r["value"] is None
    assert f"interface_options.{iface}.{key}: must be" in r["reason"], r["reason"]


def test_unknown_options_are_refused(soft, world, models):
    r = rec(models, world, "visual", soft.VISUAL_CARD, "knn-classifier", options={"temperature": 0.07})
    assert r["status"] == "error"
    assert "interface_options.knn-classifier: unknown option(s) temperature" in r["reason"]


def test_cards_are_complete_and_ordered_after_the_builtins():
    reg = get_registry()
    ifaces = reg.all("interfaces")
    metrics = reg.all("metrics")
    orders = []
    for name in EXTRA:
        card = ifaces[name].card
        assert reg.owner("interfaces", name) == "dife-interfaces-extra"
        assert card.short_title and len(card.short_title.split()) <= 4
        assert 110 <= card.order <= 150
        orders.append(card.order)
        assert set(card.option_docs) == set(card.options) and card.options
        assert card.target_event and card.population and card.description
        assert card.relative == (card.reference is not None and card.metric.startswith("delta_"))
        for m in (card.metric, *card.extra_metrics):
            assert m in metrics, (name, m)
    assert orders == sorted(orders) and len(set(orders)) == 5
    from dife_core.builtins.interfaces import BUILTIN_INTERFACES

    assert max(ifaces[n].card.order for n in BUILTIN_INTERFACES) < min(orders)
    defaults = {n: ifaces[n].card.options for n in EXTRA}
    assert defaults["clip-score-filtering"] == {"mode": "top-fraction", "threshold": 0.28, "fraction": 0.3}
    assert defaults["clipscore-caption-eval"] == {"weight": 2.5}
    assert defaults["image-knn-retrieval"] == defaults["text-semantic-search"] == {"k": 10}
    assert defaults["knn-classifier"] == {"k": 10, "weighting": "cosine"}


def test_importing_the_plugin_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; import dife_interfaces_extra.plugin; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
