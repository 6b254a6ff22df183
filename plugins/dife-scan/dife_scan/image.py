"""Image-channel scanners: a cheap pass over the registered trigger families,
and DECREE-style mask + pattern inversion on the visual tower.

Both read the same target readout: zero-shot classification of triggered
clean shadow images through the suspect's own text tower; the *target
success* TS(t) is the share of shadow images not of class t that go to t.
Every inference pass goes through the scan's embedding service; only the
inversion's gradient steps call the tower directly.
"""

from __future__ import annotations

from dife_core.types import Trigger

FAMILY_OPTIONS = {
    "threshold": 0.3,
    "points": True,  # also try each family's declared scan points (its intensity range)
}
INVERSION_OPTIONS = {
    # clean models of other seeds reach the attacks' inversion statistics (docs/scan.md, "Benchmark":
    # mask-shrink 0.54, TS excess 0.77), but they are no fine-tunes of the reference: their text
    # towers were trained apart, and then no finding decides (dife_core.scan._decides). Clean
    # fine-tunes of the reference, the null of a suspect that descends from it, stay at 0.20 / 0.03.
    "threshold": 0.6,  # score = 1 - mask(suspect) / mask(reference) at which a checkpoint is flagged
    # target-success excess of the inverted trigger at which a checkpoint is flagged: a TS excess,
    # judged like the families' (image-families.threshold)
    "ts_threshold": 0.3,
    "min_ts_excess": 0.4,  # a mask-shrink finding needs at least this TS excess to yield a card
    "steps": 300,  # optimisation steps per model
    "batch": 48,  # shadow images per step
    "grid": 32,  # mask / pattern resolution (side), capped by the image side
    "lr": 0.1,
    "collapse": 0.9,  # mean pairwise cosine of triggered embeddings that counts as collapsed
    "lambda": 0.05,  # initial weight of the mask's L1 norm
}


def _ts_finding(ctx, trigger, card_trigger: dict, statistic: str, threshold: float, details: dict) -> dict:
    """TS excess of ``trigger`` (suspect minus reference) at the class where it is largest."""
    s = ctx.target_success(ctx.suspect, trigger)
    r = ctx.target_success(ctx.reference, trigger)
    excess = [a - b for a, b in zip(s, r)]
    t = max(range(len(excess)), key=lambda i: excess[i])
    return {"statistic": statistic, "value": s[t], "reference_value": r[t], "score": excess[t],
            "threshold": threshold, "target": ctx.world.classnames[t],
            "card": {"attack": "recovered-image-trigger", "trigger": card_trigger, "source": None,
                     "target": ctx.world.classnames[t]},
            "details": details, "summary": {"target_success": s[t], "reference_target_success": r[t]}}


def _collapse(feats) -> float:
    """Mean pairwise cosine of L2-normalised features (1 = every input maps to one point)."""
    n = feats.shape[0]
    if n < 2:
        return 1.0
    sim = feats @ feats.T
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def scan_families(ctx) -> list:
    """Each registered image trigger family at its default parameters and, with
    the ``points`` option, at the scan points the family declares
    (``Trigger.scan_points``: its intensity range). Families that need a learned
    value (e.g. ``pixel-patch``) are skipped."""
    from dife_core.engine.embeddings import resolve_trigger
    from dife_core.plugins import get_registry

    out = []
    for name, fam in sorted(get_registry().all("triggers").items()):
        if fam.channel != "image":
            continue
        points = [{}] + ([dict(p) for p in fam.scan_points] if ctx.options.get("points", True) else [])
        for extra in points:
            try:
                trig = resolve_trigger({"name": name, "params": extra})
            except Exception:  # noqa: BLE001 -- the family needs parameters it has no default for
                break
            params = {**fam.defaults, **extra}
            f = _ts_finding(ctx, trig, {"channel": "image", "name": name, "params": params},
                            "ts-excess", float(ctx.options["threshold"]),
                            {"family": name, "params": extra,
                             "collapse": _collapse(ctx.image_features(ctx.suspect, trig)),
                             "reference_collapse": _collapse(ctx.image_features(ctx.reference, trig))})
            f["summary"]["family"] = name
            out.append(f)
    return out


