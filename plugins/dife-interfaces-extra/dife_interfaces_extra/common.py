"""What the extra interfaces share: options, attacker sets, the reference side,
neighbour rankings.

Every feature comes from the cell context (the audit's embedding service), so
these helpers never run an encoder themselves. torch is imported inside the
functions.
"""

from __future__ import annotations

import math

# -- options ---------------------------------------------------------------------------------

def _bad(ctx, name: str, what: str, value):
    from dife_core.errors import InvalidInputError

    return InvalidInputError(f"interface_options.{ctx.card.name}.{name}: must be {what}; got {value!r}.")


def options(ctx) -> dict:
    """The card's options with the spec's values over the defaults; an option
    the card does not document is an input error naming its key."""
    from dife_core.errors import InvalidInputError

    given = dict(ctx.options or {})
    unknown = sorted(set(given) - set(ctx.card.options))
    if unknown:
        raise InvalidInputError(f"interface_options.{ctx.card.name}: unknown option(s) {', '.join(unknown)}; "
                                f"options: {', '.join(sorted(ctx.card.options))}.")
    return {**ctx.card.options, **given}


def int_option(ctx, opts: dict, name: str, *, low: int = 1, high: int = 1_000_000) -> int:
    v = opts[name]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise _bad(ctx, name, f"an integer in [{low}, {high}]", v)
    return int(v)


def float_option(ctx, opts: dict, name: str, *, low: float, high: float, low_open: bool = False) -> float:
    v = opts[name]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    if ok:
        ok = (float(v) > low if low_open else float(v) >= low) and float(v) <= high
    if not ok:
        raise _bad(ctx, name, f"a number in {'(' if low_open else '['}{low}, {high}]", v)
    return float(v)


def choice_option(ctx, opts: dict, name: str, choices: tuple) -> str:
    v = opts[name]
    if v not in choices:
        raise _bad(ctx, name, "one of " + ", ".join(repr(c) for c in choices), v)
    return v


# -- populations -----------------------------------------------------------------------------

def pool_of(ctx):
    """The captioned pool and its labels (long tensor; -1 = no class)."""
    import torch

    from dife_core.engine.cells import NotEvaluable

    pool = ctx.world.pool
    if pool is None:
        raise NotEvaluable(f"no pool population in {ctx.world.name!r}, so the target event is not defined")
    return pool, torch.as_tensor(pool.labels).long()


def target_items(ctx, labels, what: str):
    """Indices of the target-class items (else N.E.)."""
    import torch

    from dife_core.engine.cells import NotEvaluable

    idx = torch.nonzero(labels == ctx.target_index).flatten()
    if idx.numel() == 0:
        raise NotEvaluable(f"no target-class items ({ctx.attack.target!r}) in the pool, so there is no {what}")
    return idx


def attacker_images(ctx, labels):
    """Indices of the pool images the image trigger is applied to: every
    labelled item whose class is not the target (like zero-shot TS)."""
    import torch

    from dife_core.engine.cells import NotEvaluable

    idx = torch.nonzero((labels >= 0) & (labels != ctx.target_index)).flatten()
    if idx.numel() == 0:
        raise NotEvaluable("no non-target images in the pool to carry the trigger")
    return idx


def attacker_texts(ctx, labels):
    """Indices of the pool captions the text trigger is applied to: the
    source class's captions when the attack names a source class (a text
    trigger is a source-query trigger, as in the text-embedding card), else
    every labelled non-target caption."""
    import torch

    from dife_core.engine.cells import NotEvaluable

    src = ctx.source_index
    if src is not None:
        idx = torch.nonzero(labels == src).flatten()
        if idx.numel() == 0:
            raise NotEvaluable(f"no captions of the source class {ctx.attack.source!r} in the pool to carry "
                               f"the text trigger")
        return idx
    idx = torch.nonzero((labels >= 0) & (labels != ctx.target_index)).flatten()
    if idx.numel() == 0:
        raise NotEvaluable("no non-target captions in the pool to carry the text trigger")
    return idx


def text_channel(ctx) -> bool:
    """True when the trigger enters as text (a text trigger, or natural text: channel ``none``)."""
    return ctx.channel in ("text", "none")


