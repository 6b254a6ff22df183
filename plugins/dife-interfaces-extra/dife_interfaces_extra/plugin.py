"""DIFE hook implementations of dife-interfaces-extra: five deployment
interfaces beyond the paper's, and the metrics their cards name.

Cards are data; each evaluator imports its module (and torch) only when a
cell runs, so ``dife interfaces`` stays light. Definitions: docs/interfaces.md.
"""

from __future__ import annotations

from dife_core import hookimpl
from dife_core.types import Interface, InterfaceCard, Metric

# -- evaluators (imported lazily) ------------------------------------------------------------


def _filtering(ctx):
    from .filtering import evaluate

    return evaluate(ctx)


def _clipscore(ctx):
    from .clipscore import evaluate

    return evaluate(ctx)


def _image_knn(ctx):
    from .search import evaluate_image_knn

    return evaluate_image_knn(ctx)


def _text_search(ctx):
    from .search import evaluate_text_search

    return evaluate_text_search(ctx)


def _knn_classifier(ctx):
    from .knn_classifier import evaluate

    return evaluate(ctx)


# -- cards -----------------------------------------------------------------------------------

_SEARCH_METRICS = ("h@k", "p@k", "mrr", "clean_h@k", "clean_p@k", "delta_p@k", "delta_mrr")

CARDS = (
    (InterfaceCard(
        name="clip-score-filtering", title="CLIP-score data filtering", short_title="data filter",
        readout="score", trigger_channels=("image", "text"),
        target_event="a mismatched pair passes the filter: a triggered non-target image with a target-class "
                     "caption, or a triggered caption with a target-class image",
        population="pool", reference="the same pairs without the trigger", metric="delta_pass_rate",
        extra_metrics=("pass_rate", "reference_pass_rate", "true_pair_pass_rate", "target_pair_pass_rate",
                       "threshold"), relative=True, decision="cut",
        order=110,
        options={"mode": "top-fraction", "threshold": 0.28, "fraction": 0.3},
        option_docs={
            "mode": "'top-fraction' (keep the best `fraction` of the pool's true pairs; the cut is that score) or "
                    "'threshold' (keep cos >= `threshold`)",
            "threshold": "cosine cut of mode 'threshold' (LAION-5B's English cut with ViT-B/32: 0.28; "
                         "LAION-400M used 0.3); a tiny model's cosines live on another scale",
            "fraction": "kept share of the pool's true pairs in mode 'top-fraction' (DataComp's CLIP-score "
                        "baseline keeps the top 30 %)",
        },
        description="A pair passes when cos(image, caption) >= the cut; the cut is fixed per filter from the "
                    "pool's true pairs (top fraction) or given (threshold). ΔPass = pass rate of the triggered "
                    "mismatched pairs − the same pairs without the trigger; clean utility = the true pairs' "
                    "pass rate."),
     _filtering),
    (InterfaceCard(
        name="clipscore-caption-eval", title="CLIPScore caption evaluation", short_title="CLIPScore",
        readout="score", trigger_channels=("image", "text"),
        target_event="a target-concept caption scores a higher CLIPScore than the image's true caption",
        population="pool", reference=None, metric="win_rate",
        extra_metrics=("clean_input_win_rate", "delta_clipscore", "true_clipscore"), order=120,
        options={"weight": 2.5},
        option_docs={"weight": "w of CLIPScore = w·max(cos, 0) (Hessel et al. 2021: 2.5)"},
        description="Image channel: triggered non-target pool images, each target-class caption vs the image's "
                    "own caption; text channel: target-class images, each triggered attacker caption vs the "
                    "image's own caption. Win = strictly higher CLIPScore."),
     _clipscore),
    (InterfaceCard(
        name="image-knn-retrieval", title="image-to-image kNN retrieval", short_title="image kNN search",
        readout="image-features", trigger_channels=("image",),
        target_event="a target-class image is among the K nearest pool images of a triggered non-target query",
        population="pool", reference="clean query", metric="delta_h@k",
        extra_metrics=_SEARCH_METRICS, relative=True, order=130,
        options={"k": 10}, option_docs={"k": "neighbours returned per query (K of H@K and P@K)"},
        description="Queries: non-target pool images, triggered vs clean; gallery: the clean pool images "
                    "without the query's own item; cosine of frozen image features."),
     _image_knn),
    (InterfaceCard(
        name="text-semantic-search", title="text-to-text semantic search", short_title="text search",
        readout="text-features", trigger_channels=("text",),
        target_event="a target-concept caption is among the K nearest pool captions of a triggered query",
        population="pool", reference="clean query", metric="delta_h@k",
        extra_metrics=_SEARCH_METRICS, relative=True, order=140,
        options={"k": 10}, option_docs={"k": "neighbours returned per query (K of H@K and P@K)"},
        description="Queries: the source class's pool captions (every non-target caption without a source), "
                    "triggered vs clean; gallery: the clean pool captions without the query's own item; "
                    "cosine of text features only."),
     _text_search),
    (InterfaceCard(
        name="knn-classifier", title="kNN classifier on frozen image features", short_title="kNN head",
        readout="image-features", trigger_channels=("image",),
        target_event="a kNN classifier on frozen image features predicts the target for a triggered non-target "
                     "image",
        population="classification", reference=None, metric="ts", extra_metrics=("clean_acc", "clean_input_ts"),
        order=150,
        options={"k": 10, "weighting": "cosine"},
        option_docs={"k": "neighbours that vote",
                     "weighting": "'cosine' (each neighbour votes with its cosine) or 'uniform' (one vote each)"},
        description="Memory: the audited model's features of the clean train images; a test image's k most "
                    "similar train images vote; TS over triggered non-target test images."),
     _knn_classifier),
)


@hookimpl
def register_interfaces(register):
    for card, evaluate in CARDS:
        register(Interface(card=card, evaluate=evaluate))


@hookimpl
def register_metrics(register):
    from .metrics import catalogue

    for name, (label, formula, fn, higher) in catalogue().items():
        register(Metric(name=name, label=label, formula=formula, compute=fn, higher_is_better=higher))
