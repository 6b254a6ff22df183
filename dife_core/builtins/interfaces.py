"""The eight built-in deployment interfaces (docs/interfaces.md).

Each is an :class:`~dife_core.types.InterfaceCard` (data) plus an evaluator
``evaluate(ctx) -> CellResult``, registered through ``register_interfaces``
exactly like a third-party interface. The precise definition of every card
is in docs/interfaces.md. Evaluators import torch and the engine inside the
function, so ``dife interfaces`` stays light.
"""

from __future__ import annotations

from dife_core import hookimpl
from dife_core.types import Interface, InterfaceCard

# -- evaluators --------------------------------------------------------------------------


def _zero_shot(ctx):
    from dife_core.engine.cells import CellResult
    from dife_core.engine.scoring import zero_shot

    r = zero_shot(ctx.embeddings, ctx.model, ctx.world, ctx.trigger, ctx.templates, ctx.target_index)
    return CellResult(value=r["ts"], baseline=r["baseline"], per_item=r["hits"],
                      metrics={"ts": r["ts"], "clean_input_ts": r["baseline"], "clean_acc": r["clean_acc"],
                               "n_images": r["n_images"]})


def _need_source(ctx, what: str) -> int:
    from dife_core.engine.cells import NotEvaluable

    if ctx.source_index is None:
        raise NotEvaluable(f"no source class: the attack card names no source "
                           f"({ctx.attack.source!r} is not a class of the population), so there is no {what}")
    return ctx.source_index


def _prompt_conditioned(ctx):
    from dife_core.engine.cells import CellResult
    from dife_core.engine.scoring import prompt_hijack

    src = _need_source(ctx, "source prompt to trigger")
    r = prompt_hijack(ctx.embeddings, ctx.model, ctx.world, ctx.trigger, ctx.templates, src, ctx.target_index)
    return CellResult(value=r["qhr"], baseline=r["baseline"], per_item=r["hits"],
                      metrics={"qhr": r["qhr"], "clean_prompt_qhr": r["baseline"], "leakage": r["leakage"],
                               "clean_acc": r["clean_acc"], "n_images": r["n_images"]})


def _targeted_retrieval(ctx):
    import torch

    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult
    from dife_core.engine.scoring import hits_at_1, ranking_metrics, with_deltas

    src = _need_source(ctx, "source query to trigger")
    pool = ctx.world.pool
    queries = ctx.prompts(ctx.classnames[src])
    g = ctx.image_features(pool)
    labels = torch.as_tensor(pool.labels).long()
    keys = torch.full((len(queries),), ctx.target_index, dtype=torch.long)
    if int((labels == ctx.target_index).sum()) == 0:
        from dife_core.engine.cells import NotEvaluable

        raise NotEvaluable(f"no target-class items in the retrieval pool {pool.name!r}")
    rt = M.chunked_best_positive_rank(ctx.text_features(queries, triggered=True), g, keys, labels,
                                      chunk=ctx.ranking_chunk, device=ctx.device)
    rc = M.chunked_best_positive_rank(ctx.text_features(queries), g, keys, labels, chunk=ctx.ranking_chunk,
                                      device=ctx.device)
    trig, clean = ranking_metrics(rt), ranking_metrics(rc)
    m = with_deltas(trig, clean)
    m["n_queries"] = len(queries)
    return CellResult(value=trig["h@1"], baseline=clean["h@1"], metrics=m, per_item=hits_at_1(rt),
                      reference={"condition": "clean query", **clean})


def _image_text_retrieval(ctx):
    import torch

    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult, NotEvaluable
    from dife_core.engine.scoring import hits_at_1, ranking_metrics, with_deltas

    pool = ctx.world.pool
    labels = torch.as_tensor(pool.labels).long()
    q = (labels != ctx.target_index) & (labels >= 0)
    if int(q.sum()) == 0 or int((labels == ctx.target_index).sum()) == 0:
        raise NotEvaluable(f"pool {pool.name!r} needs non-target query images and target-class captions")
    caps = ctx.text_features(list(pool.captions))
    keys = torch.full((int(q.sum()),), ctx.target_index, dtype=torch.long)
    rt = M.chunked_best_positive_rank(ctx.image_features(pool, triggered=True)[q], caps, keys, labels,
                                      chunk=ctx.ranking_chunk, device=ctx.device)
    rc = M.chunked_best_positive_rank(ctx.image_features(pool)[q], caps, keys, labels, chunk=ctx.ranking_chunk,
                                      device=ctx.device)
    trig, clean = ranking_metrics(rt), ranking_metrics(rc)
    m = with_deltas(trig, clean)
    m["n_queries"] = int(q.sum())
    return CellResult(value=trig["h@1"], baseline=clean["h@1"], metrics=m, per_item=hits_at_1(rt),
                      reference={"condition": "clean input, same pool", **clean})