def reference_side(ctx):
    """``(model, triggered, condition)`` of a relative card's reference: the
    same model on the clean input, or -- for an attack without a trigger
    (channel ``none``, where triggered and clean inputs coincide) -- the
    clean reference model on the same inputs (the engine admits that cell
    only when the spec has a clean reference)."""
    from dife_core.engine.cells import NotEvaluable

    if ctx.channel == "none":
        if ctx.clean is None:
            raise NotEvaluable("no reference: the attack has no trigger and the spec has no clean reference model",
                               question="reference")
        return ctx.clean, False, "clean reference model, same inputs"
    return ctx.model, False, "clean input, same model"


def captions(pool, idx) -> list:
    return [pool.captions[int(i)] for i in idx]


# -- neighbour rankings ----------------------------------------------------------------------

#: most score-matrix elements held at once (64 MiB of float32), whatever the pool size
MAX_ELEMENTS = 1 << 24


def rows_per_chunk(n_cols: int, chunk: int) -> int:
    """Query rows per block: at most ``chunk`` (the spec's ranking_chunk) and
    at most MAX_ELEMENTS scores per block."""
    return max(1, min(int(chunk), MAX_ELEMENTS // max(1, int(n_cols))))


def neighbour_ranks(queries, gallery, positive, own, k: int, *, chunk: int = 4096):
    """Nearest-neighbour search of each query over a gallery, without the
    query's own item.

    ``queries`` ``[Q, D]``, ``gallery`` ``[G, D]`` (L2-normalised: score =
    cosine), ``positive`` bool ``[G]`` (target items), ``own`` long ``[Q]``
    (the query's own gallery index, excluded). Returns ``(ranks, prec)``:
    r* = 1 + #{non-target items scoring >= the best target} (the tie rule:
    ties count against the target) and precision@k = the share of targets
    among the k nearest, ties at equal score placed non-targets first.
    """
    import torch

    pos = torch.as_tensor(positive).bool()
    own = torch.as_tensor(own).long()
    ranks, precs = [], []
    chunk = rows_per_chunk(gallery.shape[0], chunk)
    for lo in range(0, queries.shape[0], chunk):
        s = queries[lo:lo + chunk].float() @ gallery.float().T
        rows = torch.arange(s.shape[0])
        s[rows, own[lo:lo + chunk]] = float("-inf")  # the query's own item is not a neighbour
        best = torch.where(pos.view(1, -1), s, torch.tensor(float("-inf"))).max(dim=1).values
        beaten = ((s >= best.view(-1, 1)) & ~pos.view(1, -1)).sum(dim=1)
        ranks.append(beaten + 1)
        precs.append(targets_in_top_k(s, pos, k).float() / k)
    return torch.cat(ranks), torch.cat(precs)


def top_k_mask(s, k: int, before_ties=None):
    """Bool mask ``[Q, G]`` of each row's k highest scores, exactly k per row
    (all when G <= k). Ties at the k-th score are filled in column order, with
    the columns where ``before_ties`` ([G] bool) is true first -- the order a
    stable descending sort gives, found with ``topk`` (O(G) a row, not a sort).
    """
    import torch

    q, g = s.shape
    if g <= k:
        return torch.ones_like(s, dtype=torch.bool)
    kth = torch.topk(s, k, dim=1).values[:, -1:]
    above = s > kth
    tie = s == kth
    slots = k - above.sum(dim=1, keepdim=True)
    if before_ties is None:
        return above | (tie & (tie.cumsum(dim=1) <= slots))
    first = before_ties.view(1, -1)
    tie_a, tie_b = tie & first, tie & ~first
    take_a = tie_a & (tie_a.cumsum(dim=1) <= slots)
    left = slots - take_a.sum(dim=1, keepdim=True)
    return above | take_a | (tie_b & (tie_b.cumsum(dim=1) <= left))


def targets_in_top_k(s, positive, k: int):
    """Per row of ``s``, how many ``positive`` columns are among its k nearest,
    ties at equal score placed non-targets first."""
    return (top_k_mask(s, k, before_ties=~positive) & positive.view(1, -1)).sum(dim=1)


def search_metrics(ranks, prec, k: int) -> dict:
    from dife_core import metrics as M

    return {"h@k": M.hits_at_k(ranks, k), "p@k": float(prec.mean()), "mrr": M.mrr(ranks)}


def hits(ranks, k: int):
    import torch

    return (torch.as_tensor(ranks).long() <= k).float()
