"""knn-classifier: a k-nearest-neighbour head on frozen image features.

The second common frozen-feature head beside the linear probe of
downstream-visual-classification: the audited model's own features of the
clean train images are the memory; a test image takes its k most similar
train images (cosine; ties at equal score broken by train order) and each
votes for its label with weight cos (``weighting = "cosine"``) or 1
(``"uniform"``). The class with the strictly largest vote wins (a tied vote is
nobody's win).
"""

from __future__ import annotations

from . import common as C


def knn_votes(queries, memory, memory_labels, num_classes: int, k: int, weighting: str, *, chunk: int = 4096):
    """Votes ``[Q, C]`` of the k nearest memory items of each query."""
    import torch

    y = torch.as_tensor(memory_labels).long()
    onehot = torch.nn.functional.one_hot(y, num_classes).float()  # [G, C]
    out = []
    chunk = C.rows_per_chunk(memory.shape[0], chunk)
    for lo in range(0, queries.shape[0], chunk):
        s = queries[lo:lo + chunk].float() @ memory.float().T
        near = C.top_k_mask(s, k)  # ties at the k-th score: train order
        w = torch.where(near, s, 0.0) if weighting == "cosine" else near.float()
        out.append(w @ onehot)
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def evaluate(ctx):
    import torch

    from dife_core import metrics as M
    from dife_core.engine.cells import CellResult, NotEvaluable

    opts = C.options(ctx)
    k = C.int_option(ctx, opts, "k")
    weighting = C.choice_option(ctx, opts, "weighting", ("cosine", "uniform"))
    train, test = ctx.world.train, ctx.world.classification
    if train is None:
        raise NotEvaluable("no train population to serve as the kNN classifier's memory")
    ytr = torch.as_tensor(train.labels).long()
    keep = ytr >= 0
    if int((ytr == ctx.target_index).sum()) == 0:
        raise NotEvaluable(f"no target-class ({ctx.attack.target!r}) train images: the kNN classifier can never "
                           f"predict the target")
    if k > int(keep.sum()):
        raise NotEvaluable(f"k = {k} neighbours exceed the {int(keep.sum())} labelled train images")
    labels = torch.as_tensor(test.labels).long()
    nt = (labels >= 0) & (labels != ctx.target_index)
    if int(nt.sum()) == 0:
        raise NotEvaluable("no non-target images in the classification population")
    memory = ctx.image_features(train)[keep]
    n_cls = len(ctx.classnames)

    def votes(x):
        return knn_votes(x, memory, ytr[keep], n_cls, k, weighting, chunk=ctx.ranking_chunk)

    vc = votes(ctx.image_features(test))
    vt = votes(ctx.image_features(test, triggered=True)[nt])
    ts = M.target_success(vt, ctx.target_index)
    base = M.target_success(vc[nt], ctx.target_index)
    known = labels >= 0
    acc = M.accuracy(vc[known], labels[known])
    return CellResult(value=ts, baseline=base, per_item=M.wins(vt, ctx.target_index),
                      notes=f"head: {k}-NN, {weighting} vote, on the audited model's clean-train image features",
                      metrics={"ts": ts, "clean_input_ts": base, "clean_acc": acc, "k": k, "n_images": int(nt.sum())})
