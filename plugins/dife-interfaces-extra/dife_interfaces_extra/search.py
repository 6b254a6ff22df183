"""Single-tower nearest-neighbour search over the pool.

* image-knn-retrieval: frozen image features, image -> image (near-duplicate
  search); queries are triggered non-target pool images, the gallery is the
  clean pool images.
* text-semantic-search: text features only, text -> text (query expansion,
  prompt deduplication); queries are triggered attacker captions, the
  gallery is the clean pool captions.

The query's own item is left out of its gallery (it is the near-duplicate a
clean query finds first). Targets: the target-class items. Relative to the
same queries without the trigger.
"""

from __future__ import annotations

from . import common as C


def _k(ctx, n_gallery: int) -> int:
    from dife_core.engine.cells import NotEvaluable

    k = C.int_option(ctx, C.options(ctx), "k")
    if k > n_gallery - 1:
        raise NotEvaluable(f"k = {k} neighbours do not fit the pool: {n_gallery - 1} items besides the query")
    return k


def _result(ctx, trig, ref, k: int, condition: str, n: int, what: str):
    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult

    mt, mr = C.search_metrics(*trig, k), C.search_metrics(*ref, k)
    m = dict(mt)
    for key, v in mr.items():
        m[f"clean_{key}"] = v
        m[f"delta_{key}"] = M.delta(mt[key], v)
    m["k"] = k
    m["n_queries"] = n
    return CellResult(value=m["delta_h@k"], metrics=m, per_item=C.hits(trig[0], k),
                      per_item_reference=C.hits(ref[0], k),
                      reference={"condition": condition, **mr}, notes=f"k = {k}; queries: {what}")


def evaluate_image_knn(ctx):
    pool, labels = C.pool_of(ctx)
    k = _k(ctx, len(pool))
    C.target_items(ctx, labels, "target-class image to retrieve")
    q = C.attacker_images(ctx, labels)
    positive = labels == ctx.target_index
    gallery = ctx.image_features(pool)
    trig = C.neighbour_ranks(ctx.image_features(pool, triggered=True)[q], gallery, positive, q, k,
                             chunk=ctx.ranking_chunk)
    ref = C.neighbour_ranks(gallery[q], gallery, positive, q, k, chunk=ctx.ranking_chunk)
    return _result(ctx, trig, ref, k, "clean query, same model", int(q.numel()), "non-target pool images")


def evaluate_text_search(ctx):
    pool, labels = C.pool_of(ctx)
    k = _k(ctx, len(pool))
    C.target_items(ctx, labels, "target-concept text to retrieve")
    q = C.attacker_texts(ctx, labels)
    caps = C.captions(pool, q)
    positive = labels == ctx.target_index
    ref_model, ref_trig, _ = C.reference_side(ctx)
    condition = "clean reference model, same query" if ctx.channel == "none" else "clean query, same model"

    def ranks(model, triggered):
        gallery = ctx.text_features(pool.captions, model=model)
        return C.neighbour_ranks(ctx.text_features(caps, triggered=triggered, model=model), gallery, positive, q,
                                 k, chunk=ctx.ranking_chunk)

    what = "source-class captions" if ctx.source_index is not None else "non-target captions"
    return _result(ctx, ranks(ctx.model, True), ranks(ref_model, ref_trig),
                   k, condition, int(q.numel()), what)
