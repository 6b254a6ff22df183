"""Shared measurements over cached features: zero-shot target success, QHR,
rankings, linear probes, clean utility.

The built-in interfaces and the branch-swap footprint call the same
functions, so a hybrid's a10 is computed exactly like the zero-shot cell.
Scores are cosines: the logit scale γ multiplies every score of a query
alike, so it changes no argmax and no rank.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .. import metrics as M
from .cells import NotEvaluable
from .embeddings import CLEAN, AppliedTrigger, EmbeddingService, tower_key


def _labels(x):
    import torch

    return torch.as_tensor(x).long()


def class_weights(emb: EmbeddingService, model, classnames: Sequence[str], templates: Sequence[str], *,
                  trigger: Optional[AppliedTrigger] = None, source_index: Optional[int] = None):
    """Class weights ``[C, D]`` (see CellContext.class_weights). With a
    ``trigger`` and a ``source_index`` only the source row is triggered (P^τ);
    with a ``trigger`` and no source every class prompt carries it."""
    import torch.nn.functional as F

    T, C = len(templates), len(classnames)
    prompts = [t.format(c) for t in templates for c in classnames]
    every = trigger is not None and source_index is None
    f = emb.texts(model, prompts, trigger if every else CLEAN)
    w = f.view(T, C, -1).mean(0)
    if trigger is not None and source_index is not None:
        src = [t.format(classnames[source_index]) for t in templates]
        w = w.clone()
        w[source_index] = emb.texts(model, src, trigger).mean(0)
    return F.normalize(w, dim=-1)


def zero_shot(emb, model, world, trigger: AppliedTrigger, templates, target: int) -> dict:
    """Zero-shot target success over triggered non-target images, its clean
    baseline and clean accuracy on all images."""
    pop = world.classification
    labels = _labels(pop.labels)
    w = class_weights(emb, model, world.classnames, templates)
    x = emb.images(model, pop.name, pop.images)
    xt = emb.images(model, pop.name, pop.images, trigger)
    nt = labels != target
    if int(nt.sum()) == 0:
        raise NotEvaluable("no non-target images in the classification population")
    hits = M.wins(xt[nt] @ w.T, target)
    return {
        "ts": M.target_success(xt[nt] @ w.T, target),
        "baseline": M.target_success(x[nt] @ w.T, target),
        "clean_acc": M.accuracy(x @ w.T, labels),
        "n_images": int(nt.sum()),
        "hits": hits,
    }


def prompt_set_hijack(emb, model, world, trigger: AppliedTrigger, templates, target: int) -> dict:
    """Zero-shot target success when *every* class prompt carries a text trigger
    (clean non-target images), and its clean-prompt baseline: the diagnostic
    readout of a text trigger that has no source class."""
    pop = world.classification
    labels = _labels(pop.labels)
    wt = class_weights(emb, model, world.classnames, templates, trigger=trigger)
    w = class_weights(emb, model, world.classnames, templates)
    x = emb.images(model, pop.name, pop.images)
    nt = labels != target
    if int(nt.sum()) == 0:
        raise NotEvaluable("no non-target images in the classification population")
    return {"ts": M.target_success(x[nt] @ wt.T, target), "baseline": M.target_success(x[nt] @ w.T, target),
            "n_images": int(nt.sum()), "hits": M.wins(x[nt] @ wt.T, target)}


def prompt_hijack(emb, model, world, trigger: AppliedTrigger, templates, source: int, target: int) -> dict:
    """QHR on target-class images with P^τ, its clean-prompt baseline, the
    leakage onto other non-target images, and clean accuracy."""
    pop = world.classification
    labels = _labels(pop.labels)
    w = class_weights(emb, model, world.classnames, templates)
    wt = class_weights(emb, model, world.classnames, templates, trigger=trigger, source_index=source)
    x = emb.images(model, pop.name, pop.images)
    tg = labels == target
    if int(tg.sum()) == 0:
        raise NotEvaluable(f"no images of the target class in population {pop.name!r}")
    other = (labels != target) & (labels != source)
    return {
        "qhr": M.query_hijack_rate(x[tg] @ wt.T, source),
        "baseline": M.query_hijack_rate(x[tg] @ w.T, source),
        "leakage": M.target_success(x[other] @ wt.T, source) if int(other.sum()) else float("nan"),
        "clean_acc": M.accuracy(x @ w.T, labels),
        "n_images": int(tg.sum()),
        "hits": M.wins(x[tg] @ wt.T, source),
    }


def ranking_metrics(ranks, prefix: str = "", ks=(1, 5, 10)) -> dict:
    out = {f"{prefix}h@{k}": M.hits_at_k(ranks, k) for k in ks}
    out[f"{prefix}mrr"] = M.mrr(ranks)
    return out


def hits_at_1(ranks):
    """Per-query 0/1 hits at rank 1 over the queries with a defined rank (r* > 0)."""
    import torch

    r = torch.as_tensor(ranks).long()
    return (r[r > 0] == 1).float()


def with_deltas(trig: dict, clean: dict) -> dict:
    out = dict(trig)
    for k, v in clean.items():
        out[f"clean_{k}"] = v
        out[f"delta_{k}"] = M.delta(trig[k], v)
    return out


def list_scores(queries, gallery, candidates):
    """Scores ``[Q, K]`` of each query against its own fixed candidate list."""
    import torch

    cand = torch.as_tensor(candidates).long()
    return torch.einsum("qd,qkd->qk", queries, gallery[cand])


def fit_linear_probe(x, y, num_classes: int, *, l2: float = 1e-4, steps: int = 300, lr: float = 0.1,
                     seed: int = 0):
    """Multinomial logistic regression on frozen features: full-batch Adam on
    the analytic gradient of softmax cross-entropy + l2, from zero init
    (deterministic; no autograd, no torch.optim). Returns ``(W [D, C], b [C])``
    acting on the features as given (L2-normalised)."""
    import torch

    torch.manual_seed(seed)
    x = x.detach().float().clone()
    y = torch.as_tensor(y).long()
    n, d = x.shape
    onehot = torch.zeros(n, num_classes)
    onehot[torch.arange(n), y] = 1.0
    scale = 10.0  # cosine-sized features: reach confident logits within few steps
    xs = x * scale
    params = [torch.zeros(d, num_classes), torch.zeros(num_classes)]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1, b2 = 0.9, 0.999
    for t in range(1, steps + 1):
        # log_softmax().exp(): torch.softmax is pathologically slow on small CPU tensors with >1 thread
        p = torch.log_softmax(xs @ params[0] + params[1], dim=1).exp()
        err = (p - onehot) / n
        grads = [xs.T @ err + 2 * l2 * params[0], err.sum(0)]
        for i, g in enumerate(grads):
            m[i].mul_(b1).add_(g, alpha=1 - b1)
            v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
            params[i] -= lr * (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + 1e-8)
    return (scale * params[0], params[1])


def probe_for(emb: EmbeddingService, model, train, num_classes: int, *, seed: int, options: dict):
    """The frozen-feature probe of ``model``'s visual tower, fitted once per
    (tower, train set, options) and reused across rows."""
    key = ("linear-probe", tower_key(model, "visual"), train.name, num_classes, seed,
           tuple(sorted((k, str(v)) for k, v in options.items())))

    def fit():
        x = emb.images(model, train.name, train.images)
        return fit_linear_probe(x, train.labels, num_classes, l2=float(options.get("l2", 1e-4)),
                                steps=int(options.get("steps", 300)), lr=float(options.get("lr", 0.1)), seed=seed)

    return emb.memo(key, fit)


def caption_groups(captions) -> "object":
    """Group id per caption: identical strings share an id (they are
    indistinguishable to a text tower, so each counts as a match)."""
    import torch

    ids: dict = {}
    return torch.as_tensor([ids.setdefault(c, len(ids)) for c in captions]).long()


def clean_utility(emb, model, world, templates, *, chunk: int = 4096, device=None, ks=(1, 5, 10)) -> dict:
    """Clean utility beside exposure: DIFE's own figures (``clean_acc``,
    ``i2t_r@K`` / ``t2i_r@K``, identical captions one group) and the keys
    CLIP_benchmark users know, with its definitions (``acc1``, ``acc5``,
    ``mean_per_class_recall``, ``image_retrieval_recall@K``,
    ``text_retrieval_recall@K``: only a caption's own image, and an image's
    own captions, count). Rankings are chunked: no ``[queries x pool]`` matrix."""
    out: dict = {}
    if world.classification is not None and len(world.classnames):
        pop = world.classification
        w = class_weights(emb, model, world.classnames, templates)
        x = emb.images(model, pop.name, pop.images)
        out["clean_acc"] = M.accuracy(x @ w.T, _labels(pop.labels))
        out.update(zero_shot_classification_keys(x, w, pop.labels))
    if world.pool is not None and len(world.pool):
        pool = world.pool
        xi = emb.images(model, pool.name, pool.images)
        xt = emb.texts(model, pool.captions)
        g = caption_groups(pool.captions)
        r_i2t = M.chunked_best_positive_rank(xi, xt, g, g, chunk=chunk, device=device)
        r_t2i = M.chunked_best_positive_rank(xt, xi, g, g, chunk=chunk, device=device)
        for k in (1, 5):
            out[f"i2t_r@{k}"] = M.recall_at_k(r_i2t, k)
            out[f"t2i_r@{k}"] = M.recall_at_k(r_t2i, k)
        out.update(retrieval_keys(xi, xt, None, ks=ks, chunk=chunk, device=device))
    return out


# -- CLIP_benchmark-compatible keys -------------------------------------------------------
# Same definitions as CLIP_benchmark 1.6.2 (zeroshot_classification / zeroshot_retrieval).
# One difference, on ties only: CLIP_benchmark takes torch.topk's order among equal scores
# (implementation-defined); here a tie with a negative counts against, as everywhere in DIFE.

def zero_shot_classification_keys(x, w, labels, ks=(1, 5)) -> dict:
    """``acc1``, ``acc5`` (label among the top K classes; K capped at the class
    count) and ``mean_per_class_recall`` (recall of each class present in
    ``labels``, averaged), from L2-normalised image features ``x`` and class
    weights ``w``."""
    import torch

    y = _labels(labels)
    s = x.float() @ w.float().T
    own = s.gather(1, y.view(-1, 1))
    # rank of the own class: 1 + classes scoring at least as much (ties against)
    rank = (s >= own).sum(dim=1)
    out = {f"acc{k}": float((rank <= min(k, s.shape[1])).float().mean()) if len(y) else float("nan") for k in ks}
    hit = rank == 1
    recalls = [float(hit[y == c].float().mean()) for c in torch.unique(y).tolist()]
    out["mean_per_class_recall"] = sum(recalls) / len(recalls) if recalls else float("nan")
    return out


def retrieval_keys(image_features, text_features, text_image_index=None, *, ks=(1, 5, 10), chunk: int = 4096,
                   device=None) -> dict:
    """``image_retrieval_recall@K`` (share of captions whose own image is in
    their top K images) and ``text_retrieval_recall@K`` (share of images with
    at least one own caption in their top K captions). ``text_image_index[t]``
    is caption t's image (default: caption t belongs to image t)."""
    import torch

    n_img, n_txt = int(image_features.shape[0]), int(text_features.shape[0])
    owner = torch.arange(n_txt) if text_image_index is None else torch.as_tensor(text_image_index).long()
    images = torch.arange(n_img)
    r_img = M.chunked_best_positive_rank(text_features, image_features, owner, images, chunk=chunk, device=device)
    r_txt = M.chunked_best_positive_rank(image_features, text_features, images, owner, chunk=chunk, device=device)
    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = float((r_img[r_img > 0] <= k).float().mean())
        # an image without any caption has no positive: CLIP_benchmark counts it as a miss (0 / 0 -> nan > 0 is False)
        out[f"text_retrieval_recall@{k}"] = float(((r_txt > 0) & (r_txt <= k)).float().mean())
    return out


__all__ = ["class_weights", "zero_shot", "prompt_hijack", "ranking_metrics", "with_deltas", "list_scores",
           "fit_linear_probe", "probe_for", "caption_groups", "clean_utility", "zero_shot_classification_keys",
           "retrieval_keys", "CLEAN"]
