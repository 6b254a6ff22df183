"""Measure the shapes world and the tiny CLIP recipe (the figures in docs/world.md).

    .venv/bin/python benchmarks/bench_world.py --recipe default --runs 3
    .venv/bin/python benchmarks/bench_world.py --recipe test --runs 3

Each run generates the world, trains the recipe from scratch (no cache) and
measures clean utility: zero-shot accuracy on the test set with
"a photo of a {}" and text->image precision@5 for class queries on the pool.
Prints one line per run, the medians, whether every run produced the same
weights fingerprint, and the load average (the machine may be shared: a
busy machine makes the wall times pessimistic; the training's CPU time is
the idle single-thread figure). ``--json FILE`` writes it all.
``--save`` also stores the last model in the recipe's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the acceptance uses 2)")
    ap.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    ap.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    ap.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    ap.add_argument("--json", default=None, help="write the measurements to this file")
    ap.add_argument("--save", action="store_true", help="store the last trained model in the cache")
    args = ap.parse_args(argv)

    import attrs
    import torch

    from dife_shapes import recipe as R
    from dife_shapes.world import make_world

    torch.set_num_threads(args.threads)
    r = R.get_recipe(args.recipe)
    if args.steps:
        r = attrs.evolve(r, steps=args.steps)
    if args.lr:
        r = attrs.evolve(r, lr=args.lr)
    if args.batch_size:
        r = attrs.evolve(r, batch_size=args.batch_size)
    runs = []
    for i in range(args.runs):
        load0 = os.getloadavg()[0]
        from dife_shapes import world as W

        W.generate.cache_clear()
        t0 = time.perf_counter()
        world = make_world(r.world, args.seed)
        t_world = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), time.process_time()
        enc = R.train_clean(r, args.seed, world=world, progress=sys.stderr.isatty())
        t_train, c_train = time.perf_counter() - t1, time.process_time() - c1
        util = R.clean_utility(enc, world)
        run = {"run": i + 1, "world_s": round(t_world, 1), "train_s": round(t_train, 1),
               "train_cpu_s": round(c_train, 1),
               "total_s": round(t_world + t_train, 1), "clean_acc": round(util["clean_acc"], 4),
               "t2i_p@5": round(util["t2i_p@5"], 4), "final_loss": round(enc.train_stats.final_loss, 4),
               "fingerprint": enc.fingerprint(), "load_before": round(load0, 2),
               "load_after": round(os.getloadavg()[0], 2)}
        runs.append(run)
        print(json.dumps(run), flush=True)
    med = {k: statistics.median(x[k] for x in runs) for k in ("world_s", "train_s", "train_cpu_s", "total_s",
                                                            "clean_acc", "t2i_p@5")}
    same = all(x["fingerprint"] == runs[0]["fingerprint"] for x in runs)
    out = {"recipe": attrs.asdict(r), "seed": args.seed, "threads": args.threads, "cpus": os.cpu_count(),
           "runs": runs, "median": med, "identical_fingerprints": same}
    print(f"median over {len(runs)} runs ({args.recipe} recipe, {args.threads} threads): "
          f"world {med['world_s']} s, training {med['train_s']} s (CPU time {med['train_cpu_s']} s), "
          f"total {med['total_s']} s, "
          f"zero-shot acc {med['clean_acc']:.3f}, t2i P@5 {med['t2i_p@5']:.3f}; "
          f"identical fingerprints: {same}")
    # a second run reuses the cached checkpoint: time saving + loading it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path

        from dife_core.checkpoint import save_checkpoint

        path = R.cache_path(r, args.seed, tmp)
        path.parent.mkdir(parents=True)
        save_checkpoint(enc, path, extra={"recipe_key": r.key(args.seed)})
        t = time.perf_counter()
        again = R._load_cached(r, args.seed, Path(path), "cpu")
        out["cache_load_s"] = round(time.perf_counter() - t, 2)
        out["cache_reload_same_fingerprint"] = again.fingerprint() == enc.fingerprint()
    print(f"cached checkpoint reloads in {out['cache_load_s']} s "
          f"(same fingerprint: {out['cache_reload_same_fingerprint']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if args.save:
        from dife_core.checkpoint import save_checkpoint

        path = R.cache_path(r, args.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(enc, path, extra={"recipe": attrs.asdict(r), "recipe_key": r.key(args.seed),
                                          "seed": args.seed, "world": world.name,
                                          "train_seconds": runs[-1]["train_s"], "clean_utility": util})
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
