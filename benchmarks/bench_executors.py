"""Local vs Ray executor on one machine: 20 checkpoints of the embedded world.

    .venv/bin/python benchmarks/bench_executors.py --checkpoints 20 --runs 1 --threads 2 \\
        --json benchmarks/results/executors-2threads.json
    .venv/bin/python benchmarks/bench_executors.py --checkpoints 20 --runs 3 --threads 1 \\
        --json benchmarks/results/executors-1thread.json
    .venv/bin/python benchmarks/bench_executors.py --checkpoints 20 --runs 3 --threads 1 --weights path \\
        --json benchmarks/results/executors-1thread-path.json

(``--clean PATH`` takes a saved clean test-recipe checkpoint instead of
training one.)

The checkpoints are the clean test-recipe CLIP (``dife_shapes.testing.
clean_test_clip``, the small ``test`` preset world) with every weight
perturbed by Gaussian noise (0.1 % of the tensor's std, one seed per
checkpoint), each carrying the same image-patch attack card, found through
one ``glob:`` source. Controls are off (20 identical control rows would only
repeat the clean reference's cells). The same audit runs with ``--executor
local`` (this process, ``--threads`` torch threads) and over a local Ray
cluster (``--num-cpus`` workers of one thread each); the records of the two
are checked to be identical. Also measured: Ray start-up, the round trip of
an empty task, and the per-tower encode cost (the clean model's visual tower
over the pool and test images, its text tower over captions and prompts),
from which docs/scale-out.md estimates the audit on N GPU workers.

Wall times on a shared machine are noisy: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CARD = {"attack": "badnet-patch", "modifies": "both towers", "source": "automobile", "target": "airplane",
        "probe": "branch-swap", "trigger": {"channel": "image", "name": "patch", "params": {"size": 0.125}}}


def clean_model(path=None):
    """The clean test-recipe CLIP: trained (or cached) by dife_shapes.testing, or a saved copy at ``path``."""
    if path:
        from dife_core.loading import load_model

        return load_model(path).eval()
    from dife_shapes.testing import clean_test_clip

    return clean_test_clip()


def make_checkpoints(work: Path, n: int, clean=None) -> Path:
    import torch

    from dife_core.checkpoint import save_checkpoint

    save_checkpoint(clean_model(clean), work / "clean")
    for i in range(n):
        enc = clean_model(clean)
        g = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for p in enc.model.parameters():
                if p.is_floating_point() and p.numel() > 1:
                    p.add_(torch.randn(p.shape, generator=g) * 1e-3 * float(p.std()))
        enc.invalidate_fingerprint()
        save_checkpoint(enc, work / "zoo" / f"ft-{i:02d}")
    spec = f"""# bench_executors.py: {n} perturbed test-recipe checkpoints
