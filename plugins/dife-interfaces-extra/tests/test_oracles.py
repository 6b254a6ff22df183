"""Each extra interface against an independent plain-Python oracle, on the
non-saturated soft world: rates strictly between 0 and 1, so a changed
definition (a tie rule, the cut, the query's own item, k, the weighting)
changes the number."""

import math

import pytest

from dife_core.engine.evaluate import evaluate_cell

TOL = 1e-5


def cell(models, world, row, card, iface, **kw):
    return evaluate_cell(models[row], models["clean"], world, card, iface, **kw)


def _mid(x):
    assert 0.0 < x < 1.0, x


def _idx(labels, pred):
    return [i for i, y in enumerate(labels) if pred(int(y))]


# -- clip-score-filtering ----------------------------------------------------------------------

@pytest.mark.parametrize("opts", [{}, {"fraction": 0.5}, {"mode": "threshold", "threshold": 0.6}])
def test_filtering_image_channel_matches_the_oracle(soft, world, models, oracle, opts):
    pool, m = world.pool, models["visual"]
    T = soft.CLASSES.index(soft.TARGET)
    img, cap = oracle.images(m, pool.images), oracle.texts(m, pool.captions)
    timg = oracle.images(m, soft.patch(pool.images))
    att, tgt = _idx(pool.labels, lambda y: y != T), _idx(pool.labels, lambda y: y == T)
    full = {"mode": "top-fraction", "threshold": 0.28, "fraction": 0.3, **opts}
    o_t = oracle.filtering(img, cap, [timg[i] for i in att], [cap[j] for j in tgt], **full)
    o_c = oracle.filtering(img, cap, [img[i] for i in att], [cap[j] for j in tgt], **full)
    rec = cell(models, world, "visual", soft.VISUAL_CARD, "clip-score-filtering", options=opts)
    mt = rec["metrics"]
    assert rec["channel"] == "image" and rec["metric"] == "delta_pass_rate"
    assert mt["pass_rate"] == pytest.approx(o_t["pass_rate"], abs=TOL)
    assert mt["reference_pass_rate"] == pytest.approx(o_c["pass_rate"], abs=TOL)
    assert rec["value"] == pytest.approx(o_t["pass_rate"] - o_c["pass_rate"], abs=TOL)
    assert mt["threshold"] == pytest.approx(o_t["threshold"], abs=TOL)
    assert mt["true_pair_pass_rate"] == pytest.approx(o_t["true_rate"], abs=TOL)
    assert mt["target_pair_pass_rate"] == pytest.approx(
        oracle.mean(1.0 if oracle.cos(img[j], cap[j]) >= o_t["threshold"] else 0.0 for j in tgt), abs=TOL)
    assert rec["reference"]["condition"] == "clean input, same model"
    _mid(mt["pass_rate"])
    if full["mode"] == "top-fraction":  # a true pair at the cut passes: exactly ceil(f·N) of N
        n = len(pool)
        assert mt["true_pair_pass_rate"] == pytest.approx(math.ceil(full["fraction"] * n) / n)


def test_filtering_text_channel_pairs_triggered_source_captions_with_target_images(soft, world, models, oracle):
    pool, m = world.pool, models["textual"]
    T, Sr = soft.CLASSES.index(soft.TARGET), soft.CLASSES.index(soft.SOURCE)
    img, cap = oracle.images(m, pool.images), oracle.texts(m, pool.captions)
    src = _idx(pool.labels, lambda y: y == Sr)
    tgt = _idx(pool.labels, lambda y: y == T)
    caps = [pool.captions[i] for i in src]
    o_t = oracle.filtering(img, cap, oracle.texts(m, soft.prefix(caps)), [img[j] for j in tgt])
    o_c = oracle.filtering(img, cap, oracle.texts(m, caps), [img[j] for j in tgt])
    rec = cell(models, world, "textual", soft.TEXTUAL_CARD, "clip-score-filtering")
    assert rec["channel"] == "text"
    assert rec["metrics"]["n_attacker_items"] == len(src) and rec["metrics"]["n_pairs"] == len(src) * len(tgt)
    assert rec["metrics"]["pass_rate"] == pytest.approx(o_t["pass_rate"], abs=TOL)
    assert rec["value"] == pytest.approx(o_t["pass_rate"] - o_c["pass_rate"], abs=TOL)
    _mid(rec["metrics"]["pass_rate"])


