"""Run a demo suite (build + audit) and store a JSON summary of its figures.

    export DIFE_CACHE_DIR=/path/to/cache            # builds and the clean model are reused from here
    .venv/bin/python benchmarks/suite_runs.py --suite all-attacks --out dife-all
    .venv/bin/python benchmarks/suite_runs.py --suite all-attacks --out dife-all-seeds \\
        --seeds 0,1,2 --only badencoder,badtexttower,toxictextclip,liang-badclip,contrastive-poisoning,bai-badclip
    .venv/bin/python benchmarks/suite_runs.py --suite all-attacks --out dife-all-seeds --seeds 0,1,2 \\
        --reuse dife-all/results.json --clean $DIFE_CACHE_DIR/shapes/clip-default-s0-KEY   # no build at all
    .venv/bin/python benchmarks/suite_runs.py --summarize dife-all/results.json --markdown   # + issue tables

The suite runs through ``dife_core.demo`` (the same path as ``dife demo
--suite NAME``): its checkpoints are built into ``$DIFE_CACHE_DIR`` (reused
when identical) and audited into ``--out``. ``--seeds`` audits the built
checkpoints once per seed (no rebuild: the builds are those of the suite's
own seed) and ``--only`` keeps a subset of the suite's checkpoints.

The summary (``benchmarks/results/suite-<suite>[-seeds…].json`` unless
``--json`` says otherwise) holds, per checkpoint: every cell's status, value,
interval and reference; the footprint with its per-interface branch swaps,
``decided_on``, ``prediction_holds`` and mismatches; and the control rows.
With several seeds, each cell's value is the mean over the seeds, with its
``std`` and per-seed values (as results.json aggregates them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELL_KEYS = ("status", "value", "metric", "metrics", "ci_low", "ci_high", "n", "ci_method", "straddles", "reference",
             "baseline", "channel", "reason", "std", "per_seed", "per_seed_status", "per_seed_ci")
FOOTPRINT_KEYS = ("footprint", "probe", "readout", "signal", "a00", "a10", "a01", "a11", "vrs", "trs", "css",
                  "decided_on", "predicted_exposed", "predicted_weak", "prediction_holds", "mismatches", "repair",
                  "note", "reason", "per_seed")


def _threads() -> int:
    import torch

    n = int(os.environ.get("DIFE_TEST_THREADS") or 2)
    torch.set_num_threads(n)
    return n


def run_suite(suite: str, out: str, *, seeds=None, only=None, progress: bool = False) -> dict:
    """Build (or reuse) the suite's checkpoints, audit them into ``out`` and return results.json."""
    from dife_core.demo import demo_spec, suite_dir
    from dife_core.engine import run_audit
    from dife_core.engine.spec import AuditSpec

    d = suite_dir(suite)
    spec = demo_spec(suite=suite, progress=progress)
    if only:
        keep = set(only)
        spec["checkpoints"] = [c for c in spec["checkpoints"] if c.get("name") in keep]
    if seeds and len(seeds) > 1:
        spec.pop("seed", None)
        spec["seeds"] = list(seeds)
    audit = AuditSpec.from_dict(spec, base_dir=d, where=str(d / "audit.toml"))
    out_p = Path(out)
    return run_audit(audit, out_p, resume=out_p.exists(), progress=progress, show_matrix=False)


def reuse_spec(suite: str, previous: str, clean: str, *, only=None) -> dict:
    """The suite's audit spec pointed at the checkpoints an earlier run audited
    (``previous``: its results.json) and at a clean checkpoint folder: no build
    and no recipe look-up, so an edit to the code that keys the build cache
    cannot trigger a rebuild between the two runs."""
    import tomllib

    from dife_core.demo import suite_dir

    d = suite_dir(suite)
    spec = tomllib.loads((d / "audit.toml").read_text(encoding="utf-8"))
    prev = json.loads(Path(previous).read_text())
    sources = {c["name"]: c["source"] for c in prev.get("checkpoints", []) if c.get("role") == "audited"}
    spec["checkpoints"] = [{"name": c["name"], "source": sources[c["name"]]} for c in spec["checkpoints"]
                           if c["name"] in sources and (not only or c["name"] in only)]
    spec["clean"] = {"name": spec["clean"].get("name", "clean"), "source": str(Path(clean).resolve())}
    return spec


def run_reused(suite: str, out: str, spec: dict, *, seeds=None, progress: bool = False) -> dict:
    from dife_core.demo import suite_dir
    from dife_core.engine import run_audit
    from dife_core.engine.spec import AuditSpec

    if seeds and len(seeds) > 1:
        spec.pop("seed", None)
        spec["seeds"] = list(seeds)
    d = suite_dir(suite)
    audit = AuditSpec.from_dict(spec, base_dir=d, where=str(d / "audit.toml"))
    out_p = Path(out)
    return run_audit(audit, out_p, resume=out_p.exists(), progress=progress, show_matrix=False)


def _pick(d: dict, keys) -> dict:
    return {k: d[k] for k in keys if k in d}


