"""Where the data filter's attacker pairs score against the true pairs (docs/findings.md).

For every audited row of a suite audit whose trigger enters through image
pixels: the cosine of every (triggered non-target pool image, target-class
caption) pair, with and without the trigger, against the cosines of the
pool's true pairs, through the same embedding service the audit uses. It
shows why a top-fraction CLIP-score filter stays weak although the
triggered image prefers the target caption: the trigger raises the attacker
pairs' score, but not to the level of true pairs.

    DIFE_CACHE_DIR=CACHE .venv/bin/python benchmarks/filter_scores.py AUDIT_DIR/results.json \
        [--fraction 0.3] [--json benchmarks/results/filter-scores.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def quantiles(x, qs=(0.1, 0.5, 0.9)) -> dict:
    import torch

    return {f"q{int(q * 100)}": round(float(torch.quantile(x.float(), q)), 4) for q in qs}


def row_scores(row: dict, world, emb, fraction: float) -> dict:
    import torch

    from dife_core.engine.embeddings import resolve_trigger
    from dife_core.loading import load_model
    from dife_interfaces_extra.filtering import cut as filter_cut

    card = row["attack"]
    trigger = resolve_trigger(card.get("trigger"), where=f"{row['name']}: trigger")
    model = load_model(row["source"], loader=row.get("loader") or "auto")
    pool = world.pool
    labels = torch.as_tensor(pool.labels).long()
    tgt = list(world.classnames).index(card["target"])
    att = torch.nonzero((labels >= 0) & (labels != tgt)).flatten()
    xi = emb.images(model, pool.name, pool.images)
    xt = emb.texts(model, pool.captions)
    xi_t = emb.images(model, pool.name, pool.images, trigger)
    true = (xi * xt).sum(dim=-1)
    cut = filter_cut(true, "top-fraction", 0.0, fraction)  # the card's own cut
    trig = (xi_t[att] @ xt[labels == tgt].T).flatten()
    clean = (xi[att] @ xt[labels == tgt].T).flatten()
    med = float(trig.median())
    return {"checkpoint": row["name"], "true_pairs": quantiles(true), "attacker_triggered": quantiles(trig),
            "attacker_untriggered": quantiles(clean), "cut": round(cut, 4),
            "true_below_attacker_median": round(float((true < med).float().mean()), 4),
            "attacker_pass_rate": float((trig >= cut).float().mean()), "n_attacker_pairs": int(trig.numel())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="results.json of a suite audit (e.g. benchmarks/suite_runs.py --out DIR)")
    ap.add_argument("--fraction", type=float, default=0.3, help="the filter's top fraction (the card's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.populations import load_world

    results = json.loads(Path(args.results).read_text())
    w = results["spec"]["populations"]
    world = load_world(w["dataset"], w.get("options") or {})
    emb = EmbeddingService(batch_size=int(results["spec"].get("batch_size") or 256), store=None)
    rows = []
    for row in results["checkpoints"]:
        trig = (row.get("attack") or {}).get("trigger") or {}
        if row.get("role") != "audited" or trig.get("channel") != "image":
            continue
        r = row_scores(row, world, emb, args.fraction)
        rows.append(r)
        print(f"{r['checkpoint']:24s} true q50 {r['true_pairs']['q50']:.3f}  attacker q50 "
              f"{r['attacker_untriggered']['q50']:.3f} -> {r['attacker_triggered']['q50']:.3f}  "
              f"true below it {r['true_below_attacker_median']:.3f}  cut {r['cut']:.3f}  "
              f"pass {r['attacker_pass_rate']:.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": args.results, "fraction": args.fraction, "rows": rows},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