def test_filtering_without_a_trigger_compares_with_the_clean_filter(soft, world, models, oracle):
    """Channel ``none`` (natural text): the reference is the clean model on the same pairs, with its own cut."""
    pool = world.pool
    T, Sr = soft.CLASSES.index(soft.TARGET), soft.CLASSES.index(soft.SOURCE)
    src, tgt = _idx(pool.labels, lambda y: y == Sr), _idx(pool.labels, lambda y: y == T)
    caps = [pool.captions[i] for i in src]
    models = {**models, "natural": soft.SoftEncoder("textual-strong")}  # its clean captions embed elsewhere
    out = {}
    for row in ("natural", "clean"):
        m = models[row]
        img, cap = oracle.images(m, pool.images), oracle.texts(m, pool.captions)
        out[row] = oracle.filtering(img, cap, oracle.texts(m, caps), [img[j] for j in tgt], mode="threshold",
                                    threshold=0.1)
    rec = cell(models, world, "natural", soft.NATURAL_CARD, "clip-score-filtering",
               options={"mode": "threshold", "threshold": 0.1})
    assert rec["channel"] == "none"
    assert rec["reference"]["condition"] == "clean reference model, same inputs"
    assert rec["metrics"]["reference_pass_rate"] == pytest.approx(out["clean"]["pass_rate"], abs=TOL)
    assert rec["value"] == pytest.approx(out["natural"]["pass_rate"] - out["clean"]["pass_rate"], abs=TOL)
    assert rec["value"] != 0.0  # the same model on the same pairs would give 0


# -- clipscore-caption-eval ----------------------------------------------------------------------

@pytest.mark.parametrize("w", [2.5, 1.0])
def test_clipscore_image_channel_matches_the_oracle(soft, world, models, oracle, w):
    pool, m = world.pool, models["visual"]
    T = soft.CLASSES.index(soft.TARGET)
    img, cap = oracle.images(m, pool.images), oracle.texts(m, pool.captions)
    timg = oracle.images(m, soft.patch(pool.images))
    att, tgt = _idx(pool.labels, lambda y: y != T), _idx(pool.labels, lambda y: y == T)
    cands = [cap[j] for j in tgt]
    win, s_t = oracle.clipscore_wins([timg[i] for i in att], [cap[i] for i in att], cands, w)
    base, s_c = oracle.clipscore_wins([img[i] for i in att], [cap[i] for i in att], cands, w)
    opts = {} if w == 2.5 else {"weight": w}
    rec = cell(models, world, "visual", soft.VISUAL_CARD, "clipscore-caption-eval", options=opts)
    assert rec["value"] == pytest.approx(win, abs=TOL) and rec["baseline"] == pytest.approx(base, abs=TOL)
    assert rec["metrics"]["delta_clipscore"] == pytest.approx(oracle.mean(a - b for a, b in zip(s_t, s_c)), abs=TOL)
    assert rec["metrics"]["true_clipscore"] == pytest.approx(
        oracle.mean(oracle.clipscore(a, b, w) for a, b in zip(img, cap)), abs=TOL)
    _mid(win)
    # the true caption is scored on the triggered image too: scoring it on the clean image differs here
    stale = oracle.mean(1.0 if oracle.clipscore(timg[i], c, w) > oracle.clipscore(img[i], cap[i], w) else 0.0
                        for i in att for c in cands)
    assert stale != pytest.approx(win, abs=TOL)


def test_clipscore_weight_scales_scores_but_not_wins(soft, world, models):
    a = cell(models, world, "visual", soft.VISUAL_CARD, "clipscore-caption-eval")
    b = cell(models, world, "visual", soft.VISUAL_CARD, "clipscore-caption-eval", options={"weight": 1.0})
    assert a["value"] == b["value"]
    assert a["metrics"]["delta_clipscore"] == pytest.approx(2.5 * b["metrics"]["delta_clipscore"], rel=1e-5)


