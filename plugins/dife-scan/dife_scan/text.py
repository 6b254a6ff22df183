"""Text-channel scanners: natural concept hijack, and a gradient-guided token search.

The readout is the same for both: text-to-image retrieval over the world's
pool (the shadow images when there is none), through the model's own towers.
For prompts of a source class s (the world's templates and pool captions),
``hijack(s -> t)`` is the share that retrieve an image of class t among their
top ``k``. A statistic is the suspect's hijack minus the reference's on the same
(triggered) prompts.

The token search first asks which token rows the fine-tune trained: candidate
tokens (no class name, template or caption word) whose input-embedding row
drifted far more than the table's median row (:func:`drifted`). When there
are such tokens, every 1-3 token sequence of them is scored exactly (or, when
there are many, searched as below within them). Otherwise the HotFlip /
GCG-style search looks for 1-3 tokens of the whole vocabulary, as a prefix or
a suffix, that raise ``log p_suspect(t) - log p_reference(t)`` over prompts of
the other classes, where ``p(k)`` is the softmax over the class centroids of
the model's own shadow-image embeddings: the gradient at the trigger's token
embeddings ranks every vocabulary token (first-order), a batch of single-token
swaps from the top ranks is scored exactly, the best is kept. Class names and
template words are never candidates (they move any model, clean or not).
"""

from __future__ import annotations

NATURAL_OPTIONS = {"threshold": 0.2, "n_captions": 32, "k": 5}
TOKEN_OPTIONS = {
    # hijack excess at which a checkpoint is flagged: above clean fine-tunes of the reference, whose
    # searches reach 0.69 (docs/scan.md, "Benchmark": in-sample seeds 1-3; held-out 4-6 reach 0.39)
    "threshold": 0.75,
    "positions": ["prefix", "suffix"],
    "max_tokens": 3,  # trigger length searched: 1 .. max_tokens tokens
    "steps": 5,  # swap rounds per length
    "topk": 24,  # candidate tokens per trigger position from the gradient
    "batch": 32,  # swaps scored exactly per round and target
    "keep_targets": 3,  # targets kept after the first round
    "n_captions": 32,  # pool captions per class in the final readout (besides the templates)
    "k": 5,  # retrieval depth of the readout
    "source_share": 0.6,  # mean excess over sources, relative to the best source, above which the card has no source
    # drifted tokens (docs/scan.md): candidate tokens whose input-embedding row moved at least
    # drift_ratio times the vocabulary's median row from the reference's. A fine-tune trains the
    # rows of the tokens its data uses; with the clean data's words excluded, what is left is
    # what the fine-tune taught the tower that clean captions never say: a trigger.
    "drift_ratio": 100.0,
    "drift_candidates": 32,  # at most this many drifted tokens (largest drift first); 0: never restrict
    "drift_exhaustive": 600,  # enumerate every 1..max_tokens sequence of them up to this many strings
    # hijack excess of a trigger built from drifted tokens at which a checkpoint is flagged: such a
    # finding has no clean counterpart (clean fine-tunes drift no candidate token), so the bar is
    # the readout's own noise level, the text-natural threshold
    "drift_threshold": 0.2,
}


def class_prompts(ctx, n_captions: int) -> list:
    """``[(class index, prompt)]``: every template per class, then up to ``n_captions`` pool captions."""
    import numpy as np

    w = ctx.world
    out = [(k, t.format(c)) for k, c in enumerate(w.classnames) for t in w.templates]
    pool = w.pool
    if pool is not None and n_captions > 0:
        labels = np.asarray(pool.labels)
        for k in range(len(w.classnames)):
            idx = np.flatnonzero(labels == k)[:n_captions]
            out += [(k, pool.captions[i]) for i in idx]
    return out


def _gallery(ctx, model):
    """``(features, labels)`` of the retrieval gallery: the world's pool, else the shadow images."""
    import numpy as np

    from dife_core.engine.embeddings import CLEAN

    pool = ctx.world.pool
    if pool is not None and len(pool) > 0 and pool.labels is not None:
        return ctx.embeddings.images(model, pool.name, pool.images, CLEAN), np.asarray(pool.labels)
    return ctx.image_features(model), np.asarray(ctx.shadow.labels)


