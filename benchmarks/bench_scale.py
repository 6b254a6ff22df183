"""Scale measurements (docs/scale.md): audit / encode floor, pool growth, a CIFAR-shaped audit.

    # (b) the default demo's warm audit / its encode floor; before / after lazy world rendering
    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale-demo.json demo --runs 3
    # (c) candidate pools of 10k, 100k, 1M (default recipe architecture): wall and peak RSS
    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale-pools.json pools \
        --sizes 10000 100000 1000000
    # (d) a CIFAR-10-shaped audit: 10,000 test + 50,000 train images, 32 px upsampled to 224, ImageFolder
    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale-cifar.json cifar
    # (b) on a CLIP-sized audit: open_clip ViT-B-32 (random weights, 224 px), whole audit / its encode floor
    .venv/bin/python benchmarks/bench_scale.py --json benchmarks/results/scale-clip-audit.json clip-audit --runs 3

Every measurement runs in a fresh child process (``--child``), so peak RSS
(``ru_maxrss``) is that run's own and imports are counted in process walls.

``demo``: the demo's checkpoints must be built (``dife demo`` once, or a
cache folder given with ``--cache-src``, copied, never written). The *encode
floor* is measured in the same child after the audit: every encode job the
audit ran (each unique tower x input set x trigger once, recorded at
``encode_shard``) is run again as a bare loop (``encode_image`` /
``encode_text`` + L2 normalisation, same batches, same dtype and threads) on
its already-triggered inputs. Modes: ``before`` draws every world split
eagerly with no disk cache (the behaviour before lazy rendering), ``cold``
is lazy with an empty world cache, ``warm`` lazy with the world cache filled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(kind: str, params: dict, env=None, timeout=3600) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(HERE), "--child", kind, json.dumps({**params, "t_launch": t0})],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["child_wall_s"] = wall
    return out


def _machine() -> dict:
    import platform

    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]}


# -- (b) demo audit / encode floor -------------------------------------------------------

def _record_encode_jobs():
    """Wrap ``encode_shard`` so every job the audit runs is recorded (inputs kept for the floor)."""
    from dife_core.engine import embeddings as E

    jobs, spent = [], [0.0]
    orig = E.encode_shard

    def wrapped(encoder, branch, rows, trigger, *, seed, batch_size):
        t = time.perf_counter()
        out = orig(encoder, branch, rows, trigger, seed=seed, batch_size=batch_size)
        spent[0] += time.perf_counter() - t
        jobs.append((encoder, branch, rows, trigger, seed, batch_size))
        return out

    E.encode_shard = wrapped
    return jobs, spent


def _floor(jobs) -> float:
    """Bare encoder passes over the recorded jobs' (already triggered) inputs."""
    import torch
    import torch.nn.functional as F

    from dife_core.engine.embeddings import _source, autocast_context

    total = 0.0
    for encoder, branch, rows, trigger, seed, bs in jobs:
        src = _source(encoder, branch)
        if branch == "visual":
            x = rows.float().div(255.0) if rows.dtype == torch.uint8 else rows
            if trigger.fn is not None and trigger.channel == "image":
                x = trigger.fn(x, seed=seed)
            n = int(x.shape[0])
        else:
            x = list(rows)
            if trigger.fn is not None and trigger.channel == "text":
                x = list(trigger.fn(x))
            n = len(x)
        t = time.perf_counter()
        with torch.inference_mode(), autocast_context(src.device):
            for lo in range(0, n, bs):
                b = x[lo:lo + bs]
                f = src.encode_image(b) if branch == "visual" else src.encode_text(b)
                F.normalize(f.float(), dim=-1).cpu()
        total += time.perf_counter() - t
    return total


def child_demo(p: dict) -> dict:
    import torch

    torch.set_num_threads(p["threads"])
    t_import = time.time()
    from dife_core.engine.runner import run_audit
    from dife_core.engine.spec import AuditSpec

    if p["mode"] == "before":  # every split drawn when the world is made, as before lazy rendering
        from dife_shapes import world as W

        make = W.make_world

        def eager(*a, **k):
            w = make(*a, **k)
            for pop in (w.classification, w.train, w.pool, w.shadow, w.extras.get("train_pairs")):
                if pop is not None:
                    _ = pop.images
            return w

        W.make_world = eager
    jobs, spent = _record_encode_jobs()
    t0 = time.time()
    run_audit(AuditSpec.from_dict(p["spec"], base_dir=p["base"], where="demo audit"), p["out"], progress=False,
              force=True)
    t_end = time.time()
    floor = _floor(jobs)
    return {"mode": p["mode"], "process_wall_s": t_end - p["t_launch"], "in_process_wall_s": t_end - t0,
            "imports_s": t0 - t_import, "encode_s": spent[0], "encode_floor_s": floor, "encode_jobs": len(jobs),
            "peak_rss_mb": _rss_mb()}