def test_clipscore_text_channel_matches_the_oracle(soft, world, models, oracle):
    pool, m = world.pool, models["textual"]
    T, Sr = soft.CLASSES.index(soft.TARGET), soft.CLASSES.index(soft.SOURCE)
    img, cap = oracle.images(m, pool.images), oracle.texts(m, pool.captions)
    src, tgt = _idx(pool.labels, lambda y: y == Sr), _idx(pool.labels, lambda y: y == T)
    caps = [pool.captions[i] for i in src]
    win, _ = oracle.clipscore_wins([img[j] for j in tgt], [cap[j] for j in tgt], oracle.texts(m, soft.prefix(caps)))
    base, _ = oracle.clipscore_wins([img[j] for j in tgt], [cap[j] for j in tgt], oracle.texts(m, caps))
    rec = cell(models, world, "textual", soft.TEXTUAL_CARD, "clipscore-caption-eval")
    assert rec["channel"] == "text"
    assert rec["value"] == pytest.approx(win, abs=TOL) and rec["baseline"] == pytest.approx(base, abs=TOL)
    assert rec["metrics"]["n_images"] == len(tgt) and rec["metrics"]["n_pairs"] == len(tgt) * len(src)
    _mid(win)


def test_clipscore_tie_at_zero_is_no_win(soft):
    import torch

    from dife_interfaces_extra.clipscore import _pairs

    img = torch.tensor([[1.0, 0.0]])
    own = torch.tensor([[-1.0, 0.0]])  # cos -1 -> CLIPScore 0
    cands = torch.tensor([[0.0, 1.0], [-0.6, 0.8], [0.6, 0.8]])  # 0, clipped 0, 1.5
    wins, mean_scores = _pairs(img, own, cands, 2.5, 16)
    assert wins.tolist() == [pytest.approx(1 / 3)]
    assert mean_scores.tolist() == [pytest.approx(0.5)]  # (0 + 0 + 1.5) / 3


# -- nearest-neighbour search ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [10, 3])
def test_image_knn_matches_the_oracle(soft, world, models, oracle, k):
    pool, m = world.pool, models["visual"]
    T = soft.CLASSES.index(soft.TARGET)
    img = oracle.images(m, pool.images)
    timg = oracle.images(m, soft.patch(pool.images))
    q = _idx(pool.labels, lambda y: y != T)
    is_t = [int(y) == T for y in pool.labels]
    o_t = oracle.search([timg[i] for i in q], q, img, is_t, k)
    o_c = oracle.search([img[i] for i in q], q, img, is_t, k)
    rec = cell(models, world, "visual", soft.VISUAL_CARD, "image-knn-retrieval",
               options={} if k == 10 else {"k": k})
    mt = rec["metrics"]
    assert mt["k"] == k and rec["metric"] == "delta_h@k"
    for key in ("h@k", "p@k", "mrr"):
        assert mt[key] == pytest.approx(o_t[key], abs=TOL), key
        assert mt[f"clean_{key}"] == pytest.approx(o_c[key], abs=TOL), key
        assert rec["reference"][key] == pytest.approx(o_c[key], abs=TOL), key
    assert rec["value"] == pytest.approx(o_t["h@k"] - o_c["h@k"], abs=TOL)
    assert rec["reference"]["condition"] == "clean query, same model"
    _mid(mt["p@k"])
    _mid(mt["clean_h@k"])
    # the query's own (clean) image is no neighbour: keeping it would change the clean ranking
    kept = oracle.search([img[i] for i in q], q, img, is_t, k, exclude_own=False)
    assert kept["mrr"] != pytest.approx(o_c["mrr"], abs=TOL)


def test_text_search_matches_the_oracle(soft, world, models, oracle):
    pool, m = world.pool, models["textual"]
    T, Sr = soft.CLASSES.index(soft.TARGET), soft.CLASSES.index(soft.SOURCE)
    cap = oracle.texts(m, pool.captions)
    q = _idx(pool.labels, lambda y: y == Sr)
    caps = [pool.captions[i] for i in q]
    is_t = [int(y) == T for y in pool.labels]
    for k in (10, 4):
        o_t = oracle.search(oracle.texts(m, soft.prefix(caps)), q, cap, is_t, k)
        o_c = oracle.search(oracle.texts(m, caps), q, cap, is_t, k)
        rec = cell(models, world, "textual", soft.TEXTUAL_CARD, "text-semantic-search", options={"k": k})
        mt = rec["metrics"]
        assert rec["channel"] == "text" and mt["n_queries"] == len(q)
        for key in ("h@k", "p@k", "mrr"):
            assert mt[key] == pytest.approx(o_t[key], abs=TOL), (k, key)
            assert mt[f"clean_{key}"] == pytest.approx(o_c[key], abs=TOL), (k, key)
        assert rec["value"] == pytest.approx(o_t["h@k"] - o_c["h@k"], abs=TOL)
        _mid(mt["p@k"])