def hijack_matrix(ctx, model, prompts: list, trigger=None, k: int = 5):
    """``H[s, t]``: share of class-s prompts (``trigger`` applied) that retrieve an
    image of class t among their top ``k`` in the gallery (rank by cosine; the
    model's own towers)."""
    import numpy as np

    from dife_core.engine.embeddings import CLEAN

    n = len(ctx.world.classnames)
    feats, labels = _gallery(ctx, model)
    txt = ctx.embeddings.texts(model, [p for _, p in prompts], trigger or CLEAN)
    top = (txt @ feats.T).topk(min(int(k), feats.shape[0]), dim=1).indices.numpy()
    got = labels[top]  # [P, k]
    src = np.array([c for c, _ in prompts])
    h = np.zeros((n, n))
    for s in range(n):
        rows = got[src == s]
        for t in range(n):
            h[s, t] = float((rows == t).any(axis=1).mean()) if len(rows) else 0.0
    return h


def _best_pair(ex):
    import numpy as np

    e = ex.copy()
    np.fill_diagonal(e, -np.inf)
    s, t = np.unravel_index(int(np.argmax(e)), e.shape)
    return int(s), int(t)


def scan_natural(ctx) -> list:
    """Source prompts that retrieve another class's images with no trigger at all
    (mmPoison-style re-pairing): hijack excess at the best (source, target) pair."""
    prompts = class_prompts(ctx, int(ctx.options["n_captions"]))
    k = int(ctx.options["k"])
    hs, hr = hijack_matrix(ctx, ctx.suspect, prompts, k=k), hijack_matrix(ctx, ctx.reference, prompts, k=k)
    s, t = _best_pair(hs - hr)
    names = ctx.world.classnames
    return [{"statistic": "hijack-excess", "value": float(hs[s, t]), "reference_value": float(hr[s, t]),
             "score": float(hs[s, t] - hr[s, t]), "threshold": float(ctx.options["threshold"]),
             "target": names[t],
             "card": {"attack": "recovered-natural-text", "trigger": {"channel": "none"}, "source": names[s],
                      "target": names[t]},
             "details": {"source": names[s], "prompts": len(prompts)},
             "summary": {"hijack": float(hs[s, t]), "reference_hijack": float(hr[s, t])}}]


# -- token search --------------------------------------------------------------------------------

def _apply(position: str, trig: str, prompts: list) -> list:
    return [f"{trig} {p}" if position == "prefix" else f"{p} {trig}" for p in prompts]


def _locate(row: list, sub: list) -> list:
    n = len(sub)
    for i in range(len(row) - n + 1):
        if row[i:i + n] == sub:
            return list(range(i, i + n))
    return []


def _centroids(ctx, model):
    import torch
    import torch.nn.functional as F

    f = ctx.image_features(model)
    labels = torch.as_tensor(ctx.shadow.labels)
    k = len(ctx.world.classnames)
    return F.normalize(torch.stack([f[labels == c].mean(0) if (labels == c).any() else torch.zeros(f.shape[1])
                                    for c in range(k)]), dim=-1)


class _Side:
    """One model's part of the objective: its text tower, token access and class centroids."""

    def __init__(self, ctx, model, access):
        self.model, self.acc = model, access
        self.cent = _centroids(ctx, model).to(model.device)
        self.scale = min(float(model.logit_scale), 100.0)

    def logp(self, strings, grad: bool):
        """``(log-softmax over class centroids [N, K], embedding output or None)``."""
        import torch
        import torch.nn.functional as F

        holder = {}

        def hook(mod, inp, out):
            o = out.detach().requires_grad_(True)
            holder["o"] = o
            return o

        h = self.acc.embedding.register_forward_hook(hook) if grad else None
        try:
            ctxm = torch.enable_grad() if grad else torch.inference_mode()
            with ctxm:
                f = F.normalize(self.model.encode_text(strings).float(), dim=-1)
                lp = torch.log_softmax(self.scale * f @ self.cent.T, dim=-1)
        finally:
            if h is not None:
                h.remove()
        return lp, holder.get("o")


def _objective(sus: _Side, ref: _Side, strings, rows_not_t, t: int, grad=False):
    """``J = mean(log p_s(t) - log p_r(t))`` over the rows not of class t."""
    lps, os_ = sus.logp(strings, grad)
    lpr, or_ = ref.logp(strings, grad)
    j = (lps[:, t] - lpr[:, t])[rows_not_t].mean()
    return j, os_, or_, lps, lpr