def demo_audit_spec(cache: Path, suite: str = "default", clean_prefix: str = "clip-default-s0") -> dict:
    """examples/default/audit.toml with its checkpoints pointed at the builds in
    ``cache`` (the newest folder per name): the audit ``dife demo`` runs, on
    warm builds, without recomputing build keys (which would retrain after any
    code change)."""
    import tomllib

    from dife_core.demo import suite_dir

    spec = tomllib.loads((suite_dir(suite) / "audit.toml").read_text())

    def newest(folder: Path, prefix: str) -> str:
        found = sorted((d for d in folder.glob(prefix + "-*") if d.is_dir()), key=lambda d: d.stat().st_mtime)
        if not found:
            raise SystemExit(f"no build {prefix}-* in {folder}: build the demo first (dife demo)")
        return str(found[-1])

    spec["clean"] = {"name": spec["clean"]["name"], "source": newest(cache / "shapes", clean_prefix)}
    for ck in spec["checkpoints"]:
        ck["source"] = newest(cache / "checkpoints", ck["name"])
    return spec


def bench_demo(args) -> dict:
    from dife_core.demo import suite_dir

    work = Path(tempfile.mkdtemp(prefix="dife-bench-demo-"))
    cache = work / "cache"
    if args.cache_src:
        shutil.copytree(args.cache_src, cache, ignore=shutil.ignore_patterns("*.lock", "world", "embeddings"))
    else:
        cache = Path(os.environ.get("DIFE_CACHE_DIR") or Path.home() / ".cache" / "dife")
    spec = demo_audit_spec(cache, args.suite, args.clean_prefix)
    rows = []
    try:
        for r in range(args.runs):
            for mode in ("before", "cold", "warm"):
                env = {"DIFE_CACHE_DIR": str(cache), "DIFE_EMBED_STORE": "off"}
                if mode == "before":
                    env["DIFE_WORLD_CACHE"] = "off"
                elif mode == "cold":
                    shutil.rmtree(cache / "world", ignore_errors=True)
                out = _child("demo", {"mode": mode, "threads": args.threads, "out": str(work / f"out-{mode}-{r}"),
                                      "spec": spec, "base": str(suite_dir(args.suite))}, env=env)
                out["ratio_process_over_floor"] = out["process_wall_s"] / out["encode_floor_s"]
                out["ratio_in_process_over_floor"] = out["in_process_wall_s"] / out["encode_floor_s"]
                print(json.dumps(out), flush=True)
                rows.append(out)
    finally:  # the copied cache and the audits' folders (gigabytes): the JSON keeps the figures
        shutil.rmtree(work, ignore_errors=True)
    med = {}
    for mode in ("before", "cold", "warm"):
        rs = [x for x in rows if x["mode"] == mode]
        med[mode] = {k: statistics.median(x[k] for x in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
    return {"what": "default demo's warm audit (examples/default/audit.toml on cached builds) / its encode floor",
            "runs": rows, "median": med, "spec": spec}


# -- (c) candidate pools -------------------------------------------------------------------

def _synthetic_source(n: int, size: int):
    """n images drawn a shard at a time (seeded per row block): nothing held but the shard being read."""
    import numpy as np
    import torch

    from dife_core.populations import ImageSource

    class Synthetic(ImageSource):
        item_shape = (3, size, size)

        def __len__(self):
            return n

        def content_key(self):
            return f"synthetic:{n}:{size}"

        def read(self, lo, hi):
            rng = np.random.default_rng(lo)
            base = rng.integers(0, 256, (hi - lo, 3, 1, 1))
            noise = rng.integers(-40, 40, (hi - lo, 3, size, size))
            return torch.from_numpy(np.clip(base + noise, 0, 255).astype(np.uint8))

    return Synthetic()


def child_pool(p: dict) -> dict:
    import torch

    torch.set_num_threads(p["threads"])
    from dife_core import metrics as M
    from dife_core.engine.embeddings import EmbeddingService
    from dife_openclip.encoder import build_custom
    from dife_shapes import recipe as R

    torch.manual_seed(0)
    model = build_custom(R.get_recipe("default").architecture, name="default-arch")
    n, q = p["n"], p["queries"]
    t0 = time.time()
    emb = EmbeddingService(store=None, batch_size=p["batch"])
    xi = emb.images(model, f"pool-{n}", _synthetic_source(n, 32))
    t_img = time.time() - t0
    owner = torch.arange(q) * (n // q)
    xt = emb.texts(model, [f"a synthetic picture number {int(i)}" for i in owner])
    t1 = time.time()
    r = M.chunked_best_positive_rank(xt, xi, owner, torch.arange(n), chunk=p["chunk"])
    t_rank = time.time() - t1
    return {"n": n, "queries": q, "encode_images_s": t_img, "rank_s": t_rank, "total_s": time.time() - t0,
            "process_wall_s": time.time() - p["t_launch"], "peak_rss_mb": _rss_mb(),
            "features_mb": xi.numel() * 4 / 2**20, "mean_rank": float(r.float().mean())}


def bench_pools(args) -> dict:
    rows = []
    for n in args.sizes:
        out = _child("pool", {"n": n, "queries": args.queries, "batch": args.batch, "chunk": args.chunk,
                              "threads": args.threads}, env={"DIFE_EMBED_STORE": "off"})
        out["s_per_1k_items"] = out["total_s"] / (n / 1000)
        print(json.dumps(out), flush=True)
        rows.append(out)
    return {"what": "candidate pool growth: stream-encode N images (default recipe architecture, random "
                    "weights, 32 px) + rank queries over them (chunked)", "rows": rows}


# -- (d) CIFAR-shaped audit --------------------------------------------------------------------

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
REDUCED = {"embed_dim": 64, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32,
                                           "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def write_cifar_folder(root: Path, n_test: int, n_train: int) -> None:
    """32-pixel class-coloured images upsampled to 224 (bicubic), JPEG, ROOT/{test,train}/<class>/."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (10, 3))
    for split, n in (("test", n_test), ("train", n_train)):
        for i in range(n):
            c = i % 10
            d = root / split / CIFAR[c]
            d.mkdir(parents=True, exist_ok=True)
            small = np.clip(colours[c] + rng.normal(0, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(small).resize((224, 224), Image.BICUBIC).save(d / f"{i:05d}.jpg", quality=90)


def child_cifar(p: dict) -> dict:
    import torch

    torch.set_num_threads(p["threads"])
    from dife_core.engine.runner import run_audit

    jobs, spent = _record_encode_jobs() if p.get("floor") else (None, [None])
    t0 = time.time()
    res = run_audit(p["spec"], p["out"], progress=False, force=True)
    t_end = time.time()
    statuses = sorted({c.get("status") for c in res.get("cells", [])})
    out = {"in_process_wall_s": t_end - t0, "process_wall_s": t_end - p["t_launch"],
           "peak_rss_mb": _rss_mb(), "cells": len(res.get("cells", [])), "statuses": statuses,
           "clean_utility": [ck.get("clean_utility") for ck in res.get("checkpoints", [])][:1]}
    if jobs is not None:
        out.update(encode_s=spent[0], encode_floor_s=_floor(jobs), encode_jobs=len(jobs))
    return out


def _folder_audit_spec(root: Path, batch: int) -> dict:
    """The ImageFolder audit of ROOT (test/, train/, model-0/, model-1/): clean + one suspect with a
    patch-trigger card, controls, every interface."""
    return {"seed": 0, "interfaces": "all", "controls": True, "batch_size": batch,
            "populations": {"dataset": "imagefolder",
                            "options": {"path": str(root / "test"), "train_path": str(root / "train"),
                                        "image_size": 224, "source": "automobile", "target": "airplane"}},
            "clean": {"name": "clean", "source": str(root / "model-0")},
            "checkpoints": [{"name": "suspect", "source": str(root / "model-1"),
                             "attack": {"attack": "badnet-patch", "modifies": "both towers", "source": "automobile",
                                        "target": "airplane", "probe": "branch-swap",
                                        "trigger": {"channel": "image", "name": "patch",
                                                    "params": {"size": 0.125}}}}]}


def _write_models(root: Path, architecture: dict, name: str) -> None:
    import torch

    from dife_openclip.encoder import build_custom
    from dife_openclip.testing import write_open_clip_folder

    for seed in (0, 1):
        if not (root / f"model-{seed}").is_dir():
            torch.manual_seed(seed)
            write_open_clip_folder(build_custom(architecture, name=f"{name}-{seed}"), root / f"model-{seed}")


def bench_cifar(args) -> dict:
    root = Path(args.root)
    if not (root / "train").is_dir():
        t = time.time()
        write_cifar_folder(root, args.n_test, args.n_train)
        print(f"wrote the ImageFolder in {time.time() - t:.0f} s", file=sys.stderr)
    _write_models(root, REDUCED, "reduced")
    spec = _folder_audit_spec(root, args.batch)
    out = _child("cifar", {"spec": spec, "out": str(root / "out"), "threads": args.threads},
                 env={"DIFE_EMBED_STORE": "off"}, timeout=6 * 3600)
    print(json.dumps(out), flush=True)
    return {"what": f"CIFAR-10-shaped audit: {args.n_test} test + {args.n_train} train images, 32 px upsampled to "
                    f"224, ImageFolder (JPEG); reduced-size open_clip ViT (width 64, 2 layers, patch 32) at 224 px; "
                    f"clean + one suspect checkpoint", "model": REDUCED, "result": out}


def bench_clip_audit(args) -> dict:
    """(b) on a CLIP-sized audit: open_clip ViT-B-32 at its real size (random weights, 224 px), the
    ImageFolder audit of bench_cifar at a small size, whole audit / its encode floor, median of runs."""
    import open_clip

    root = Path(args.root)
    if not (root / "train").is_dir():
        write_cifar_folder(root, args.n_test, args.n_train)
    arch = open_clip.get_model_config("ViT-B-32")
    _write_models(root, arch, "vit-b-32")
    spec = _folder_audit_spec(root, args.batch)
    rows = []
    for r in range(args.runs):
        out = _child("cifar", {"spec": spec, "out": str(root / f"out-{r}"), "threads": args.threads, "floor": True},
                     env={"DIFE_EMBED_STORE": "off"}, timeout=6 * 3600)
        out["ratio_in_process_over_floor"] = out["in_process_wall_s"] / out["encode_floor_s"]
        out["ratio_process_over_floor"] = out["process_wall_s"] / out["encode_floor_s"]
        print(json.dumps(out), flush=True)
        rows.append(out)
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    return {"what": f"CLIP-sized audit: open_clip ViT-B-32 (random weights, 224 px), clean + one suspect with a "
                    f"patch card and controls, every interface, on an ImageFolder of {args.n_test} test + "
                    f"{args.n_train} train images (32 px upsampled to 224); the encode floor is every encode job "
                    f"the audit ran, once, as a bare loop in the same process", "rows": rows,
            "median": {k: statistics.median(x[k] for x in rows) for k in keys}}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, params = sys.argv[2], json.loads(sys.argv[3])
        fn = {"demo": child_demo, "pool": child_pool, "cifar": child_cifar}[kind]
        print(json.dumps(fn(params)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo")
    d.add_argument("--runs", type=int, default=3)
    d.add_argument("--cache-src", default=None, help="a cache folder holding the demo's builds (copied, read-only)")
    d.add_argument("--suite", default="default", help="examples/<suite>/audit.toml")
    d.add_argument("--clean-prefix", default="clip-default-s0", help="the clean model's folder in CACHE/shapes")
    p = sub.add_parser("pools")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=65536)
    c = sub.add_parser("cifar")
    c.add_argument("--root", default="/tmp/dife-bench-cifar")
    c.add_argument("--n-test", type=int, default=10_000)
    c.add_argument("--n-train", type=int, default=50_000)
    c.add_argument("--batch", type=int, default=256)
    a = sub.add_parser("clip-audit")
    a.add_argument("--root", default="/tmp/dife-bench-clip-audit")
    a.add_argument("--n-test", type=int, default=200)
    a.add_argument("--n-train", type=int, default=200)
    a.add_argument("--batch", type=int, default=64)
    a.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    run = {"demo": bench_demo, "pools": bench_pools, "cifar": bench_cifar, "clip-audit": bench_clip_audit}
    rec = run[args.cmd](args)
    rec["machine"] = _machine()
    rec["threads"] = args.threads
    if args.json:
        Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