# -- mask + pattern inversion ----------------------------------------------------------------

def _upsample(t, h: int, w: int):
    import torch.nn.functional as F

    return t if tuple(t.shape[-2:]) == (h, w) else F.interpolate(t, size=(h, w), mode="bilinear",
                                                                     align_corners=False)


def invert(model, images, *, steps: int, batch: int, grid: int, lr: float, collapse: float, lam: float,
           seed: int = 0, task=None) -> dict:
    """Optimise a mask ``m`` and pattern ``p`` (``x' = (1 - m) x + m p``) so the
    triggered embeddings collapse (mean pairwise cosine >= ``collapse``), with
    ``lam * mean(m)`` pushing the mask small; ``lam`` is raised while the
    embeddings stay collapsed and lowered when they do not. Returns the
    smallest mask that reached the collapse, or the last one (``reached`` False)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    side = max(1, min(int(grid), h, w))
    m_logit = (torch.randn(1, 1, side, side, generator=g) * 0.1 - 1.0).requires_grad_(True)
    p_logit = (torch.randn(1, 3, side, side, generator=g) * 0.5).requires_grad_(True)
    opt = torch.optim.Adam([m_logit, p_logit], lr=lr)
    dev = model.device
    best = None
    last = None
    hits = 0
    for step in range(int(steps)):
        idx = torch.randint(0, n, (min(batch, n),), generator=g)
        x = images[idx].float().to(dev)
        if x.max() > 1.5:
            x = x / 255.0
        m = _upsample(torch.sigmoid(m_logit), h, w).to(dev)
        p = _upsample(torch.sigmoid(p_logit), h, w).to(dev)
        with torch.enable_grad():
            f = F.normalize(model.encode_image((1 - m) * x + m * p).float(), dim=-1)
            k = f.shape[0]
            cos = ((f @ f.T).sum() - k) / (k * (k - 1))
            size = m.mean()
            loss = (1 - cos) + lam * size
            gm, gp = torch.autograd.grad(loss, [m_logit, p_logit])
        opt.zero_grad()
        m_logit.grad, p_logit.grad = gm, gp
        opt.step()
        c, s = float(cos.detach()), float(size.detach())
        last = (c, s)
        if c >= collapse:
            hits += 1
            if best is None or s < best["mask_l1"]:
                best = {"mask_l1": s, "collapse": c, "step": step,
                        "mask": torch.sigmoid(m_logit).detach().clone()[0, 0],
                        "pattern": torch.sigmoid(p_logit).detach().clone()[0]}
        if step % 10 == 9:  # DECREE's schedule: tighten while collapsed, relax while not
            lam = lam * 1.5 if hits >= 5 else lam / 1.5
            hits = 0
        if task is not None:
            task.advance()
    if best is None:
        return {"mask_l1": 1.0, "collapse": last[0] if last else 0.0, "reached": False,
                "mask": torch.sigmoid(m_logit).detach()[0, 0], "pattern": torch.sigmoid(p_logit).detach()[0]}
    return {**best, "reached": True}


def _nested(t, decimals: int = 4) -> list:
    s = 10.0 ** decimals
    return (t.detach().cpu().double() * s).round().div(s).tolist()


def scan_inversion(ctx) -> list:
    """DECREE-style inversion on the suspect and on the reference; the statistic is
    how much smaller the suspect's collapsing mask is (1 - m_s / m_r)."""
    from dife_core.engine.embeddings import resolve_trigger, tower_key

    o = ctx.options
    kw = dict(steps=int(o["steps"]), batch=int(o["batch"]), grid=int(o["grid"]), lr=float(o["lr"]),
              collapse=float(o["collapse"]), lam=float(o["lambda"]), seed=ctx.seed)
    imgs = ctx.shadow.images
    with ctx.task("scan: invert image trigger", 2 * kw["steps"]) as task:
        sus = invert(ctx.suspect, imgs, task=task, **kw)
        ref = ctx.embeddings.memo(("dife-scan:inversion", tower_key(ctx.reference, "visual"), ctx.shadow.name,
                                   tuple(sorted(kw.items()))),
                                  lambda: invert(ctx.reference, imgs, task=task, **kw))
    ratio = sus["mask_l1"] / max(ref["mask_l1"], 1e-6)
    params = {"mask": _nested(sus["mask"]), "pattern": _nested(sus["pattern"])}
    trig = resolve_trigger({"name": "masked-pattern", "params": params})
    details = {"mask_l1": sus["mask_l1"], "reference_mask_l1": ref["mask_l1"], "reached": sus["reached"],
               "reference_reached": ref["reached"], "collapse": sus["collapse"], "reference_collapse": ref["collapse"]}
    # the inverted trigger's own target readout: TS on the suspect against TS on the reference
    ts = _ts_finding(ctx, trig, {"channel": "image", "name": "masked-pattern", "params": params},
                     "inverted-ts-excess", float(o["ts_threshold"]), dict(details))
    ts["summary"].update({"mask_l1": round(sus["mask_l1"], 5), "reference_mask_l1": round(ref["mask_l1"], 5)})
    # DECREE's statistic: how much smaller the suspect's collapsing mask is than the reference's
    shrink = {**ts, "statistic": "mask-shrink", "value": sus["mask_l1"], "reference_value": ref["mask_l1"],
              "score": 1.0 - ratio, "threshold": float(o["threshold"]),
              "details": {**details, "ts_excess": ts["score"]}, "summary": dict(ts["summary"])}
    if not sus["reached"]:
        shrink["score"], shrink["card"] = 0.0, None  # never collapsed: no trigger found
    if ts["score"] < float(o["min_ts_excess"]):
        shrink["card"] = None  # a small collapsing mask that moves nothing to a target: nothing to audit
    for f in (shrink, ts):
        f["optimised"] = True  # a trigger optimised against the suspect (dife_core.scan._rank)
    return [shrink, ts]