def summarize(results: dict) -> dict:
    """Per checkpoint: cells, footprint and controls (plus per-seed spread when several seeds)."""
    roles = {c["name"]: c for c in results.get("checkpoints", [])}
    by_ck: dict = {}
    for c in results.get("cells", []):
        row = by_ck.setdefault(c["checkpoint"], {"role": (roles.get(c["checkpoint"]) or {}).get("role"),
                                                 "control_of": (roles.get(c["checkpoint"]) or {}).get("control_of"),
                                                 "cells": {}})
        # several seeds: results.json gives the mean as value, plus std and per_seed
        row["cells"][c["interface"]] = _pick(c, CELL_KEYS)
    for f in results.get("footprints", []):
        row = by_ck.setdefault(f["checkpoint"], {"cells": {}})
        fp = _pick(f, FOOTPRINT_KEYS)
        fp["per_interface"] = {k: _pick(v, ("a00", "a10", "a01", "a11", "vrs", "trs", "css", "signal", "footprint",
                                            "reason")) for k, v in (f.get("per_interface") or {}).items()}
        row["footprint"] = fp
    return {
        "dife_version": results.get("dife_version"),
        "seed": results.get("seed"),
        "seeds": results.get("seeds"),
        "complete": results.get("complete"),
        "missing": results.get("missing"),
        "interfaces": [i["id"] for i in results.get("interfaces", [])],
        "thresholds": results.get("thresholds"),
        "clean_utility": {c["name"]: c.get("clean_utility") for c in results.get("checkpoints", [])},
        "checkpoints": by_ck,
        "controls": results.get("controls", []),
    }


# The interfaces of plugins/dife-interfaces-extra, in report order, with short column titles.
EXTRA = {"clip-score-filtering": "filter ΔPass", "clipscore-caption-eval": "CLIPScore win",
         "image-knn-retrieval": "image kNN ΔH@K", "text-semantic-search": "text search ΔH@K",
         "knn-classifier": "kNN head TS"}


def _value(c: dict) -> str:
    if c["status"] in ("n.e.", "error"):
        return {"n.e.": "N.E.", "error": "error"}[c["status"]]
    v = c["value"]
    s = f"{v:+.3f}" if c["card"].get("relative") else f"{v:.3f}"
    if c.get("std") is not None:
        s += f" ± {c['std']:.3f}"
    return s


def _reference(c: dict) -> str:
    """The cell's reference or baseline, in the card's own terms."""
    m = c.get("metrics") or {}
    if c["status"] in ("n.e.", "error"):
        return ""
    f = (lambda k: f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "?")
    return {"clip-score-filtering": f"untriggered {f('reference_pass_rate')}",
            "clipscore-caption-eval": f"untriggered {f('clean_input_win_rate')}",
            "image-knn-retrieval": f"H@K {f('h@k')} vs clean query {f('clean_h@k')}",
            "text-semantic-search": f"H@K {f('h@k')} vs clean query {f('clean_h@k')}",
            "knn-classifier": f"untriggered {f('clean_input_ts')}"}.get(c["interface"], "")


def prediction_share(results: dict, interfaces=tuple(EXTRA)) -> dict:
    """How often the footprint's card-derived prediction holds on ``interfaces``
    (measured cells of audited rows), with every miss and every measured cell
    the prediction does not cover."""
    cells = {(c["checkpoint"], c["interface"]): c for c in results.get("cells", [])}
    held, total, misses, uncovered = 0, 0, [], []
    for f in results.get("footprints", []):
        for iface in interfaces:
            c = cells.get((f["checkpoint"], iface))
            if c is None or c["status"] == "n.e.":
                continue
            if c["status"] == "error":
                misses.append({"checkpoint": f["checkpoint"], "interface": iface, "predicted": None,
                               "measured": "error", "reason": c.get("reason")})
                total += 1
                continue
            pred = ("exposed" if iface in (f.get("predicted_exposed") or []) else
                    "weak" if iface in (f.get("predicted_weak") or []) else None)
            if pred is None:
                why = ("confounded: the control is exposed there" if iface in (f.get("confounded") or [])
                       else "outside the footprint's rule")
                uncovered.append({"checkpoint": f["checkpoint"], "interface": iface, "measured": c["status"],
                                  "why": why})
                continue
            total += 1
            ok = (c["status"] == "exposed") == (pred == "exposed")
            held += ok
            if not ok:
                misses.append({"checkpoint": f["checkpoint"], "interface": iface, "predicted": pred,
                               "measured": c["status"], "value": c.get("value"), "footprint": f.get("footprint")})
    return {"held": held, "total": total, "share": held / total if total else None, "misses": misses,
            "uncovered": uncovered}