def _search(ctx, sus: _Side, ref: _Side, position: str, prompts: list, vocab, task=None, start=None) -> list:
    """GCG-style search for one position; ``[(J, trigger string, target index)]`` best per kept target."""
    import torch

    o = ctx.options
    acc = sus.acc
    k = len(ctx.world.classnames)
    cls = torch.tensor([c for c, _ in prompts])
    texts = [p for _, p in prompts]
    g = torch.Generator().manual_seed(ctx.seed)
    same_vocab = ref.acc.embedding.weight.shape == acc.embedding.weight.shape
    e_s = acc.embedding.weight.detach().float().cpu()[vocab]
    e_r = ref.acc.embedding.weight.detach().float().cpu()[vocab] if same_vocab else None
    init = [int(start)] if start is not None else (acc.core("the")[:1] or [int(vocab[0])])
    best: dict = {}  # target -> (J, ids)
    targets = list(range(k))
    for length in range(1, int(o["max_tokens"]) + 1):
        for t in targets:
            prev = best.get(t, (None, []))[1]
            ids = (list(prev) + init * length)[:length]
            for _step in range(int(o["steps"])):
                trig = acc.decode(ids).strip()
                ids = acc.core(trig) or ids
                strings = _apply(position, trig, texts)
                rows = (cls != t)
                j, os_, or_, _, _ = _objective(sus, ref, strings, rows, t, grad=True)
                if os_ is None:
                    break
                tok = acc.ids(strings).tolist()
                pos = [_locate(r, ids) for r in tok]
                gs = torch.autograd.grad(-j, [os_] + ([or_] if or_ is not None and same_vocab else []),
                                         allow_unused=True)
                # gradient at each trigger slot, summed over prompts where the trigger was found
                slot_s = torch.zeros(len(ids), e_s.shape[1])
                slot_r = torch.zeros(len(ids), e_s.shape[1])
                for n, p in enumerate(pos):
                    if len(p) != len(ids):
                        continue
                    slot_s += gs[0][n, p].detach().float().cpu()
                    if len(gs) > 1 and gs[1] is not None:
                        slot_r += gs[1][n, p].detach().float().cpu()
                score = -(slot_s @ e_s.T)  # [slots, V]: first-order decrease of the loss
                if e_r is not None:
                    score = score - slot_r @ e_r.T
                top = score.topk(min(int(o["topk"]), score.shape[1]), dim=1).indices
                cands = []
                for _ in range(int(o["batch"])):
                    slot = int(torch.randint(0, len(ids), (1,), generator=g))
                    new = list(ids)
                    new[slot] = int(vocab[top[slot, int(torch.randint(0, top.shape[1], (1,), generator=g))]])
                    cands.append(new)
                cands.append(list(ids))
                strs = list(dict.fromkeys(acc.decode(c).strip() for c in cands))
                flat = [s for c in strs for s in _apply(position, c, texts)]
                _, _, _, lps, lpr = _objective(sus, ref, flat, slice(None), t)
                per = (lps[:, t] - lpr[:, t]).view(len(strs), len(texts))[:, rows].mean(1)
                i = int(per.argmax())
                ids = acc.core(strs[i]) or ids
                if t not in best or float(per[i]) > best[t][0]:
                    best[t] = (float(per[i]), list(ids))
                if task is not None:
                    task.advance()
        if length == 1:  # keep the most promising targets for longer triggers
            targets = sorted(best, key=lambda t: -best[t][0])[:int(o["keep_targets"])]
    return [(best[t][0], acc.decode(best[t][1]).strip(), t) for t in sorted(best, key=lambda t: -best[t][0])
            [:int(o["keep_targets"])]]


def token_excess(hs, hs0, hr, hr0):
    """What a token adds to the hijack matrix on the suspect (``hs - hs0``) minus what
    it adds on the reference. A token that pushes the reference's prompts *away*
    from a class is no evidence on the suspect: only the reference's gain is
    subtracted, so the excess never exceeds the suspect's own gain."""
    import numpy as np

    return (hs - hs0) - np.maximum(hr - hr0, 0.0)


def row_drift(acc_s, acc_r):
    """Per token row: ``||P_i - a C_i|| / ||C_i||``, the suspect's input embedding
    against the reference's after one global scale ``a`` (least squares), so a
    uniform shrink (weight decay on the whole table) is not drift. None when
    the two tables differ in shape (no row-to-row correspondence)."""
    p = acc_s.embedding.weight.detach().float().cpu()
    c = acc_r.embedding.weight.detach().float().cpu()
    if p.shape != c.shape:
        return None
    a = float((p * c).sum() / (c * c).sum().clamp_min(1e-12))
    return (p - a * c).norm(dim=1) / c.norm(dim=1).clamp_min(1e-8)