seed = 0
controls = false
[populations]
dataset = "shapes"
options = {{preset = "test", seed = 0}}
[clean]
name = "clean"
source = "clean"
[[checkpoints]]
source = "glob:zoo/*/"
[checkpoints.attack]
{chr(10).join(f'{k} = {json.dumps(v)}' for k, v in CARD.items() if k != 'trigger')}
trigger = {{ channel = "image", name = "patch", params = {{ size = 0.125 }} }}
"""
    (work / "audit.toml").write_text(spec)
    return work / "audit.toml"


def records(out) -> dict:
    from dife_core.engine.store import CellStore

    store = CellStore(out)
    plan = store.last("plan")["record"]
    latest = store.latest()
    store.close()
    return {x["key"]: latest[x["key"]]["record"] for part in ("utilities", "cells", "footprints")
            for x in plan[part]}


def encode_cost(batch_size: int, clean=None) -> dict:
    """Seconds to encode the test world once per tower with the clean model (fresh cache)."""
    from dife_core.engine.embeddings import EmbeddingService
    from dife_shapes.testing import shapes_test_world

    world, enc = shapes_test_world(), clean_model(clean)
    images = [(n, p.images) for n, p in (("pool", world.pool), ("test", world.classification)) if p is not None]
    strings = list(world.pool.captions) + [t.format(c) for t in world.templates for c in world.classnames]
    emb = EmbeddingService(batch_size=batch_size, seed=0)
    emb.images(enc, images[0][0], images[0][1][:8])  # warm-up
    emb.texts(enc, strings[:8])
    emb = EmbeddingService(batch_size=batch_size, seed=0)
    t0 = time.perf_counter()
    n_img = 0
    for name, px in images:
        emb.images(enc, name, px)
        n_img += len(px)
    t1 = time.perf_counter()
    emb.texts(enc, strings)
    t2 = time.perf_counter()
    return {"visual_s": t1 - t0, "images": n_img, "text_s": t2 - t1, "strings": len(strings)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--runs", type=int, default=1, help="runs of each executor (the median is reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the local executor")
    ap.add_argument("--num-cpus", type=int, default=2, help="CPUs (one-thread workers) of the local Ray cluster")
    ap.add_argument("--json", default=None, help="write the measurements to this file")
    ap.add_argument("--weights", default="object-store", choices=("object-store", "path"),
                    help="how Ray tasks get their checkpoints (RayExecutor(weights=...))")
    ap.add_argument("--clean", default=None, help="a saved clean test-recipe checkpoint folder (default: train or "
                                                  "take it from the cache through dife_shapes.testing)")
    ap.add_argument("--work", default=None, help="folder for the checkpoints and runs (default: a temporary one)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="dife-bench-executors-"))
    work.mkdir(parents=True, exist_ok=True)
    from dife_core.engine import load_spec, run_audit
    from dife_core.executors import LOOPBACK, RayExecutor

    t0 = time.perf_counter()
    spec_path = make_checkpoints(work, args.checkpoints, args.clean)
    print(f"made {args.checkpoints} checkpoints in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    spec = load_spec(spec_path)
    out = {"checkpoints": args.checkpoints, "threads": args.threads, "num_cpus": args.num_cpus,
           "cpu_count": os.cpu_count(), "loadavg_start": os.getloadavg(), "runs": args.runs,
           "weights": args.weights}
    out["encode"] = encode_cost(spec.batch_size, args.clean)
    print(f"encode cost: {out['encode']}", file=sys.stderr)

    local = []
    for r in range(args.runs):
        d = work / f"local-{r}"
        shutil.rmtree(d, ignore_errors=True)
        t = time.perf_counter()
        run_audit(spec, d, progress=False, show_matrix=False)
        local.append(time.perf_counter() - t)
        print(f"local run {r}: {local[-1]:.1f} s", file=sys.stderr)

    import ray

    t = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK)
    out["ray_start_s"] = time.perf_counter() - t

    @ray.remote(num_cpus=1)
    def nothing():
        return None

    ray.get([nothing.remote() for _ in range(args.num_cpus * 2)])  # workers up
    t = time.perf_counter()
    ray.get([nothing.remote() for _ in range(200)])
    out["empty_task_s"] = (time.perf_counter() - t) / 200
    remote, stats = [], []
    for r in range(args.runs):
        d = work / f"ray-{r}"
        shutil.rmtree(d, ignore_errors=True)
        ex = RayExecutor(weights=args.weights)
        t = time.perf_counter()
        run_audit(spec, d, progress=False, show_matrix=False, executor=ex)
        remote.append(time.perf_counter() - t)
        stats.append(ex.stats)
        print(f"ray run {r}: {remote[-1]:.1f} s ({ex.stats})", file=sys.stderr)
    ray.shutdown()

    same = records(work / "local-0") == records(work / "ray-0")
    tasks = stats[0]["tasks"]
    out.update({
        "local_wall_s": local, "ray_wall_s": remote,
        "local_median_s": statistics.median(local), "ray_median_s": statistics.median(remote),
        "ray_tasks": tasks, "records_identical": same, "loadavg_end": os.getloadavg(),
        # worker-seconds a task costs beyond the same unit in-process (local counted as one worker):
        # each task loads its checkpoint and the clean reference, and encodes the clean reference
        # again (the embedding cache is per process), besides Ray's own scheduling and transfer
        "local_s_per_unit": statistics.median(local) / stats[0]["units"],
        "ray_worker_s_per_task": statistics.median(remote) * args.num_cpus / tasks,
        "ray_overhead_per_task_s": (statistics.median(remote) * args.num_cpus - statistics.median(local)) / tasks,
        # inside the workers (first run): loading checkpoints / world, and computing; the rest of
        # wall x CPUs is Ray's own cost (scheduling, transfers, idle workers at the tail)
        "ray_task_load_s": stats[0]["load_s"] / tasks, "ray_task_compute_s": stats[0]["compute_s"] / tasks,
        "ray_own_s_per_task": (remote[0] * args.num_cpus - stats[0]["load_s"] - stats[0]["compute_s"]) / tasks,
    })
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