def extra_markdown(results: dict) -> str:
    """Every audited checkpoint × the extra interfaces (status, value, reference),
    the prediction share and the control rows."""
    cells = {(c["checkpoint"], c["interface"]): c for c in results.get("cells", [])}
    fps = {f["checkpoint"]: f for f in results.get("footprints", [])}
    out = ["| checkpoint | footprint | " + " | ".join(EXTRA.values()) + " |", "|---|---|" + "---|" * len(EXTRA)]
    rows = [c["name"] for c in results.get("checkpoints", []) if c.get("role") in ("audited", "control")]
    for name in rows:
        parts = [name, str((fps.get(name) or {}).get("footprint") or "(control)")]
        for iface in EXTRA:
            c = cells.get((name, iface))
            if c is None:
                parts.append("—")
                continue
            ref = _reference(c)
            parts.append(f"{c['status']} {_value(c)}" + (f" ({ref})" if ref else ""))
        out.append("| " + " | ".join(parts) + " |")
    share = prediction_share(results)
    out.append("")
    pct = f"{100 * share['share']:.0f} %" if share["share"] is not None else "n/a"
    out.append(f"Card-derived prediction holds on {share['held']} / {share['total']} measured cells ({pct}).")
    for m in share["misses"]:
        out.append(f"- miss: {m['checkpoint']} × {m['interface']}: predicted {m['predicted']}, "
                   f"measured {m['measured']}")
    for u in share["uncovered"]:
        out.append(f"- not covered by the prediction: {u['checkpoint']} × {u['interface']} ({u['measured']}; "
                   f"{u.get('why', '')})")
    flagged = [c for c in results.get("controls", []) if set(c.get("exposed") or ()) & set(EXTRA)]
    out.append("Controls flagged on an extra interface: " + (", ".join(
        f"{c['checkpoint']} ({', '.join(sorted(set(c['exposed']) & set(EXTRA)))})" for c in flagged) or "none") + ".")
    return "\n".join(out)


def footprint_markdown(results: dict) -> str:
    """Each audited row's footprint: which readout decided it, the four slots, the
    ratios, the prediction check, and the per-interface branch swaps that disagree."""
    n = (lambda v: "—" if v is None else f"{v:.3f}")
    out = ["| checkpoint | decided on | readout | a00 | a10 | a01 | a11 | VRS | TRS | CSS | footprint | prediction |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for f in results.get("footprints", []):
        pred = {True: "holds", False: "fails", None: "—"}[f.get("prediction_holds")]
        how = f.get("decided_on") or f.get("probe") or "—"
        out.append(f"| {f['checkpoint']} | {how} | {f.get('readout') or '—'} | "
                   + " | ".join(n(f.get(k)) for k in ("a00", "a10", "a01", "a11", "vrs", "trs", "css"))
                   + f" | {f.get('footprint') or f.get('reason')} | {pred} |")
        for m in f.get("mismatches") or []:
            notes.append(f"- {f['checkpoint']}: {m}")
        other = {k: v.get("footprint") for k, v in (f.get("per_interface") or {}).items()
                 if v.get("footprint") not in (None, f.get("footprint"))}
        if other:
            notes.append(f"- {f['checkpoint']}: per-interface branch swaps deciding otherwise: "
                         + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
    return "\n".join(out + ([""] + notes if notes else []))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all-attacks")
    ap.add_argument("--out", help="audit output folder (resumed when it exists)")
    ap.add_argument("--seeds", default="", help="comma-separated seeds, e.g. 0,1,2 (audit only; builds unchanged)")
    ap.add_argument("--only", default="", help="comma-separated checkpoint names to audit")
    ap.add_argument("--reuse", metavar="RESULTS_JSON",
                    help="audit the checkpoints of an earlier run (its results.json) instead of building")
    ap.add_argument("--clean", metavar="DIR", help="with --reuse: the clean reference checkpoint folder")
    ap.add_argument("--summarize", help="summarize an existing results.json instead of running")
    ap.add_argument("--json", help="where to write the summary (default benchmarks/results/suite-<suite>….json)")
    ap.add_argument("--markdown", action="store_true",
                    help="also print the extra-interface table and the prediction share (markdown)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    t0 = time.perf_counter()
    if args.summarize:
        results = json.loads(Path(args.summarize).read_text())
        command = None
    else:
        if not args.out:
            ap.error("--out is required unless --summarize")
        threads = _threads()
        if args.reuse:
            if not args.clean:
                ap.error("--reuse needs --clean DIR")
            spec = reuse_spec(args.suite, args.reuse, args.clean, only=only)
            results = run_reused(args.suite, args.out, spec, seeds=seeds, progress=args.progress)
        else:
            results = run_suite(args.suite, args.out, seeds=seeds, only=only, progress=args.progress)
        command = " ".join(["benchmarks/suite_runs.py"] + (argv if argv is not None else sys.argv[1:]))
    summary = summarize(results)
    summary["extra_interfaces_prediction"] = prediction_share(results)
    summary["run"] = {"suite": args.suite, "command": command,
                      "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                      "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared; timings are not benchmarks)",
                      "torch_threads": None if args.summarize else threads,
                      "wall_s": None if args.summarize else round(time.perf_counter() - t0, 1)}
    tag = args.suite + (f"-seeds{''.join(map(str, seeds))}" if len(seeds) > 1 else "")
    dest = Path(args.json) if args.json else HERE / "results" / f"suite-{tag}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n")
    print(f"summary: {dest}", file=sys.stderr)
    if args.markdown:
        print(extra_markdown(results))
        print()
        print(footprint_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
