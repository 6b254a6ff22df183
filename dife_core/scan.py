"""``dife scan``: find a backdoor nobody described, then audit what was found.

A scan takes a suspect checkpoint and the clean upstream reference, and:

1. diffs them tower by tower and tensor by tensor (:func:`tower_diff`),
   before any search;
2. runs every registered scanner (``register_scanners``; the built-in ones
   live in the ``dife-scan`` plugin), each returning *findings*: a statistic
   measured on the suspect and on the reference, its calibrated score, and,
   when it recovered a trigger, an attack card;
3. calibrates: a score is the suspect's statistic minus the reference's;
   with clean checkpoints given (``null``), each of them is scanned as a
   suspect too and the verdict carries its false-positive rate on them;
4. turns each finding over its threshold into a *recovered* attack card
   (``recovered = {scanner, statistic, score, threshold, ...}``) and audits
   the best one through :func:`dife_core.engine.run_audit`, with the
   reference as the clean branch (matrix, controls, footprint).

The scan record is written to ``scans.json`` in the output folder; the
reports add it to results.json as ``scans``. Models load only through
:func:`dife_core.loading.load_model`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import attrs

#: bump when a change alters what a scan measures (scanners, trigger families' scan points), so --resume rescans
SCAN_VERSION = 4
SCANS_FILE = "scans.json"
VERDICTS = ("backdoored", "clean", "inconclusive")
#: scan-wide options (``--option KEY=VALUE``); scanner options are ``SCANNER.KEY``
GLOBAL_OPTIONS = {
    "n_shadow": 256,  # clean shadow images drawn from the world's classification population
    "inconclusive_ratio": 0.5,  # a best score >= this share of its threshold (but below it) is inconclusive
    "audit": True,  # audit the best recovered card after the scan
    "max_findings": 5,  # findings kept per scanner in the record
    # a tower whose weights have at least this cosine with the reference's descends from it;
    # below, the two were trained apart and differential statistics compare seeds, not backdoors
    "lineage_cosine": 0.5,
}
#: weight files that are the towers themselves, not an extra component
_TOWER_FILES = {"dife.json", "model.safetensors", "open_clip_config.json", "open_clip_model.safetensors",
                "open_clip_pytorch_model.bin", "config.json", "model.safetensors.index.json", "pytorch_model.bin",
                "tokenizer", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                "special_tokens_map.json", "preprocessor_config.json", "spiece.model"}


# -- the context scanners receive --------------------------------------------------------------

@attrs.define
class ScanContext:
    """What a scanner sees: the suspect, the clean reference, the world, the
    shared embedding service (every inference pass goes through it), the
    scanner's options and a progress reporter."""

    suspect: Any
    reference: Any
    world: Any
    embeddings: Any
    options: dict
    device: str = "cpu"
    seed: int = 0
    progress: Any = None
    shadow: Any = None  # LabelledImages: the clean shadow images
    templates: tuple = ()
    tower_diff: Optional[dict] = None

    # shared readouts ------------------------------------------------------------------------
    def image_features(self, model, trigger=None):
        """L2-normalised features of the shadow images (``trigger`` applied) -- cached."""
        from .engine.embeddings import CLEAN

        return self.embeddings.images(model, self.shadow.name, self.shadow.images, trigger or CLEAN)

    def class_features(self, model):
        """Class-prompt text features (first template), one row per class."""
        return self.embeddings.texts(model, [self.templates[0].format(c) for c in self.world.classnames])

    def zero_shot(self, model, trigger=None):
        """Strict-argmax zero-shot predictions of the shadow images (-1 on a tie)."""
        from .metrics import strict_argmax

        return strict_argmax(self.image_features(model, trigger) @ self.class_features(model).T)

    def target_success(self, model, trigger=None) -> list:
        """Per class t: the share of shadow images not of class t that go to t."""
        import numpy as np

        pred = self.zero_shot(model, trigger).numpy()
        labels = np.asarray(self.shadow.labels)
        out = []
        for t in range(len(self.world.classnames)):
            keep = labels != t
            out.append(float((pred[keep] == t).mean()) if keep.any() else 0.0)
        return out

    def task(self, label: str, total: int):
        from .progress import Progress

        return (self.progress or Progress(False)).task(label, total)


