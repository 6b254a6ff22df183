"""Run a demo suite (build + audit) and store a JSON summary of its figures.

    export DIFE_CACHE_DIR=/path/to/cache            # builds and the clean model are reused from here
    .venv/bin/python benchmarks/suite_runs.py --suite all-attacks --out dife-all
    .venv/bin/python benchmarks/suite_runs.py --suite all-attacks --out dife-all-seeds \\
        --seeds 0,1,2 --only badencoder,badtexttower,toxictextclip,liang-badclip,contrastive-poisoning,bai-badclip
    .venv/bin/python benchmarks/suite_runs.py --summarize dife-all/results.json   # summary of an existing run

The suite runs through ``dife_core.demo`` (the same path as ``dife demo
--suite NAME``): its checkpoints are built into ``$DIFE_CACHE_DIR`` (reused
when identical) and audited into ``--out``. ``--seeds`` audits the built
checkpoints once per seed (no rebuild: the builds are those of the suite's
own seed) and ``--only`` keeps a subset of the suite's checkpoints.

The summary (``benchmarks/results/suite-<suite>[-seeds…].json`` unless
``--json`` says otherwise) holds, per checkpoint: every cell's status, value,
interval and reference; the footprint with its per-interface branch swaps,
``decided_on``, ``prediction_holds`` and mismatches; and the control rows.
With several seeds, each cell also gets the mean and standard deviation of
its value over the seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CELL_KEYS = ("status", "value", "metric", "metrics", "ci_low", "ci_high", "n", "ci_method", "straddles", "reference",
             "baseline", "channel", "reason")
FOOTPRINT_KEYS = ("footprint", "probe", "readout", "signal", "a00", "a10", "a01", "a11", "vrs", "trs", "css",
                  "decided_on", "predicted_exposed", "predicted_weak", "prediction_holds", "mismatches", "repair",
                  "note", "reason")


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
        entry = _pick(c, CELL_KEYS)
        seed = c.get("seed")
        if seed is None:
            row["cells"][c["interface"]] = entry
        else:
            row["cells"].setdefault(c["interface"], {"per_seed": {}})["per_seed"][str(seed)] = entry
    for row in by_ck.values():
        for iface, cell in row["cells"].items():
            if "per_seed" in cell:
                vals = [e["value"] for e in cell["per_seed"].values() if isinstance(e.get("value"), (int, float))]
                statuses = sorted({e["status"] for e in cell["per_seed"].values()})
                cell["statuses"] = statuses
                if vals:
                    cell["mean"] = statistics.fmean(vals)
                    cell["std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    for f in results.get("footprints", []):
        row = by_ck.setdefault(f["checkpoint"], {"cells": {}})
        fp = _pick(f, FOOTPRINT_KEYS)
        fp["per_interface"] = {k: _pick(v, ("a00", "a10", "a01", "a11", "vrs", "trs", "css", "signal", "footprint",
                                            "reason")) for k, v in (f.get("per_interface") or {}).items()}
        if f.get("seed") is None:
            row["footprint"] = fp
        else:
            row.setdefault("footprints_per_seed", {})[str(f["seed"])] = fp
    return {
        "dife_version": results.get("dife_version"),
        "seed": results.get("seed"),
        "seeds": (results.get("spec") or {}).get("seeds"),
        "complete": results.get("complete"),
        "missing": results.get("missing"),
        "interfaces": [i["id"] for i in results.get("interfaces", [])],
        "thresholds": results.get("thresholds"),
        "clean_utility": {c["name"]: c.get("clean_utility") for c in results.get("checkpoints", [])},
        "checkpoints": by_ck,
        "controls": results.get("controls", []),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all-attacks")
    ap.add_argument("--out", help="audit output folder (resumed when it exists)")
    ap.add_argument("--seeds", default="", help="comma-separated seeds, e.g. 0,1,2 (audit only; builds unchanged)")
    ap.add_argument("--only", default="", help="comma-separated checkpoint names to audit")
    ap.add_argument("--summarize", help="summarize an existing results.json instead of running")
    ap.add_argument("--json", help="where to write the summary (default benchmarks/results/suite-<suite>….json)")
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
        results = run_suite(args.suite, args.out, seeds=seeds, only=only, progress=args.progress)
        command = " ".join(["benchmarks/suite_runs.py"] + (argv if argv is not None else sys.argv[1:]))
    summary = summarize(results)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