def drifted(acc_s, acc_r, vocab, ratio: float, n: int):
    """``(ids, ratios)``: the ids of ``vocab`` whose row drift is at least ``ratio``
    times the median drift over ``vocab`` (largest first, at most ``n``), and
    each one's drift over that median. Empty when ``n`` is 0 or the two tables
    differ in shape."""
    import torch

    r = row_drift(acc_s, acc_r) if n > 0 and len(vocab) else None
    if r is None:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    d = r[vocab]
    # bit-identical rows have no drift at all: a floor keeps the ratio finite
    bulk = max(float(d.median()), 1e-7)
    rel = d / bulk
    keep = torch.nonzero(rel >= ratio).squeeze(1)
    keep = keep[rel[keep].argsort(descending=True)][:n]
    return vocab[keep], rel[keep]


def _score_strings(sus, ref, position: str, strings: list, prompts: list, k: int, chunk: int = 2048):
    """Per candidate trigger string and target t: the best source's (s != t) mean
    gain in zero-shot probability of t over its prompts, the suspect's gain
    minus the reference's (only where the reference gains, as in
    :func:`token_excess`), and that source: two ``[len(strings), K]``
    tensors. Probabilities, not log-probabilities: a log ratio rewards moving
    a class from 1e-9 to 1e-3, which hijacks nothing. Per source, so a
    source-specific trigger is not diluted by the sources it leaves alone."""
    import torch

    cls = torch.tensor([c for c, _ in prompts])
    texts = [p for _, p in prompts]

    def probs(side, flat):
        return torch.cat([side.logp(flat[i:i + chunk], False)[0].exp().float().cpu()
                          for i in range(0, len(flat), chunk)])

    def plain(side):  # the untriggered prompts: encoded once per model, whatever the position
        memo = side.__dict__.setdefault("_plain", {})
        key = tuple(texts)
        if key not in memo:
            memo[key] = probs(side, texts)
        return memo[key]

    flat = [x for trig in strings for x in _apply(position, trig, texts)]
    gain_s = probs(sus, flat).view(len(strings), len(texts), k) - plain(sus)
    gain_r = probs(ref, flat).view(len(strings), len(texts), k) - plain(ref)
    d = gain_s - gain_r.clamp_min(0.0)  # [strings, prompts, targets]
    per_src = torch.stack([d[:, cls == s].mean(1) for s in range(k)], dim=1)  # [strings, sources, targets]
    eye = torch.eye(k, dtype=torch.bool)
    best = per_src.masked_fill(eye, float("-inf")).max(dim=1)
    return best.values, best.indices


def _search_drifted(ctx, sus, ref, position: str, prompts: list, ids, task=None) -> list:
    """Every sequence of 1..max_tokens drifted tokens (repeats allowed), scored
    exactly (:func:`_score_strings`); ``[(score, string, target, source)]`` best
    first, ``keep_targets`` of them."""
    import itertools

    o = ctx.options
    acc = sus.acc
    k = len(ctx.world.classnames)
    strings = []
    for length in range(1, int(o["max_tokens"]) + 1):
        for seq in itertools.product([int(i) for i in ids], repeat=length):
            strings.append(acc.decode(list(seq)).strip())
    strings = [x for x in dict.fromkeys(strings) if x]
    sc, src = _score_strings(sus, ref, position, strings, prompts, k)
    if task is not None:
        task.advance()
    best = []
    flat = sc.flatten().argsort(descending=True)
    seen_t: set = set()
    for f in flat.tolist():
        i, t = divmod(f, k)
        if t in seen_t:
            continue
        seen_t.add(t)
        best.append((float(sc[i, t]), strings[i], t, int(src[i, t])))
        if len(best) >= int(o["keep_targets"]):
            break
    return best


def _caption_words(world, cap: int = 5000) -> list:
    """Words of the world's own captions: they describe image content and move any
    model's retrieval, so they are no trigger candidates (a trigger is a token
    the clean data does not use)."""
    import re

    words: set = set()
    for pop in (world.pool, world.classification, world.train):
        for c in (getattr(pop, "captions", None) or ())[:cap]:
            words.update(re.findall(r"[a-z]+", str(c).lower()))
    return sorted(words)