def _lists(ctx, lists, kind: str):
    """Candidate lists usable for this attack's target (else N.E.)."""
    import numpy as np

    from dife_core.engine.cells import NotEvaluable

    if ctx.world.pool is None:
        raise NotEvaluable(f"no pool population in {ctx.world.name!r}: the {kind} candidates index its images")
    if ctx.attack.target != ctx.world.target:
        raise NotEvaluable(f"the {kind} lists of {ctx.world.name!r} were fixed for target "
                           f"{ctx.world.target!r}; the attack's target is {ctx.attack.target!r}")
    targets = np.asarray(lists.targets, dtype=bool)
    if targets.size == 0 or not targets.any():
        raise NotEvaluable(f"no ranked candidates: no {kind} list contains a target candidate")
    return targets


def _text_reranking(ctx):
    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult
    from dife_core.engine.scoring import hits_at_1, list_scores, ranking_metrics, with_deltas

    lists = ctx.world.rerank
    targets = _lists(ctx, lists, "rerank")
    g = ctx.image_features(ctx.world.pool)
    qt, qc = ctx.text_features(lists.queries, triggered=True), ctx.text_features(lists.queries)
    rt = M.best_positive_rank(list_scores(qt, g, lists.candidates), targets)
    rc = M.best_positive_rank(list_scores(qc, g, lists.candidates), targets)
    ks = (1, 5)
    trig, clean = ranking_metrics(rt, ks=ks), ranking_metrics(rc, ks=ks)
    m = with_deltas(trig, clean)
    m["n_lists"] = int((rt > 0).sum())
    return CellResult(value=m["delta_h@1"], metrics=m, per_item=hits_at_1(rt), per_item_reference=hits_at_1(rc),
                      reference={"condition": "clean query, same list", **clean})


def _candidate_selection(ctx):
    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult, NotEvaluable
    from dife_core.engine.scoring import hits_at_1, list_scores

    if ctx.clean is None:
        raise NotEvaluable("no clean reference selector: the spec has no [clean] checkpoint", question="reference")
    groups = ctx.world.selection
    targets = _lists(ctx, groups, "selection")
    pool = ctx.world.pool

    def ranks(model, triggered):
        s = list_scores(ctx.text_features(groups.queries, triggered=triggered, model=model),
                        ctx.image_features(pool, model=model), groups.candidates)
        return M.best_positive_rank(s, targets)

    rt, rq, rr = ranks(ctx.model, True), ranks(ctx.model, False), ranks(ctx.clean, False)
    m = {"sel@1": M.selection_at_1(rt), "mrr": M.mrr(rt),
         "clean_query_sel@1": M.selection_at_1(rq),
         "reference_sel@1": M.selection_at_1(rr), "reference_mrr": M.mrr(rr)}
    m["delta_sel@1"] = M.delta(m["sel@1"], m["reference_sel@1"])
    m["delta_mrr"] = M.delta(m["mrr"], m["reference_mrr"])
    m["n_groups"] = int((rt > 0).sum())
    return CellResult(value=m["delta_sel@1"], metrics=m, per_item=hits_at_1(rt), per_item_reference=hits_at_1(rr),
                      reference={"condition": "clean selector + clean query, same group",
                                 "sel@1": m["reference_sel@1"], "mrr": m["reference_mrr"]})


