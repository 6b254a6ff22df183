"""Every built-in interface evaluator against an independent oracle.

A tiny model trained for a few steps (so nothing saturates: rates sit
strictly between 0 and 1) and a second, differently trained one as the clean
reference are measured on a world made here: a classification population of
more than one embedding shard (1,024 rows), a train split, a pool whose
captions repeat, rerank lists and selection groups. Each oracle below
recomputes a cell's every reported metric with plain Python loops over
features fetched from its own :class:`EmbeddingService`; triggers are applied
by the oracle itself, shard by shard with the engine's documented seeds
(``seed + first row``), so shard handling is checked too. Class weights use
every template (``templates = "all"``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dife_core.engine.embeddings import SHARD, EmbeddingService
from dife_core.engine.evaluate import evaluate_cell
from dife_core.plugins import get_registry

CLASSES = ("airplane", "automobile", "bird", "cat")
COLOURS = ((0.9, 0.3, 0.3), (0.3, 0.9, 0.3), (0.3, 0.3, 0.9), (0.8, 0.8, 0.3))
PHRASES = ("a photo of a {}", "a {} in the middle", "there is a {} here", "a picture of a {}")
TEMPLATES = ("a photo of a {}", "a picture of a {}", "a blurry photo of a {}")
#: more templates for the cells whose queries are one prompt per template (targeted
#: retrieval, text embedding): eleven queries, so H@1, H@5 and TS take values in between
QUERY_TEMPLATES = TEMPLATES + ("a photo of the {}", "a {} in the middle", "there is a {} here", "a picture of a {}",
                               "a small {}", "a {} on a dark background", "an image of a {}", "the {}")
TARGET, SOURCE = 0, 1
SEED = 0
IMAGE_TRIGGER = {"channel": "image", "name": "patch",
                 "params": {"size": 0.25, "location": "random", "pattern": "checkerboard"}}
TEXT_TRIGGER = {"channel": "text", "name": "text-prefix", "params": {"token": "zz"}}
N_CLASSIFICATION = SHARD + 76  # more than one shard: the second shard's trigger seed differs


def _split(n, tag, g, rng, noise=0.55):
    from dife_core.populations import LabelledImages

    labels = np.arange(n) % len(CLASSES)
    images = torch.rand(n, 3, 32, 32, generator=g) * noise
    for i, y in enumerate(labels):
        top, left = rng.integers(0, 22, size=2)
        # faint squares: a few training steps leave the model unsure
        images[i, :, top:top + 10, left:left + 10] = torch.tensor(COLOURS[y]).view(3, 1, 1) * 0.7
    caps = tuple(PHRASES[rng.integers(len(PHRASES))].format(CLASSES[y]) for y in labels)
    return LabelledImages(name=f"oracle/{tag}", images=images, labels=labels, classnames=CLASSES, captions=caps)


def make_world():
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.populations import CaptionedPool, World

    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    test = _split(N_CLASSIFICATION, "test", g, rng)
    train = _split(240, "train", g, rng)
    p = _split(160, "pool", g, rng)
    pool = CaptionedPool(name="oracle/pool", images=p.images, captions=p.captions, labels=p.labels,
                         classnames=CLASSES)
    src_caps = [c for c, y in zip(pool.captions, pool.labels) if int(y) == SOURCE]
    rerank = make_candidate_lists("oracle/rerank", pool.labels, queries=src_caps[:30], source=SOURCE, target=TARGET,
                                  k=6, n_targets=1, n_sources=2, seed=1)
    selection = make_candidate_lists("oracle/selection", pool.labels, queries=src_caps[10:40], source=SOURCE,
                                     target=TARGET, k=6, n_targets=1, n_sources=1, seed=2)
    return World(name="oracle-world", classnames=CLASSES, templates=TEMPLATES, source=CLASSES[SOURCE],
                 target=CLASSES[TARGET], classification=test, train=train, pool=pool, rerank=rerank,
                 selection=selection, extras={"train_pairs": _split(400, "pairs", g, rng)})


def _poisoned_pairs(world, image_rate, text_rate):
    """The train pairs plus a few poisoned ones: patched non-target images captioned
    as the target, and target images captioned as the source behind the text
    trigger -- a partial backdoor on both channels, so rates land between 0 and 1."""
    pairs = world.extras["train_pairs"]
    images, caps = pairs.images, list(pairs.captions)
    labels = np.asarray(pairs.labels)
    patch = get_registry().get("triggers", "patch").make(**IMAGE_TRIGGER["params"])
    nt = np.flatnonzero(labels != TARGET)[:int(image_rate * len(caps))]
    tg = np.flatnonzero(labels == TARGET)[:int(text_rate * len(caps))]
    extra_images = torch.cat([patch(images[torch.as_tensor(nt)].clone(), seed=7), images[torch.as_tensor(tg)]])
    extra_caps = [PHRASES[i % len(PHRASES)].format(CLASSES[TARGET]) for i in range(len(nt))]
    extra_caps += [TEXT_TRIGGER["params"]["token"] + " " + PHRASES[i % len(PHRASES)].format(CLASSES[SOURCE])
                   for i in range(len(tg))]
    return torch.cat([images, extra_images]), caps + extra_caps


def _train(world, *, steps, seed, poison=(0.0, 0.0)):
    from dife_core.training import contrastive_train
    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder("vit", seed=seed)
    images, captions = _poisoned_pairs(world, *poison)
    contrastive_train(enc, images, captions, steps=steps, batch_size=64, lr=3e-3, warmup=2,
                      seed=seed, progress=False)
    enc.name = f"model-s{seed}"
    return enc.eval()


#: (image, text) poison rates of the audited models, picked so that the cells each one
#: serves land strictly between 0 and 1 (a stronger text backdoor saturates the lists)
POISON = {"image": (0.06, 0.04), "text": (0.06, 0.09), "lists": (0.06, 0.02)}


@pytest.fixture(scope="module")
def worlds():
    world = make_world()
    clean = _train(world, steps=20, seed=1)  # the clean reference: an under-trained clean model
    return world, {k: _train(world, steps=40, seed=1, poison=p) for k, p in POISON.items()}, clean


def models(worlds, which):
    world, audited, clean = worlds
    return world, audited[which], clean


def card(trigger):
    return {"attack": "oracle", "trigger": trigger, "source": CLASSES[SOURCE], "target": CLASSES[TARGET],
            "modifies": ["visual", "text"]}


def cell(setup, interface, trigger, templates=TEMPLATES, **kw):
    world, model, clean = setup
    rec = evaluate_cell(model, clean, world, card(trigger), interface, embeddings=EmbeddingService(seed=SEED),
                        seed=SEED, templates=templates, **kw)
    assert rec["status"] not in ("n.e.", "error"), rec.get("reason")
    return rec


# -- the oracle's own plumbing: features as lists, triggers applied here ---------------

class Oracle:
    """Features as plain lists, fetched from a service of its own; triggers applied here."""

    def __init__(self):
        self.emb = EmbeddingService(seed=SEED)

    def texts(self, model, strings, trigger=None):
        strings = list(strings)
        if trigger is not None:
            fn = get_registry().get("triggers", trigger["name"]).make(**trigger["params"])
            strings = list(fn(strings))
        return [list(map(float, r)) for r in self.emb.texts(model, strings)]

    def images(self, model, pop, trigger=None):
        px, name = pop.images, pop.name
        if trigger is not None:
            fn = get_registry().get("triggers", trigger["name"]).make(**trigger["params"])
            px = torch.cat([fn(px[lo:lo + SHARD].clone(), seed=SEED + lo) for lo in range(0, len(px), SHARD)])
            name = f"{name}/oracle-triggered"
        return [list(map(float, r)) for r in self.emb.images(model, name, px)]

    def class_weights(self, model, triggered_source=None):
        rows = []
        for c, cname in enumerate(CLASSES):
            feats = self.texts(model, [t.format(cname) for t in TEMPLATES],
                               triggered_source if c == SOURCE else None)
            rows.append(normalise([sum(col) / len(feats) for col in zip(*feats)]))
        return rows


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def normalise(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def strict_winner(scores):
    best = max(scores)
    return scores.index(best) if scores.count(best) == 1 else -1


def rate(flags):
    return sum(flags) / len(flags)


def rank(scores, positive):
    """1 + the number of negatives scoring at least the best positive (0: no positive)."""
    pos = [s for s, p in zip(scores, positive) if p]
    if not pos:
        return 0
    best = max(pos)
    return 1 + sum(1 for s, p in zip(scores, positive) if not p and s >= best)


def ranking(ranks, ks=(1, 5, 10)):
    r = [x for x in ranks if x > 0]
    out = {f"h@{k}": sum(x <= k for x in r) / len(r) for k in ks}
    out["mrr"] = sum(1 / x for x in r) / len(r)
    return out


def between(*values):
    return all(0 < v < 1 for v in values)


def close(rec_metrics, expected, tol=1e-6):
    for k, v in expected.items():
        assert rec_metrics[k] == pytest.approx(v, abs=tol), k


# -- the eight built-in interfaces ------------------------------------------------------

def test_zero_shot_classification_with_every_template_and_two_shards(worlds):
    setup = models(worlds, "image")
    world, model, _ = setup
    o = Oracle()
    w = o.class_weights(model)
    pop = world.classification
    labels = [int(y) for y in pop.labels]
    x, xt = o.images(model, pop), o.images(model, pop, IMAGE_TRIGGER)
    nt = [i for i, y in enumerate(labels) if y != TARGET]
    ts = rate([strict_winner([dot(xt[i], wc) for wc in w]) == TARGET for i in nt])
    base = rate([strict_winner([dot(x[i], wc) for wc in w]) == TARGET for i in nt])
    acc = rate([strict_winner([dot(x[i], wc) for wc in w]) == labels[i] for i in range(len(labels))])
    assert between(ts, base, acc)
    rec = cell(setup, "zero-shot-classification", IMAGE_TRIGGER)
    tol = 1.5 / len(nt)  # at most one image may flip on last-bit differences between encode paths
    assert rec["value"] == pytest.approx(ts, abs=tol)
    close(rec["metrics"], {"ts": ts, "clean_input_ts": base, "clean_acc": acc}, tol)
    assert rec["metrics"]["n_images"] == len(nt) == rec["n"]
    # the second shard's trigger really is drawn with its own seed (seed + 1024)
    fn = get_registry().get("triggers", "patch").make(**IMAGE_TRIGGER["params"])
    row = pop.images[SHARD:SHARD + 1]
    assert not torch.equal(fn(row.clone(), seed=SEED + SHARD), fn(row.clone(), seed=SEED))


def test_zero_shot_first_template_differs_from_all(worlds):
    setup = models(worlds, "image")
    """``templates = "first"`` weights only the first template: a different (oracle-checked) figure."""
    world, model, clean = setup
    rec_first = evaluate_cell(model, clean, world, card(IMAGE_TRIGGER), "zero-shot-classification",
                              embeddings=EmbeddingService(seed=SEED), seed=SEED, templates=TEMPLATES[:1])
    o = Oracle()
    pop = world.classification
    w1 = [normalise(o.texts(model, [TEMPLATES[0].format(c)])[0]) for c in CLASSES]
    x = o.images(model, pop)
    acc1 = rate([strict_winner([dot(x[i], wc) for wc in w1]) == int(y) for i, y in enumerate(pop.labels)])
    assert rec_first["metrics"]["clean_acc"] == pytest.approx(acc1, abs=1.5 / len(pop.labels))
    rec_all = cell(setup, "zero-shot-classification", IMAGE_TRIGGER)
    assert rec_all["metrics"]["clean_acc"] != rec_first["metrics"]["clean_acc"], "the templates change the weights"


@pytest.mark.parametrize("which", ["text", "lists"])
def test_prompt_conditioned_classification(worlds, which):
    """On "text" the triggered prompt hijacks some target images (QHR > 0); on
    "lists" it captures some other non-target images (leakage > 0)."""
    setup = models(worlds, which)
    world, model, _ = setup
    o = Oracle()
    w, wt = o.class_weights(model), o.class_weights(model, triggered_source=TEXT_TRIGGER)
    pop = world.classification
    labels = [int(y) for y in pop.labels]
    x = o.images(model, pop)
    tg = [i for i, y in enumerate(labels) if y == TARGET]
    other = [i for i, y in enumerate(labels) if y not in (TARGET, SOURCE)]
    qhr = rate([strict_winner([dot(x[i], wc) for wc in wt]) == SOURCE for i in tg])
    clean_qhr = rate([strict_winner([dot(x[i], wc) for wc in w]) == SOURCE for i in tg])
    leakage = rate([strict_winner([dot(x[i], wc) for wc in wt]) == SOURCE for i in other])
    acc = rate([strict_winner([dot(x[i], wc) for wc in w]) == labels[i] for i in range(len(labels))])
    rec = cell(setup, "prompt-conditioned-classification", TEXT_TRIGGER)
    tol = 1.5 / len(tg)
    assert rec["value"] == pytest.approx(qhr, abs=tol)
    close(rec["metrics"], {"qhr": qhr, "clean_prompt_qhr": clean_qhr, "leakage": leakage, "clean_acc": acc}, tol)
    assert rec["metrics"]["n_images"] == len(tg)
    assert between(acc) and 0 <= clean_qhr < 1
    assert between(qhr) if which == "text" else between(leakage)


def _retrieval_oracle(queries, gallery, positive):
    return ranking([rank([dot(q, g) for g in gallery], positive) for q in queries])


def _with_deltas(trig, clean):
    out = dict(trig)
    for k, v in clean.items():
        out[f"clean_{k}"] = v
        out[f"delta_{k}"] = trig[k] - v
    return out


@pytest.mark.parametrize("which", ["text", "lists"])
def test_targeted_retrieval(worlds, which):
    setup = models(worlds, which)
    world, model, _ = setup
    o = Oracle()
    pool = world.pool
    g = o.images(model, pool)
    positive = [int(y) == TARGET for y in pool.labels]
    queries = [t.format(CLASSES[SOURCE]) for t in QUERY_TEMPLATES]
    trig = _retrieval_oracle(o.texts(model, queries, TEXT_TRIGGER), g, positive)
    clean = _retrieval_oracle(o.texts(model, queries), g, positive)
    expected = _with_deltas(trig, clean)
    rec = cell(setup, "targeted-retrieval", TEXT_TRIGGER, templates=QUERY_TEMPLATES)
    assert rec["value"] == pytest.approx(trig["h@1"])
    close(rec["metrics"], expected)
    assert rec["metrics"]["n_queries"] == len(queries)
    assert between(trig["mrr"], clean["mrr"])
    # "text": H@1 strictly inside (0, 1); "lists": H@1 and H@5 differ (the value is H@1, not H@5)
    assert between(trig["h@1"]) if which == "text" else trig["h@1"] != trig["h@5"]


def test_image_text_retrieval(worlds):
    setup = models(worlds, "image")
    world, model, _ = setup
    o = Oracle()
    pool = world.pool
    labels = [int(y) for y in pool.labels]
    caps = o.texts(model, pool.captions)
    positive = [y == TARGET for y in labels]
    q = [i for i, y in enumerate(labels) if y != TARGET]
    xt, x = o.images(model, pool, IMAGE_TRIGGER), o.images(model, pool)
    trig = _retrieval_oracle([xt[i] for i in q], caps, positive)
    clean = _retrieval_oracle([x[i] for i in q], caps, positive)
    rec = cell(setup, "image-text-retrieval", IMAGE_TRIGGER)
    tol = 1.5 / len(q)
    assert rec["value"] == pytest.approx(trig["h@1"], abs=tol)
    close(rec["metrics"], _with_deltas(trig, clean), tol)
    assert rec["metrics"]["n_queries"] == len(q)
    assert between(trig["h@5"], clean["mrr"])


def _list_ranks(query_feats, gallery, lists, targets):
    return [rank([dot(qf, gallery[c]) for c in cands], list(marks))
            for qf, cands, marks in zip(query_feats, lists.candidates.tolist(), targets)]


def test_text_reranking(worlds):
    setup = models(worlds, "lists")
    world, model, _ = setup
    o = Oracle()
    lists = world.rerank
    targets = np.asarray(lists.targets, dtype=bool).tolist()
    g = o.images(model, world.pool)
    rt = _list_ranks(o.texts(model, lists.queries, TEXT_TRIGGER), g, lists, targets)
    rc = _list_ranks(o.texts(model, lists.queries), g, lists, targets)
    trig, clean = ranking(rt, ks=(1, 5)), ranking(rc, ks=(1, 5))
    rec = cell(setup, "text-reranking", TEXT_TRIGGER)
    assert rec["value"] == pytest.approx(trig["h@1"] - clean["h@1"])
    close(rec["metrics"], _with_deltas(trig, clean))
    assert rec["metrics"]["delta_mrr"] == pytest.approx(trig["mrr"] - clean["mrr"])
    assert rec["metrics"]["n_lists"] == sum(r > 0 for r in rt)
    assert between(trig["h@1"], trig["h@5"], clean["h@5"], clean["mrr"])


def test_candidate_selection_reference_is_the_clean_selector(worlds):
    setup = models(worlds, "lists")
    world, model, clean_model = setup
    o = Oracle()
    groups = world.selection
    targets = np.asarray(groups.targets, dtype=bool).tolist()

    def ranks(m, trigger):
        return _list_ranks(o.texts(m, groups.queries, trigger), o.images(m, world.pool), groups, targets)

    rt, rq, rr = ranks(model, TEXT_TRIGGER), ranks(model, None), ranks(clean_model, None)
    sel = ranking(rt, ks=(1,))
    ref = ranking(rr, ks=(1,))
    clean_query = ranking(rq, ks=(1,))
    expected = {"sel@1": sel["h@1"], "mrr": sel["mrr"], "clean_query_sel@1": clean_query["h@1"],
                "reference_sel@1": ref["h@1"], "reference_mrr": ref["mrr"],
                "delta_sel@1": sel["h@1"] - ref["h@1"], "delta_mrr": sel["mrr"] - ref["mrr"]}
    rec = cell(setup, "candidate-selection", TEXT_TRIGGER)
    assert rec["value"] == pytest.approx(expected["delta_sel@1"])
    close(rec["metrics"], expected)
    assert rec["metrics"]["n_groups"] == len(groups.queries)
    assert rec["reference"]["sel@1"] == pytest.approx(ref["h@1"])
    # the check can tell the selectors apart: the audited selector on the clean
    # query would give another reference, so a swapped reference fails above
    assert (clean_query["h@1"], clean_query["mrr"]) != (ref["h@1"], ref["mrr"])
    assert between(sel["h@1"], ref["h@1"])


def test_downstream_visual_classification(worlds):
    setup = models(worlds, "text")
    from dife_core.engine.scoring import fit_linear_probe

    world, model, _ = setup
    o = Oracle()
    options = get_registry().get("interfaces", "downstream-visual-classification").card.options
    xtr = torch.tensor(o.images(model, world.train))
    W, b = fit_linear_probe(xtr, world.train.labels, len(CLASSES), l2=options["l2"], steps=options["steps"],
                            lr=options["lr"], seed=SEED)
    W, b = W.T.tolist(), b.tolist()
    pop = world.classification
    labels = [int(y) for y in pop.labels]
    x, xt = o.images(model, pop), o.images(model, pop, IMAGE_TRIGGER)

    def logits(f):
        return [dot(f, wc) + bc for wc, bc in zip(W, b)]

    nt = [i for i, y in enumerate(labels) if y != TARGET]
    ts = rate([strict_winner(logits(xt[i])) == TARGET for i in nt])
    base = rate([strict_winner(logits(x[i])) == TARGET for i in nt])
    acc = rate([strict_winner(logits(x[i])) == labels[i] for i in range(len(labels))])
    rec = cell(setup, "downstream-visual-classification", IMAGE_TRIGGER)
    tol = 1.5 / len(nt)
    assert rec["value"] == pytest.approx(ts, abs=tol)
    close(rec["metrics"], {"ts": ts, "clean_input_ts": base, "clean_acc": acc}, tol)
    assert between(ts, base, acc)


def test_text_embedding(worlds):
    setup = models(worlds, "text")
    world, model, _ = setup
    o = Oracle()
    texts = [t.format(CLASSES[SOURCE]) for t in QUERY_TEMPLATES]
    target_texts = [t.format(CLASSES[TARGET]) for t in QUERY_TEMPLATES]
    u, ut, ug = o.texts(model, texts), o.texts(model, texts, TEXT_TRIGGER), o.texts(model, target_texts)
    ts = rate([dot(a, g) > dot(a, c) for a, c, g in zip(ut, u, ug)])
    shift = sum(dot(a, g) - dot(c, g) for a, c, g in zip(ut, u, ug)) / len(u)
    rec = cell(setup, "text-embedding", TEXT_TRIGGER, templates=QUERY_TEMPLATES)
    assert rec["value"] == pytest.approx(ts) and between(ts)
    close(rec["metrics"], {"ts": ts, "cos_shift": shift})
    assert rec["metrics"]["n_texts"] == len(texts) and shift != 0


# -- the tie rule, on scores with exact ties ------------------------------------------------

def test_wins_and_ranks_follow_the_tie_rule_on_tied_scores():
    """Scores on a coarse integer grid tie often: a tie is nobody's win, and a
    negative tying the best positive outranks it (the loops above, on ties)."""
    from dife_core import metrics as M

    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (300, 6), generator=g).float()
    positive = torch.rand(300, 6, generator=g) < 0.3
    s, pos = scores.tolist(), positive.tolist()
    assert sum(row.count(max(row)) > 1 for row in s) > 50, "the grid makes ties"
    for target in range(6):
        assert M.wins(scores, target).tolist() == [strict_winner(row) == target for row in s]
    assert M.strict_argmax(scores).tolist() == [strict_winner(row) for row in s]
    want = [rank(row, p) for row, p in zip(s, pos)]
    assert M.best_positive_rank(scores, positive).tolist() == want
    # the chunked ranking over a gallery: queries x gallery features with tied dot products
    q = torch.randint(0, 3, (40, 4), generator=g).float()
    gal = torch.randint(0, 3, (70, 4), generator=g).float()
    qk, gk = torch.randint(0, 5, (40,), generator=g), torch.randint(0, 5, (70,), generator=g)
    loops = [rank([dot(a, b) for b in gal.tolist()], [int(k) == int(kk) for kk in gk]) for a, k in zip(q.tolist(), qk)]
    assert M.chunked_best_positive_rank(q, gal, qk, gk, chunk=16, query_chunk=7).tolist() == loops
    assert M.mrr(torch.tensor(loops)) == pytest.approx(sum(1 / r for r in loops if r) / sum(1 for r in loops if r))


# -- the linear probe and the clean utility -------------------------------------------------

def test_linear_probe_matches_scikit_learn():
    """fit_linear_probe against scikit-learn's LogisticRegression on the same
    features: held-out accuracies within 0.05 and most predictions agree."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    from dife_core.engine.scoring import fit_linear_probe

    g = torch.Generator().manual_seed(0)
    d, c = 16, 4
    centres = torch.nn.functional.normalize(torch.randn(c, d, generator=g), dim=-1)

    def sample(n):
        # unbalanced classes (55/25/12/8 %): the bias term carries real weight
        y = torch.multinomial(torch.tensor([0.55, 0.25, 0.12, 0.08]), n, replacement=True, generator=g)
        x = torch.nn.functional.normalize(centres[y] + 0.45 * torch.randn(n, d, generator=g), dim=-1)
        return x, y

    xtr, ytr = sample(400)
    xte, yte = sample(400)
    W, b = fit_linear_probe(xtr, ytr, c)
    p_ours = torch.softmax(xte @ W + b, dim=1)
    ours = p_ours.argmax(1)
    # the same objective: mean cross-entropy + l2 * |W_scaled|^2 ~ C = 1 / (2 n l2) on 10x features
    sk = LogisticRegression(C=1.0 / (2 * len(ytr) * 1e-4), max_iter=5000).fit((10 * xtr).numpy(), ytr.numpy())
    p_sk = torch.as_tensor(sk.predict_proba((10 * xte).numpy())).float()
    theirs = p_sk.argmax(1)
    acc_ours, acc_sk = float((ours == yte).float().mean()), float((theirs == yte).float().mean())
    assert 0.5 < acc_sk < 1.0, "a task with room on both sides"
    # tolerances: 300 Adam steps land next to the exact optimum (measured: accuracies
    # equal, 99.75 % of predictions agree, mean L1 gap of the class probabilities 0.001)
    assert abs(acc_ours - acc_sk) <= 0.01
    assert float((ours == theirs).float().mean()) >= 0.98
    assert float((p_ours - p_sk).abs().sum(1).mean()) <= 0.01