def test_text_search_without_a_trigger_compares_with_the_clean_model(soft, world, models, oracle):
    pool = world.pool
    T, Sr = soft.CLASSES.index(soft.TARGET), soft.CLASSES.index(soft.SOURCE)
    q = _idx(pool.labels, lambda y: y == Sr)
    is_t = [int(y) == T for y in pool.labels]
    models = {**models, "natural": soft.SoftEncoder("textual-strong")}
    out = {}
    for row in ("natural", "clean"):
        m = models[row]
        out[row] = oracle.search(oracle.texts(m, [pool.captions[i] for i in q]), q, oracle.texts(m, pool.captions),
                                 is_t, 4)
    rec = cell(models, world, "natural", soft.NATURAL_CARD, "text-semantic-search", options={"k": 4})
    assert rec["channel"] == "none" and rec["reference"]["condition"] == "clean reference model, same query"
    for key in ("h@k", "p@k", "mrr"):
        assert rec["metrics"][key] == pytest.approx(out["natural"][key], abs=TOL)
        assert rec["metrics"][f"clean_{key}"] == pytest.approx(out["clean"][key], abs=TOL)
    assert rec["metrics"]["delta_mrr"] != 0.0


def test_text_search_without_a_source_queries_every_non_target_caption(soft, world, models, oracle):
    card = {**soft.TEXTUAL_CARD, "source": None}
    pool, m = world.pool, models["textual"]
    T = soft.CLASSES.index(soft.TARGET)
    cap = oracle.texts(m, pool.captions)
    q = _idx(pool.labels, lambda y: y != T)
    is_t = [int(y) == T for y in pool.labels]
    o_t = oracle.search(oracle.texts(m, soft.prefix([pool.captions[i] for i in q])), q, cap, is_t, 10)
    rec = cell(models, world, "textual", card, "text-semantic-search")
    assert rec["metrics"]["n_queries"] == len(q)
    assert rec["metrics"]["h@k"] == pytest.approx(o_t["h@k"], abs=TOL)


def test_ties_count_against_the_target(soft):
    import torch

    from dife_interfaces_extra.common import neighbour_ranks

    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # item 3: the query's own
    positive = torch.tensor([True, False, False, False])
    ranks, prec = neighbour_ranks(torch.tensor([[1.0, 0.0]]), gallery, positive, torch.tensor([3]), 1)
    assert ranks.tolist() == [2] and prec.tolist() == [0.0]  # a tie with a non-target: the non-target first
    ranks, prec = neighbour_ranks(torch.tensor([[1.0, 0.0]]), gallery, positive, torch.tensor([3]), 2)
    assert prec.tolist() == [0.5]


# -- knn-classifier -----------------------------------------------------------------------------------

@pytest.mark.parametrize("opts", [{}, {"k": 3}, {"weighting": "uniform"}, {"k": 4, "weighting": "uniform"}])
def test_knn_classifier_matches_the_oracle(soft, world, models, oracle, opts):
    m = models["visual"]
    T = soft.CLASSES.index(soft.TARGET)
    full = {"k": 10, "weighting": "cosine", **opts}
    memory = oracle.images(m, world.train.images)
    ytr = [int(y) for y in world.train.labels]
    test = world.classification
    x, xt = oracle.images(m, test.images), oracle.images(m, soft.patch(test.images))
    nt = _idx(test.labels, lambda y: y != T)

    def pred(v):
        return oracle.knn_predict(v, memory, ytr, len(soft.CLASSES), full["k"], full["weighting"])

    ts = oracle.mean(1.0 if pred(xt[i]) == T else 0.0 for i in nt)
    base = oracle.mean(1.0 if pred(x[i]) == T else 0.0 for i in nt)
    acc = oracle.mean(1.0 if pred(v) == int(y) else 0.0 for v, y in zip(x, test.labels))
    rec = cell(models, world, "visual", soft.VISUAL_CARD, "knn-classifier", options=opts)
    assert rec["value"] == pytest.approx(ts) and rec["baseline"] == pytest.approx(base)
    assert rec["metrics"]["clean_acc"] == pytest.approx(acc)
    assert rec["metrics"]["k"] == full["k"]
    _mid(ts)
    _mid(acc)


def test_knn_classifier_options_change_the_head(soft, world, models):
    values = {(k, wt): cell(models, world, "visual", soft.VISUAL_CARD, "knn-classifier",
                            options={"k": k, "weighting": wt})["value"]
              for k in (1, 10) for wt in ("cosine", "uniform")}
    assert len(set(values.values())) > 1, values