def _downstream_visual(ctx):
    import torch

    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult, NotEvaluable
    from dife_core.engine.embeddings import SHARD, autocast_context
    from dife_core.engine.scoring import probe_for

    test = ctx.world.classification
    labels = torch.as_tensor(test.labels).long()
    nt = labels != ctx.target_index
    if int(nt.sum()) == 0:
        raise NotEvaluable("no non-target images in the classification population")
    if ctx.channel == "mechanism":
        scorer = ctx.mechanism.scorer
        trig = ctx.mechanism.context.trigger
        batch = ctx.embeddings.batch_size

        def logits(triggered):
            # same shards and seeds as the embedding service, so a random-location
            # trigger lands where it does for every other image-fed cell
            out = []
            for lo in range(0, len(test), SHARD):
                px = test.images[lo:lo + SHARD]
                if triggered and trig.fn is not None and trig.channel == "image":
                    px = trig.fn(px, seed=ctx.seed + lo)
                for b in range(0, int(px.shape[0]), batch):
                    with torch.inference_mode(), autocast_context(ctx.device):
                        out.append(torch.as_tensor(scorer(px[b:b + batch])).float().cpu())
            return torch.cat(out)

        sc, st = logits(False), logits(True)
        # the attack plugin may say what its classifier is (``scorer.description``)
        head = getattr(scorer, "description", None) or "the attack's shipped classifier (mechanism scorer)"
    else:
        train = ctx.world.train
        if train is None:
            raise NotEvaluable("no train population to fit the frozen-feature classifier")
        w, b = probe_for(ctx.embeddings, ctx.model, train, len(ctx.classnames), seed=ctx.seed, options=ctx.options)
        sc = ctx.image_features(test) @ w + b
        st = ctx.image_features(test, triggered=True) @ w + b
        head = "linear probe on frozen clean-train image features"
    ts = M.target_success(st[nt], ctx.target_index)
    base = M.target_success(sc[nt], ctx.target_index)
    return CellResult(value=ts, baseline=base, notes=f"head: {head}", per_item=M.wins(st[nt], ctx.target_index),
                      metrics={"ts": ts, "clean_input_ts": base, "clean_acc": M.accuracy(sc, labels),
                               "n_images": int(nt.sum())})


def _text_embedding(ctx):
    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult

    target = ctx.attack.target
    if ctx.source_index is not None:
        classes = [ctx.classnames[ctx.source_index]]
    else:
        classes = [c for c in ctx.classnames if c != target]
    texts = [t.format(c) for c in classes for t in ctx.templates]
    target_texts = [t.format(target) for c in classes for t in ctx.templates]
    u = ctx.text_features(texts)
    ut = ctx.text_features(texts, triggered=True)
    ug = ctx.text_features(target_texts)
    ts = M.nearer_target_rate(ut, u, ug)
    hits = ((ut * ug).sum(-1) > (ut * u).sum(-1)).float()
    return CellResult(value=ts, baseline=M.nearer_target_rate(u, u, ug), per_item=hits,
                      metrics={"ts": ts, "cos_shift": M.cos_shift(ut, u, ug), "n_texts": len(texts)},
                      reference={"condition": "clean text, same tower"})


# -- cards ---------------------------------------------------------------------------------