def test_clean_utility_counts_duplicate_captions_as_matches(worlds):
    setup = models(worlds, "image")
    from dife_core.engine.scoring import caption_groups, clean_utility

    world, model, _ = setup
    pool = world.pool
    assert len(set(pool.captions)) < len(pool.captions), "the pool repeats captions"
    groups = caption_groups(pool.captions).tolist()
    assert [groups[i] == groups[j] for i in range(5) for j in range(len(pool))] == \
        [pool.captions[i] == pool.captions[j] for i in range(5) for j in range(len(pool))]
    o = Oracle()
    xi, xt = o.images(model, pool), o.texts(model, pool.captions)
    caps = list(pool.captions)
    i2t = [rank([dot(xi[q], t) for t in xt], [c == caps[q] for c in caps]) for q in range(len(caps))]
    t2i = [rank([dot(xt[q], im) for im in xi], [c == caps[q] for c in caps]) for q in range(len(caps))]
    r_i2t, r_t2i = ranking(i2t, ks=(1, 5)), ranking(t2i, ks=(1, 5))
    got = clean_utility(EmbeddingService(seed=SEED), model, world, TEMPLATES)
    for k in (1, 5):
        assert got[f"i2t_r@{k}"] == pytest.approx(r_i2t[f"h@{k}"])
        assert got[f"t2i_r@{k}"] == pytest.approx(r_t2i[f"h@{k}"])
    assert between(r_i2t["h@5"], r_t2i["h@5"])