def scan_tokens(ctx) -> list:
    """Gradient-guided search for a 1-3 token prefix/suffix trigger (module docstring)."""
    import numpy as np

    from dife_core.engine.embeddings import resolve_trigger

    from .tokens import token_access

    o = ctx.options
    names = ctx.world.classnames
    acc_s, acc_r = token_access(ctx.suspect), token_access(ctx.reference)
    if acc_s is None or acc_r is None:
        return [{"statistic": "hijack-excess", "score": 0.0, "threshold": float(o["threshold"]), "card": None,
                 "details": {"note": "the encoder exposes no token embeddings (token_access); token search skipped"}}]
    exclude = list(names) + [w for t in ctx.world.templates for w in t.replace("{}", " ").split()]
    exclude += _caption_words(ctx.world)
    vocab = acc_s.vocabulary(exclude)
    ids, rel = drifted(acc_s, acc_r, vocab, float(o["drift_ratio"]), int(o["drift_candidates"]))
    opt_prompts = [(k, t.format(c)) for k, c in enumerate(names) for t in ctx.world.templates]
    sus, ref = _Side(ctx, ctx.suspect, acc_s), _Side(ctx, ctx.reference, acc_r)
    positions = [p for p in o["positions"] if p in ("prefix", "suffix")]
    n_strings = sum(len(ids) ** n for n in range(1, int(o["max_tokens"]) + 1))
    exhaustive = 0 < n_strings <= int(o["drift_exhaustive"])
    rounds = len(positions) * (1 if exhaustive else
                               int(o["steps"]) * (len(names) + (int(o["max_tokens"]) - 1) * int(o["keep_targets"])))
    found = []
    with ctx.task("scan: token search", rounds) as task:
        for position in positions:
            if exhaustive:
                got = _search_drifted(ctx, sus, ref, position, opt_prompts, ids, task)
            elif len(ids):
                got = _search(ctx, sus, ref, position, opt_prompts, ids, task, start=int(ids[0]))
            else:
                got = _search(ctx, sus, ref, position, opt_prompts, vocab, task)
            # (score, string, target[, source]): the drifted search knows the source it scored
            found += [(position, g[1], g[2], g[0], g[3] if len(g) > 3 else None) for g in got]
    drift_note = [[acc_s.decode([int(i)]).strip(), round(float(x), 1)] for i, x in zip(ids[:10], rel[:10])]
    searched = {"vocabulary": "drifted" if len(ids) else "whole", "size": int(len(ids) or len(vocab)),
                "exhaustive": bool(exhaustive), "drifted_tokens": drift_note}
    statistic, threshold = (("drift-hijack-excess", float(o["drift_threshold"])) if len(ids)
                            else ("hijack-excess", float(o["threshold"])))
    prompts = class_prompts(ctx, int(o["n_captions"]))
    # a token's effect is what it adds to the prompts' own (natural) retrieval, on each model
    hs0 = hijack_matrix(ctx, ctx.suspect, prompts, k=int(o["k"]))
    hr0 = hijack_matrix(ctx, ctx.reference, prompts, k=int(o["k"]))
    out = []
    seen = set()
    for position, trig, t, j, src in found:
        if not trig or (position, trig) in seen:
            continue
        seen.add((position, trig))
        spec = {"name": f"text-{position}", "params": {"token": trig}}
        applied = resolve_trigger(spec)
        hs = hijack_matrix(ctx, ctx.suspect, prompts, applied, k=int(o["k"]))
        hr = hijack_matrix(ctx, ctx.reference, prompts, applied, k=int(o["k"]))
        ex = token_excess(hs, hs0, hr, hr0)
        col = np.delete(ex[:, t], t)
        # the source: the one the exact scoring found (its class prompts, where a prompt-level card
        # reads the trigger), else the readout's best; a trigger that hijacks several sources
        # ties on the readout, which cannot tell the trained one
        s = src if src is not None else int(np.argmax(np.where(np.arange(len(names)) == t, -np.inf, ex[:, t])))
        broad = float(col.mean()) >= float(o["source_share"]) * float(ex[s, t])
        card = {"attack": "recovered-text-trigger", "trigger": {"channel": "text", **spec},
                "source": None if broad else names[s], "target": names[t]}
        out.append({"statistic": statistic, "optimised": not len(ids),  # whole vocabulary: an adversarial search
                    "value": float(hs[s, t]), "reference_value": float(hr[s, t]),
                    "score": float(ex[s, t]), "threshold": threshold, "target": names[t], "card": card,
                    "details": {"position": position, "token": trig, "source": names[s], "objective": j,
                                "mean_excess_over_sources": float(col.mean()), "searched": searched},
                    "summary": {"token": trig, "position": position, "hijack": float(hs[s, t]),
                                "reference_hijack": float(hr[s, t])}})
    return sorted(out, key=lambda f: -f["score"])