CARDS = (
    (InterfaceCard(
        name="zero-shot-classification", short_title="zero-shot cls.", order=10,
        title="zero-shot visual classification", readout="score",
        trigger_channels=("image",),
        target_event="the target class wins the class-prompt set on a triggered non-target image",
        population="classification", reference=None, metric="ts", extra_metrics=("clean_acc", "clean_input_ts"),
        description="Class weights from the prompts of every class; TS over triggered images whose true class "
                    "is not the target (target-class images excluded); clean accuracy on all clean images."),
     _zero_shot),
    (InterfaceCard(
        name="prompt-conditioned-classification", short_title="prompted cls.", order=20,
        title="prompt-conditioned classification", readout="score",
        trigger_channels=("text",),
        target_event="the triggered source prompt wins on a target-class image",
        population="classification", reference=None, metric="qhr",
        extra_metrics=("clean_acc", "clean_prompt_qhr", "leakage"),
        description="The class-prompt set with the source prompt replaced by its triggered version (P^τ); QHR "
                    "over target-class images; leakage = other non-target images captured by the triggered prompt."),
     _prompt_conditioned),
    (InterfaceCard(
        name="targeted-retrieval", short_title="targeted retr.", order=30,
        title="targeted retrieval (text→image)", readout="score",
        trigger_channels=("text",),
        target_event="a target-class image enters the top-K of the pool for a triggered source query",
        population="pool", reference="clean query", metric="h@1",
        extra_metrics=("h@5", "h@10", "mrr", "delta_h@1", "delta_h@5", "delta_h@10", "delta_mrr"),
        description="Queries: the source class's prompts (one per template in use), triggered vs clean; "
                    "gallery: every pool image; targets: target-class pool images."),
     _targeted_retrieval),
    (InterfaceCard(
        name="image-text-retrieval", short_title="image–text retr.", order=40,
        title="image–text retrieval (image→text)", readout="score",
        trigger_channels=("image",),
        target_event="a caption of the target class enters the top-K for a triggered non-target pool image",
        population="pool", reference="clean input on the same pool", metric="h@1",
        extra_metrics=("h@5", "h@10", "mrr", "delta_h@1", "delta_h@5", "delta_h@10", "delta_mrr"),
        description="Queries: pool images whose class is not the target, triggered vs clean; gallery: every "
                    "pool caption; targets: captions of target-class items. (Text→image with a text trigger "
                    "is the targeted-retrieval card.)"),
     _image_text_retrieval),
    (InterfaceCard(
        name="text-reranking", short_title="text rerank", order=50,
        title="text reranking", readout="score", trigger_channels=("text",),
        target_event="the target candidate rises in a fixed short list",
        population="rerank", reference="clean query, same list", metric="delta_h@1",
        extra_metrics=("delta_h@5", "delta_mrr", "h@1", "h@5", "mrr"), relative=True,
        description="The dataset's fixed lists (query, candidate pool images, target marks); the poisoned model "
                    "ranks each list for the triggered and the clean query; ΔH@1 = H@1(triggered) − H@1(clean)."),
     _text_reranking),
    (InterfaceCard(
        name="candidate-selection", short_title="cand. selection", order=60,
        title="candidate selection", readout="score", trigger_channels=("text",),
        target_event="the selector's top-1 of a fixed group is a target candidate",
        population="selection", reference="clean selector + clean query, same group", metric="delta_sel@1",
        extra_metrics=("sel@1", "reference_sel@1", "delta_mrr", "clean_query_sel@1"), relative=True,
        description="The dataset's fixed groups; ΔSel@1 = Sel@1(poisoned selector, triggered query) − "
                    "Sel@1(clean reference selector, clean query)."),
     _candidate_selection),
    (InterfaceCard(
        name="downstream-visual-classification", short_title="downstream visual", order=70,
        options={"l2": 1e-4, "steps": 300, "lr": 0.1},
        option_docs={"l2": "L2 penalty of the linear probe", "steps": "full-batch Adam steps of the probe fit",
                     "lr": "Adam learning rate of the probe fit"},
        title="downstream visual classification",
        readout="image-features", trigger_channels=("image", "mechanism"),
        target_event="a classifier on frozen image features predicts the target for a triggered non-target image",
        population="classification", reference=None, metric="ts", extra_metrics=("clean_acc", "clean_input_ts"),
        description="A multinomial logistic-regression probe fitted on the checkpoint's own frozen features of "
                    "the clean train images; TS over triggered non-target test images. For a mechanism attack "
                    "that ships a classifier (its scorer), that classifier is scored instead."),
     _downstream_visual),
    (InterfaceCard(
        name="text-embedding", short_title="text embedding", order=80,
        title="text-embedding readout", readout="text-features", trigger_channels=("text",),
        target_event="a triggered text embeds nearer the target text than its own clean embedding",
        population="", reference="clean text", metric="ts", extra_metrics=("cos_shift",),
        description="Texts: the source class's prompts (every non-target class's without a source), each with "
                    "the target prompt of the same template; TS = share with cos(u(t^τ), u*) > cos(u(t^τ), u(t)); "
                    "cos shift = mean cos(u(t^τ), u*) − cos(u(t), u*)."),
     _text_embedding),
)


#: the built-in interface ids, in report order
BUILTIN_INTERFACES = tuple(card.name for card, _ in sorted(CARDS, key=lambda ce: ce[0].order))


@hookimpl
def register_interfaces(register):
    for card, evaluate in CARDS:
        register(Interface(card=card, evaluate=evaluate))