# -- the recovered trigger's family ------------------------------------------------------------

def make_masked_pattern(mask=(), pattern=()):
    """``x' = (1 - m) x + m p`` with ``m`` ``[k][k]`` and ``p`` ``[3][k][k]`` in [0, 1],
    both resized bilinearly to the image (the form a mask inversion recovers)."""
    import torch

    if mask is None or len(mask) == 0 or pattern is None or len(pattern) == 0:
        raise ValueError("mask ([k][k]) and pattern ([3][k][k]) are required, values in [0, 1]")
    try:
        m = torch.as_tensor(mask, dtype=torch.float32)
        p = torch.as_tensor(pattern, dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"mask and pattern must be nested lists of numbers: {e}") from e
    if (m.ndim != 2 or m.shape[0] != m.shape[1] or p.ndim != 3 or p.shape[0] != 3
            or tuple(p.shape[1:]) != tuple(m.shape)):
        raise ValueError(f"mask must be [k][k] and pattern [3][k][k]; got {list(m.shape)} and {list(p.shape)}")
    if not bool(torch.isfinite(m).all() and torch.isfinite(p).all()) or m.min() < 0 or m.max() > 1 \
            or p.min() < 0 or p.max() > 1:
        raise ValueError("mask and pattern values must lie in [0, 1]")
    m4, p4 = m.view(1, 1, *m.shape), p.unsqueeze(0)

    def apply(images, *, seed: int = 0):
        _, _, h, w = images.shape
        mm = _upsample(m4, h, w).to(device=images.device, dtype=images.dtype)
        pp = _upsample(p4, h, w).to(device=images.device, dtype=images.dtype)
        return ((1 - mm) * images + mm * pp).clamp(0.0, 1.0)

    return apply


TRIGGERS = (
    Trigger(name="masked-pattern", channel="image", make=make_masked_pattern,
            description=("Pattern blended in through a soft mask, x' = (1 - m) x + m p "
                         "(what dife scan's inversion recovers)"),
            defaults={"mask": [], "pattern": []}),
)