def shadow_set(world, n: int, seed: int = 0):
    """``n`` clean images of the world's classification population (a fixed,
    seeded, class-balanced draw), as a LabelledImages with a stable name."""
    import numpy as np

    from .errors import InvalidInputError
    from .populations import LabelledImages

    pop = world.classification or world.shadow or world.pool
    if pop is None or len(pop) == 0:
        raise InvalidInputError(f"world {world.name!r} has no classification, shadow or pool images to scan with.")
    labels = np.asarray(pop.labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    # round-robin over classes so every class is represented
    per = {c: [i for i in order if labels[i] == c] for c in sorted(set(labels.tolist()))}
    picked: list = []
    while len(picked) < min(n, len(labels)):
        for c in list(per):
            if per[c]:
                picked.append(per[c].pop(0))
            if len(picked) >= n:
                break
    idx = np.array(sorted(picked))
    return LabelledImages(name=f"{pop.name}[scan:{n}:{seed}]", images=pop.images[idx], labels=labels[idx],
                          classnames=pop.classnames)


# -- 1. tower diff ------------------------------------------------------------------------------

def _layer(name: str) -> str:
    """The layer a tensor belongs to: its name without the last component."""
    parts = name.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 else name


def tower_diff(suspect, reference, *, path: Optional[str] = None, top: int = 5,
               lineage_cosine: float = GLOBAL_OPTIONS["lineage_cosine"]) -> dict:
    """Which tower changed, how much and where (relative L2 per tensor), before any search.

    ``{"branches": {branch: {identical, tensors, changed, rel_l2, max_rel_l2,
    cosine, derived, top_tensors, top_layers}}, "logit_scale": {...},
    "extra": [...], "identical_towers": bool, "not_derived": [...], "summary": str}``.

    ``cosine`` is the cosine of the tower's flattened weights with the
    reference's; ``derived`` says it is at least ``lineage_cosine``: a
    fine-tune keeps its base's weights' direction (cosine near 1), two
    independent trainings do not (near 0). Only a derived tower can be
    searched *differentially* against the reference.
    """
    import torch

    out: dict = {"branches": {}, "extra": []}
    for branch in ("visual", "text"):
        a, b = suspect.branch_state(branch), reference.branch_state(branch)
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        per: dict = {}
        num = den = dot = na = 0.0
        mismatch = []
        for k in sorted(set(a) & set(b)):
            x, y = a[k].detach().float().cpu(), b[k].detach().float().cpu()
            if x.shape != y.shape:
                mismatch.append(k)
                continue
            d = float(torch.linalg.vector_norm(x - y)) if not torch.equal(x, y) else 0.0
            n = float(torch.linalg.vector_norm(y))
            per[k] = d / (n + 1e-12)
            num += d * d
            den += n * n
            dot += float((x.double() * y.double()).sum())
            na += float(torch.linalg.vector_norm(x)) ** 2
        layers: dict = {}
        for k, v in per.items():
            layers[_layer(k)] = max(layers.get(_layer(k), 0.0), v)
        changed = [k for k, v in per.items() if v > 0]
        cosine = dot / ((na ** 0.5) * (den ** 0.5) + 1e-12) if per else 0.0
        entry = {
            "identical": not changed and not only_a and not only_b and not mismatch,
            "tensors": len(per), "changed": len(changed),
            "rel_l2": (num ** 0.5) / (den ** 0.5 + 1e-12),
            "max_rel_l2": max(per.values(), default=0.0),
            "cosine": cosine, "derived": bool(per) and not mismatch and cosine >= float(lineage_cosine),
            "top_tensors": [{"name": k, "rel_l2": per[k]} for k in sorted(per, key=lambda k: -per[k])[:top]
                            if per[k] > 0],
            "top_layers": [{"layer": k, "rel_l2": layers[k]} for k in sorted(layers, key=lambda k: -layers[k])[:top]
                           if layers[k] > 0],
        }
        if only_a or only_b or mismatch:
            entry["unmatched"] = {"suspect_only": only_a[:20], "reference_only": only_b[:20],
                                  "shape_mismatch": mismatch[:20]}
        out["branches"][branch] = entry
    ls_a, ls_b = float(suspect.logit_scale), float(reference.logit_scale)
    out["logit_scale"] = {"suspect": ls_a, "reference": ls_b, "identical": ls_a == ls_b}
    # extra components: state-dict entries outside both towers, and files beside the weights
    for k in sorted(suspect.state_dict()):
        if not suspect.is_visual_param(k) and not suspect.is_text_param(k) and "logit_" not in k:
            out["extra"].append({"kind": "tensor", "name": k})
    if path and os.path.isdir(path):
        for e in sorted(os.listdir(path)):
            if e not in _TOWER_FILES and not e.startswith("."):
                p = Path(path) / e
                size = p.stat().st_size if p.is_file() else None
                out["extra"].append({"kind": "file", "name": e, "bytes": size})
    same = all(b["identical"] for b in out["branches"].values())
    out["identical_towers"] = same
    out["changed_branches"] = [b for b, v in out["branches"].items() if not v["identical"]]
    out["not_derived"] = [b for b, v in out["branches"].items() if not v["derived"]]
    if same:
        out["summary"] = ("towers identical to the reference" +
                          ("; extra component present" if out["extra"] else "; nothing else shipped"))
    else:
        out["summary"] = "; ".join(f"{b} tower changed (relative L2 {v['rel_l2']:.3g}, {v['changed']}/"
                                   f"{v['tensors']} tensors" + ("" if v["derived"] else
                                                                f"; not derived: weight cosine {v['cosine']:.2f}")
                                   + ")" if not v["identical"] else f"{b} tower identical"
                                   for b, v in out["branches"].items())
        if out["extra"]:
            out["summary"] += "; extra component present"
    return out


# -- 2.-4. scanners, calibration, verdict ----------------------------------------------------

def parse_options(items) -> dict:
    """``["k=v", "image-inversion.steps=50"]`` -> a dict; values read as JSON when they parse
    (numbers, booleans, lists), else kept as strings."""
    from .errors import InvalidInputError

    out: dict = {}
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise InvalidInputError(f"--option {item!r}: expected KEY=VALUE.")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise InvalidInputError(f"--option {item!r}: the key is empty.")
        try:
            from .untrusted import parse_json

            val = parse_json(v, f"--option {k}")
        except Exception:  # noqa: BLE001 -- not JSON: a plain string
            val = v
        out[k] = val
    return out


def split_options(options: dict, scanners: dict) -> tuple:
    """``(global options, {scanner: options})`` with defaults filled; unknown keys are input errors."""
    from .errors import InvalidInputError

    glob = dict(GLOBAL_OPTIONS)
    # every scanner has ``decides``: whether its findings may decide a verdict alone
    per = {n: {"decides": True, **s.options} for n, s in scanners.items()}
    for k, v in (options or {}).items():
        if "." in k:
            sname, key = k.split(".", 1)
            if sname not in scanners:
                raise InvalidInputError(f"--option {k}: no scanner {sname!r}; scanners: {', '.join(sorted(scanners))}.")
            if key not in per[sname]:
                raise InvalidInputError(f"--option {k}: scanner {sname!r} has no option {key!r}; options: "
                                        f"{', '.join(sorted(per[sname]))}.")
            per[sname][key] = _typed(k, v, per[sname][key])
        elif k in glob:
            glob[k] = _typed(k, v, glob[k])
        else:
            raise InvalidInputError(f"--option {k}: unknown scan option; scan options: {', '.join(sorted(glob))}, "
                                    f"or SCANNER.KEY for a scanner's own (`dife scan --help`).")
    return glob, per


def _typed(key: str, value, default):
    """``value`` if it has the kind of its default (a boolean, a number, a list, a
    string), else an input error naming the option."""
    from .errors import InvalidInputError

    kind = (bool if isinstance(default, bool) else (int, float) if isinstance(default, (int, float))
            else list if isinstance(default, list) else str)
    if not isinstance(value, kind) or (kind == (int, float) and isinstance(value, bool)):
        want = {bool: "true or false", list: "a JSON list", str: "a string"}.get(kind, "a number")
        raise InvalidInputError(f"--option {key}={value!r}: expected {want} (default {default!r}).")
    if isinstance(value, float) and value != value:
        raise InvalidInputError(f"--option {key}: NaN is not a value.")
    return value


#: the towers a scanner's trigger channel searches ("none": natural data, read through both)
_CHANNEL_TOWERS = {"image": ("visual",), "text": ("text",), "none": ("visual", "text"), "weights": ()}


def _norm(f: dict) -> float:
    t = float(f.get("threshold") or 0) or 1.0
    return float(f.get("score") or 0.0) / t


def run_scanners(ctx_kwargs: dict, scanners: dict, per_options: dict, progress=None) -> list:
    """Every scanner on one suspect; findings sorted best first (score / threshold)."""
    findings = []
    order = sorted(scanners.values(), key=lambda s: (s.order, s.name))
    from .progress import Progress

    prog = progress or Progress(False)
    td = ctx_kwargs.get("tower_diff") or {}
    branches = td.get("branches") or {}
    with prog.task("scan", len(order)) as bar:
        for s in order:
            bar.describe(f"scan: {s.name}")
            # a trigger channel whose tower is bit-identical to the reference carries nothing to find;
            # one whose tower was trained apart from the reference has no null to be compared with
            towers = _CHANNEL_TOWERS.get(s.channel, ("visual", "text"))
            skip = None
            if len(towers) == 1 and (branches.get(towers[0]) or {}).get("identical"):
                skip = ("skipped", f"the {towers[0]} tower is bit-identical to the reference")
            apart = [t for t in towers if t in branches and not branches[t].get("derived", True)]
            if skip is None and apart:
                skip = ("not-derived", f"the {' and '.join(apart)} tower does not descend from the reference "
                                       f"(weight cosine {min(branches[t]['cosine'] for t in apart):.2f}): a "
                                       "differential search would compare two trainings, not find a backdoor")
            if skip is not None:
                findings.append({"scanner": s.name, "channel": s.channel, "statistic": skip[0], "score": 0.0,
                                 "threshold": 1.0, "card": None, "seconds": 0.0, "details": {"note": skip[1]}})
                bar.advance()
                continue
            ctx = ScanContext(options=dict(per_options.get(s.name, {})), progress=progress, **ctx_kwargs)
            t0 = time.perf_counter()
            try:
                got = list(s.run(ctx) or [])
            except Exception as e:  # a broken scanner is reported, the others still run
                if os.environ.get("DIFE_DEBUG"):
                    import traceback

                    traceback.print_exc()
                got = [{"statistic": "error", "score": 0.0, "threshold": 1.0, "card": None,
                        "error": f"{type(e).__name__}: {e}"}]
            for f in got:
                f.setdefault("scanner", s.name)
                f.setdefault("channel", s.channel)
                f["decides"] = bool(per_options.get(s.name, {}).get("decides", True))
                f["seconds"] = round(time.perf_counter() - t0, 3)
            findings.extend(got)
            bar.advance()
    return sorted(findings, key=lambda f: -_norm(f))


def _decides(f: dict, tdiff: dict) -> bool:
    """Whether a finding may decide a verdict: its scanner decides, and every
    tower descends from the reference (with one trained apart, the suspect is
    no fine-tune of it, and every differential statistic compares two
    trainings: the clean seeds of the benchmark reach the attacks' inversion
    values so)."""
    return bool(f.get("decides", True)) and not tdiff.get("not_derived")


def _rank(f: dict) -> tuple:
    """Order of deciding findings: a trigger that was *given* (a family's scan
    point, a trigger-free readout, the fine-tune's own drifted tokens) before
    one *optimised* against the suspect (an inversion, a whole-vocabulary
    token search: adversarial searches that find something in any model), then
    score / threshold."""
    return (bool(f.get("optimised")), -_norm(f))


def verdict_of(findings: list, tdiff: dict, glob: dict) -> dict:
    """The checkpoint's verdict from its best finding (and its tower diff): the
    best deciding one over its threshold that recovered a card (:func:`_rank`),
    else the best lead, else the best overall."""
    hits = sorted((f for f in findings if f.get("card") is not None and _norm(f) >= 1.0 and _decides(f, tdiff)),
                  key=_rank)
    leads = [f for f in findings if _norm(f) >= 1.0 and not _decides(f, tdiff)]
    best = hits[0] if hits else leads[0] if leads else findings[0] if findings else None
    score = float(best["score"]) if best else 0.0
    thr = float(best["threshold"]) if best else 1.0
    ratio = score / thr if thr else 0.0
    if hits:
        verdict = "backdoored"
        why = f"{best['scanner']}: {best['statistic']} {score:.3f} >= threshold {thr:.3f}"
    elif leads:
        verdict = "inconclusive"
        why = (f"{best['scanner']}: {best['statistic']} {score:.3f} >= threshold {thr:.3f}"
               + (f" toward {best['target']}" if best.get("target") else "")
               + (f", but the {', '.join(tdiff['not_derived'])} tower does not descend from the reference: a lead"
                  if tdiff.get("not_derived") else
                  f", but {best['scanner']} does not decide alone (its statistic overlaps clean models): a lead"))
    elif tdiff.get("identical_towers") and tdiff.get("extra"):
        verdict = "inconclusive"
        why = tdiff["summary"] + "; the scan searched the towers only"
    elif any(f.get("statistic") == "not-derived" for f in findings):
        verdict = "inconclusive"
        apart = ", ".join(tdiff.get("not_derived") or ()) or "a"
        why = (f"the {apart} tower does not descend from the reference, so its channel could not be searched "
               f"against it; nothing reached a threshold elsewhere"
               + (f" (best: {best['statistic']} {score:.3f} / {thr:.3f})" if best and score > 0 else ""))
    elif ratio >= float(glob["inconclusive_ratio"]):
        verdict = "inconclusive"
        why = f"{best['scanner']}: {best['statistic']} {score:.3f} below threshold {thr:.3f} but near it"
    else:
        verdict = "clean"
        why = ("towers bit-identical to the reference" if tdiff.get("identical_towers") else
               f"no statistic reached its threshold (best: {best['statistic']} {score:.3f} / {thr:.3f})" if best
               else "no scanner ran")
    return {"verdict": verdict, "score": score, "threshold": thr, "normalised_score": ratio,
            "statistic": best.get("statistic") if best else None, "scanner": best.get("scanner") if best else None,
            "why": why}


def recovered_cards(findings: list, tdiff: dict) -> list:
    """A recovered attack card per finding at or over its threshold (route unknown;
    modifies: the towers the diff found changed)."""
    from .cards import AttackCard

    out = []
    seen = set()
    for f in sorted(findings, key=_rank):
        card = f.get("card")
        if card is None or _norm(f) < 1.0 or not _decides(f, tdiff):
            continue
        key = json.dumps([card.get("trigger"), card.get("source"), card.get("target")], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        c = dict(card)
        c.setdefault("attack", f"recovered-{f['scanner']}")
        c.setdefault("title", f"recovered by dife scan ({f['scanner']})")
        c["route"] = "unknown"
        c.setdefault("modifies", tdiff.get("changed_branches") or ["visual", "text"])
        c["recovered"] = {"scanner": f["scanner"], "statistic": f["statistic"], "value": f.get("value"),
                          "reference_value": f.get("reference_value"), "score": f["score"],
                          "threshold": f["threshold"], **{k: v for k, v in (f.get("summary") or {}).items()}}
        AttackCard.from_dict(c).require_valid(f"recovered card ({f['scanner']})")
        out.append(c)
    return out


def _fpr(null_scores: list, thr_ratio: float = 1.0) -> Optional[float]:
    if not null_scores:
        return None
    return sum(1 for s in null_scores if s >= thr_ratio) / len(null_scores)


def scan_key(suspect, reference, world, glob, per, names) -> str:
    blob = json.dumps({"v": SCAN_VERSION, "suspect": suspect.fingerprint(), "reference": reference.fingerprint(),
                       "world": world.name, "options": glob, "scanners": per, "names": sorted(names)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def scan_checkpoint(suspect, reference, world, *, name: str, path: Optional[str] = None, options=None,
                    nulls=(), device: str = "cpu", seed: int = 0, progress=None, embeddings=None) -> dict:
    """Scan one suspect against ``reference`` on ``world``; return its scan record.

    ``nulls``: ``[(name, encoder)]`` clean checkpoints scanned as suspects for
    the false-positive rate. ``options``: scan options (docs/scan.md).
    """
    from .engine.embeddings import EmbeddingService
    from .engine.evaluate import world_templates
    from .plugins import get_registry

    t0 = time.perf_counter()
    scanners = get_registry().all("scanners")
    glob, per = split_options(options or {}, scanners)
    emb = embeddings or EmbeddingService(seed=seed, progress=progress)
    shadow = shadow_set(world, int(glob["n_shadow"]), seed)
    templates = tuple(world_templates(world, "first"))
    tdiff = tower_diff(suspect, reference, path=path, lineage_cosine=float(glob["lineage_cosine"]))

    def ctx_kwargs(model, td):
        return {"suspect": model, "reference": reference, "world": world, "embeddings": emb, "device": device,
                "seed": seed, "shadow": shadow, "templates": templates or tuple(world.templates), "tower_diff": td}

    if tdiff["identical_towers"]:
        findings = []  # nothing in the towers to find: the diff says so
    else:
        findings = run_scanners(ctx_kwargs(suspect, tdiff), scanners, per, progress)
    null_records = []
    for nname, nmodel in nulls:
        ntd = tower_diff(nmodel, reference, lineage_cosine=float(glob["lineage_cosine"]))
        nf = [] if ntd["identical_towers"] else run_scanners(ctx_kwargs(nmodel, ntd), scanners, per, progress)
        null_records.append({"checkpoint": nname, "normalised_score": max((_norm(f) for f in nf), default=0.0),
                             "best": _slim(nf[0]) if nf else None})
    v = verdict_of(findings, tdiff, glob)
    null_scores = [r["normalised_score"] for r in null_records]
    cards = recovered_cards(findings, tdiff) if v["verdict"] == "backdoored" else []
    best_card = cards[0] if cards else None
    keep = int(glob["max_findings"])
    by_scanner: dict = {}
    for f in findings:
        by_scanner.setdefault(f["scanner"], [])
        if len(by_scanner[f["scanner"]]) < keep:
            by_scanner[f["scanner"]].append(_slim(f))
    return {
        "checkpoint": name, "source": path, **v,
        "target": best_card.get("target") if best_card else None,
        "source_class": best_card.get("source") if best_card else None,
        "recovered": cards, "tower_diff": tdiff,
        "findings": [f for fs in by_scanner.values() for f in fs],
        "calibration": {"against": "reference"
                        + (f" + {len(null_records)} clean checkpoint(s)" if null_records else ""),
                        "null": null_records,
                        "false_positive_rate": _fpr(null_scores),
                        "note": None if null_records else "no clean checkpoints given: the false-positive rate is "
                                                          "unknown; scores are calibrated against the reference only"},
        "options": {"scan": glob, "scanners": per}, "scanners": sorted(scanners),
        "seconds": round(time.perf_counter() - t0, 2),
        "key": scan_key(suspect, reference, world, glob, per, scanners),
    }


def _slim(f: dict) -> dict:
    """A finding for the record: everything but bulky arrays."""
    return {k: v for k, v in f.items() if k not in ("arrays",)}


# -- the command's work: scan, then audit -------------------------------------------------------

def read_scans(out_dir) -> list:
    """The scan records stored in ``out_dir`` (empty when none)."""
    from .errors import InvalidInputError
    from .outdir import read_bytes_nofollow

    p = Path(out_dir) / SCANS_FILE
    if not p.is_file():
        return []
    try:
        data = json.loads(read_bytes_nofollow(p).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{p}: not valid JSON ({e}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("scans"), list):
        raise InvalidInputError(f"{p}: key scans is missing or not a list.")
    return data["scans"]


def write_scans(out_dir, scans: list) -> None:
    from .outdir import write_text_atomic
    from .safetext import json_dumps

    write_text_atomic(out_dir, SCANS_FILE, json_dumps({"scan_version": SCAN_VERSION, "scans": scans}, indent=2) + "\n")


def _load(source, loader, device, trust, name):
    from .loading import load_model

    enc = load_model(str(source), loader=loader, trust=trust, device=device, name=name)
    return enc.eval()


def checkpoint_name(source: str) -> str:
    base = Path(str(source).rstrip("/")).name or "suspect"
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in base)[:64] or "suspect"


def run_scan(checkpoint, reference, out_dir, *, dataset: str, dataset_options=None, options=None,
             nulls=(), device: str = "cpu", resume: bool = False, force: bool = False, progress: bool = True,
             loader: str = "auto", reference_loader: str = "auto", seed: int = 0, name: Optional[str] = None,
             interfaces="all") -> dict:
    """``dife scan``: scan ``checkpoint`` against ``reference``, audit what was
    recovered, write scans.json, results.json and the reports into ``out_dir``.
    Returns the results dict (with ``scans``)."""
    from .outdir import check_out_dir, make_out_dir
    from .populations import load_world
    from .progress import Progress

    out = Path(out_dir)
    # a scan interrupted before its audit began leaves only scans.json: still our folder
    only_scan = out.is_dir() and {e for e in os.listdir(out) if not e.startswith(".")} == {SCANS_FILE}
    check_out_dir(out, resume=resume, force=force or (resume and only_scan))
    make_out_dir(out)
    prog = Progress(progress)
    name = name or checkpoint_name(checkpoint)
    ref_name = "reference" if name != "reference" else "reference-model"
    dataset_options = dict(dataset_options or {})
    world = load_world(dataset, dataset_options, where="dife scan --dataset")
    with prog:
        suspect = _load(checkpoint, loader, device, False, name)
        ref = _load(reference, reference_loader, device, False, ref_name)
        null_models = [(checkpoint_name(n), _load(n, "auto", device, False, checkpoint_name(n))) for n in nulls]
        from .plugins import get_registry

        glob, per = split_options(options or {}, get_registry().all("scanners"))
        key = scan_key(suspect, ref, world, glob, per, get_registry().all("scanners"))
        old = [s for s in read_scans(out) if s.get("key") == key] if resume else []
        if old:
            record = old[0]
        else:
            record = scan_checkpoint(suspect, ref, world, name=name,
                                     path=str(checkpoint) if os.path.isdir(str(checkpoint)) else None,
                                     options=options, nulls=null_models, device=device, seed=seed, progress=prog)
        write_scans(out, [record])
    if not glob.get("audit", True):
        record = {**record, "recovered": []}  # audit without a card: utility only, every cell N.E.
    spec = audit_spec_for(record, checkpoint, reference, loader=loader, reference_loader=reference_loader,
                          dataset=dataset, dataset_options=dataset_options, device=device, seed=seed,
                          interfaces=interfaces, ref_name=ref_name)
    from .engine import run_audit

    # the folder was checked above; it now holds scans.json, so the audit may write beside it
    return run_audit(spec, out, resume=resume, progress=progress, force=True)


def audit_spec_for(record: dict, checkpoint, reference, *, loader="auto", reference_loader="auto",
                   dataset: str, dataset_options=None, device="cpu", seed=0, interfaces="all",
                   ref_name="reference") -> dict:
    """The audit spec (dict) that audits a scan's best recovered card, reference as clean."""
    ck = {"name": record["checkpoint"], "source": str(Path(str(checkpoint)).resolve())
          if os.path.exists(str(checkpoint)) else str(checkpoint), "loader": loader}
    if record.get("recovered"):
        ck["attack"] = record["recovered"][0]
    return {"seed": int(seed), "device": device, "interfaces": interfaces, "controls": True,
            "populations": {"dataset": dataset, "options": dict(dataset_options or {})},
            "clean": {"name": ref_name, "source": str(Path(str(reference)).resolve())
                      if os.path.exists(str(reference)) else str(reference), "loader": reference_loader},
            "checkpoints": [ck]}


def prepass(spec, world, models: dict, *, progress=None, device: str = "cpu", seed: int = 0,
            previous=()) -> dict:
    """The audit's scan pre-pass: ``{checkpoint name: scan record}`` for every
    checkpoint of ``spec`` that asks for a scan (``scan = true`` or a table of
    scan options), scanned against the spec's clean reference. The runner then audits each with its best recovered card.
    ``previous``: stored scan records (``--resume``); one whose key matches is reused."""
    from .plugins import get_registry

    out = {}
    clean = models.get(spec.clean.name) if spec.clean is not None else None
    if clean is None:
        return out
    scanners = get_registry().all("scanners")
    old = {r.get("key"): r for r in previous or () if isinstance(r, dict)}
    for ck in spec.checkpoints:
        want = getattr(ck, "scan", None)  # true, false, None (unset) or a table of scan options
        m = models.get(ck.name)
        if m is None or want is False:
            continue
        if not want:  # scans cost minutes: only on request
            continue
        options = dict(want) if isinstance(want, dict) else {}
        glob, per = split_options(options, scanners)
        key = scan_key(m, clean, world, glob, per, scanners)
        if key in old and old[key].get("checkpoint") == ck.name:
            out[ck.name] = old[key]
            continue
        out[ck.name] = scan_checkpoint(m, clean, world, name=ck.name,
                                       path=ck.source if os.path.isdir(str(ck.source)) else None,
                                       options=options, device=device, seed=seed, progress=progress)
    return out


def recovered_card(record: Optional[dict]) -> Optional[dict]:
    """The card a scanned checkpoint is audited with: its best recovered card, or None."""
    rec = (record or {}).get("recovered") or []
    return rec[0] if rec else None


__all__ = ["ScanContext", "tower_diff", "scan_checkpoint", "run_scan", "read_scans", "write_scans",
           "audit_spec_for", "prepass", "recovered_card", "parse_options", "VERDICTS", "SCANS_FILE"]
