"""CLIP-sized measurements (docs/scale.md).

    # encode throughput of DIFE's embedding service / a raw torch loop, same tower and inputs
    .venv/bin/python benchmarks/bench_clip_sized.py throughput --n 256 --json benchmarks/results/throughput-cpu.json
    .venv/bin/python benchmarks/bench_clip_sized.py throughput --device cuda --models vit-b-32

    # DIFE's CLIP_benchmark-compatible keys against CLIP_benchmark 1.6.2 itself
    .venv/bin/python benchmarks/bench_clip_sized.py compare-cb --cb /tmp/cb/bin/clip_benchmark \\
        --json benchmarks/results/clip_benchmark_1.6.2.json

``throughput``: open_clip ViT-B-32 and RN50 and a Hugging Face CLIP ViT-B/32
config, random weights (nothing is downloaded) at 224 px. For each tower the
same N uint8 images go (a) through ``EmbeddingService.images`` (a streaming
source: decode thread, shards, trigger hook, normalisation, L2) and (b)
through a raw loop (``normalise`` + forward + L2, same batch, dtype and
threads); timings alternate (a, b) and the median of ``--runs`` is reported
with the ratio raw / service (>= 1 means the service is as fast).

``compare-cb``: writes a tiny open_clip model as a ``local-dir:`` folder
(open_clip_config.json + open_clip_model.safetensors), an ImageFolder and two
COCO-format caption sets, runs CLIP_benchmark's CLI (``--no_amp``, fp32) on
them, computes DIFE's keys on the same files, and records both.
:func:`make_cb_data` is deterministic; tests/test_clip_benchmark_keys.py
rebuilds it and checks DIFE's keys against the stored CLIP_benchmark outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CB_CLASSES = ("red square", "green ring", "blue cross", "yellow bar", "purple dot", "cyan wave", "orange grid",
              "white sky", "black road", "pink fog")
CB_TEMPLATES = ("a photo of a {c}.", "a drawing of a {c}.")
CB_SEED = 7


# -- CLIP_benchmark comparison ------------------------------------------------------------

def _write_png(path: Path, arr) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def make_cb_data(root) -> dict:
    """A tiny open_clip model (``root/model``), an ImageFolder (``root/cls``) and
    COCO caption sets with 1 (``root/coco1``) and 5 (``root/coco5``) captions
    per image, all at the model's 32 px (no resize on either side). Returns file hashes."""
    import numpy as np
    import torch

    from dife_openclip.testing import tiny_encoder, write_open_clip_folder

    root = Path(root)
    rng = np.random.default_rng(CB_SEED)
    enc = tiny_encoder("vit", seed=CB_SEED, name="cb-tiny")
    write_open_clip_folder(enc, root / "model")
    base = rng.integers(0, 256, (len(CB_CLASSES), 3))
    for c, name in enumerate(CB_CLASSES):
        for i in range(12):
            noise = rng.normal(0, 60, (32, 32, 3))
            arr = np.clip(base[c] + noise, 0, 255).astype(np.uint8)
            _write_png(root / "cls" / name.replace(" ", "_") / f"{i:02d}.png", arr)
    words = ["tiny", "bright", "old", "new", "striped", "round", "tall", "small", "noisy", "calm", "dark", "wide"]
    for per, n_img in ((1, 60), (5, 40)):
        coco = root / f"coco{per}"
        images, anns = [], []
        for i in range(n_img):
            arr = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
            fn = f"COCO_val2014_{i:012d}.png"
            _write_png(coco / "val2014" / fn, arr)
            images.append({"id": i + 1, "file_name": fn})
            for j in range(per):
                w = [words[int(k)] for k in rng.integers(0, len(words), 3)]
                anns.append({"id": len(anns) + 1, "image_id": i + 1,
                             "caption": f"a {w[0]} {w[1]} thing number {i} seen {j} times {w[2]}"})
        (coco / "coco_test_karpathy.json").write_text(json.dumps({"images": images, "annotations": anns}))
    torch.manual_seed(0)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_world_data(root, model_dir, preset: str = "test") -> dict:
    """A trained shapes-world model exported as an open_clip ``local-dir:``
    folder (``root/model``), the world's test split as an ImageFolder
    (``root/cls``) and its pool as COCO captions: every item (``root/coco1``,
    captions repeat) and only items whose caption is unique (``root/cocou``)."""
    import collections

    from dife_core.loading import load_model
    from dife_openclip.testing import write_open_clip_folder
    from dife_shapes.world import make_world

    root = Path(root)
    write_open_clip_folder(load_model(str(model_dir)), root / "model")
    w = make_world(preset)
    test = w.classification
    u8 = test.source.read(0, len(test)).numpy()
    for i in range(len(test)):
        _write_png(root / "cls" / w.classnames[int(test.labels[i])] / f"{i:05d}.png", u8[i].transpose(1, 2, 0))
    pool = w.pool
    pu8 = pool.source.read(0, len(pool)).numpy()
    count = collections.Counter(pool.captions)
    for sub, keep in (("coco1", range(len(pool))), ("cocou", [i for i in range(len(pool))
                                                              if count[pool.captions[i]] == 1])):
        images, anns = [], []
        for i in keep:
            fn = f"COCO_val2014_{i:012d}.png"
            _write_png(root / sub / "val2014" / fn, pu8[i].transpose(1, 2, 0))
            images.append({"id": i + 1, "file_name": fn})
            anns.append({"id": i + 1, "image_id": i + 1, "caption": pool.captions[i]})
        (root / sub / "coco_test_karpathy.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return {"classnames": list(w.classnames), "templates": [t.replace("{}", "{c}") for t in w.templates],
            "n_test": len(test), "n_pool": len(pool),
            "n_pool_unique_captions": sum(1 for c in count.values() if c == 1), "image_size": 32}


def dife_cb_keys(root, ks=(1, 5, 10), *, classnames=CB_CLASSES, templates=CB_TEMPLATES, image_size: int = 32,
                 cocos=("coco1", "coco5")) -> dict:
    """DIFE's CLIP_benchmark-compatible keys on :func:`make_cb_data`'s files
    (the model loaded through DIFE's own loader, features through the embedding service)."""
    import numpy as np

    from dife_core.builtins.datasets import load_imagefolder
    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.engine.scoring import class_weights, retrieval_keys, zero_shot_classification_keys
    from dife_core.loading import load_model
    from dife_core.populations import LabelledImages

    root = Path(root)
    model = load_model(f"local-dir:{root / 'model'}")
    emb = EmbeddingService(store=None)
    world = load_imagefolder(root / "cls", image_size=image_size, classnames=",".join(classnames))
    templates = [t.replace("{c}", "{}") for t in templates]
    w = class_weights(emb, model, world.classnames, templates)
    x = emb.images(model, world.classification.name, world.classification.images)
    out = {"zeroshot_classification": zero_shot_classification_keys(x, w, world.classification.labels)}
    from dife_core.builtins.datasets import decode_image

    for sub in cocos:
        coco = root / sub
        ann = json.loads((coco / "coco_test_karpathy.json").read_text())
        imgs = sorted(ann["images"], key=lambda r: r["id"])
        import torch

        px = torch.from_numpy(np.stack([decode_image(coco / "val2014" / r["file_name"], image_size) for r in imgs]))
        pop = LabelledImages(name=sub, images=px, labels=None, classnames=())
        xi = emb.images(model, pop.name, pop.images)
        caps, owner = [], []
        pos = {r["id"]: k for k, r in enumerate(imgs)}
        by_img: dict = {}
        for a in ann["annotations"]:  # torchvision's CocoCaptions order: per image, annotation order
            by_img.setdefault(a["image_id"], []).append(a["caption"])
        for r in imgs:
            for c in by_img.get(r["id"], []):
                caps.append(c)
                owner.append(pos[r["id"]])
        xt = emb.texts(model, caps)
        out[f"zeroshot_retrieval_{sub}"] = retrieval_keys(xi, xt, owner, ks=ks)
    return out


def run_cb(cb: str, root, out_dir, *, classnames=CB_CLASSES, templates=CB_TEMPLATES,
           cocos=("coco1", "coco5")) -> dict:
    """CLIP_benchmark 1.6.2's CLI on the same files: one JSON per task."""
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classnames.json").write_text(json.dumps({"imagenet_sketch": list(classnames)}))
    (out_dir / "templates.json").write_text(json.dumps({"imagenet_sketch": list(templates)}))
    common = [cb, "eval", "--model", f"local-dir:{root / 'model'}", "--pretrained", "", "--no_amp",
              "--num_workers", "0", "--batch_size", "16"]
    runs = {"zeroshot_classification": ["--dataset", "imagenet_sketch", "--dataset_root", str(root / "cls"),
                                        "--task", "zeroshot_classification",
                                        "--custom_classname_file", str(out_dir / "classnames.json"),
                                        "--custom_template_file", str(out_dir / "templates.json")]}
    for sub in cocos:
        runs[f"zeroshot_retrieval_{sub}"] = ["--dataset", "mscoco_captions", "--dataset_root", str(root / sub),
                                             "--task", "zeroshot_retrieval", "--recall_k", "1", "5", "10"]
    got = {}
    for name, extra in runs.items():
        out = out_dir / f"{name}.json"
        proc = subprocess.run(common + extra + ["--output", str(out)], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"CLIP_benchmark failed on {name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        got[name] = json.loads(out.read_text())["metrics"]
    return got


def _compare(cb: dict, dife: dict):
    cmp, worst = {}, 0.0
    for task, theirs in cb.items():
        for k, v in theirs.items():
            if k in dife[task]:
                d = abs(dife[task][k] - v)
                worst = max(worst, d)
                cmp[f"{task}/{k}"] = {"clip_benchmark": v, "dife": dife[task][k], "abs_diff": d}
    return cmp, worst


def compare_cb(args) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        hashes = make_cb_data(Path(tmp) / "data")
        cb = run_cb(args.cb, Path(tmp) / "data", Path(tmp) / "cb-out")
        dife = dife_cb_keys(Path(tmp) / "data")
        world = None
        if args.world_model:
            info = make_world_data(Path(tmp) / "world", args.world_model, args.world_preset)
            kw = dict(classnames=info["classnames"], templates=info["templates"], cocos=("coco1", "cocou"))
            wcb = run_cb(args.cb, Path(tmp) / "world", Path(tmp) / "wcb-out", **kw)
            wd = dife_cb_keys(Path(tmp) / "world", **kw)
            world = {"data": info, "model": str(args.world_model), "preset": args.world_preset,
                     "clip_benchmark_metrics": wcb, "dife_metrics": wd, "comparison": _compare(wcb, wd)[0],
                     "note": "coco1 repeats captions: an image's own caption ties exactly with its duplicates, "
                             "where CLIP_benchmark keeps torch.topk's order and DIFE counts the tie against; "
                             "cocou keeps only items whose caption is unique"}
    cmp, worst = _compare(cb, dife)
    cb_version = subprocess.run([str(Path(args.cb).parent / "python"), "-c",
                                 "import importlib.metadata as m; print(m.version('clip-benchmark'), "
                                 "m.version('torch'), m.version('open_clip_torch'))"],
                                capture_output=True, text=True).stdout.split()
    rec = {"what": "DIFE's CLIP_benchmark-compatible keys vs CLIP_benchmark's CLI on the same model and files",
           "clip_benchmark": cb_version[:1], "clip_benchmark_torch": cb_version[1:2],
           "clip_benchmark_open_clip": cb_version[2:3], "precision": "fp32 (--no_amp)",
           "data": "benchmarks/bench_clip_sized.py make_cb_data (seed 7): tiny open_clip ViT, 120-image "
                   "ImageFolder (10 classes), COCO sets of 60 images x 1 caption and 40 images x 5 captions",
           "file_sha256_16": hashes, "clip_benchmark_metrics": cb, "dife_metrics": dife, "comparison": cmp,
           "max_abs_diff": worst, "equal_to_1e-6": worst <= 1e-6, "trained_world_model": world,
           "machine": _machine()}
    text = json.dumps(rec, indent=2, sort_keys=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(json.dumps({"max_abs_diff": worst, "keys": len(cmp)}, indent=2))
    return 0 if worst <= 1e-6 else 1


# -- throughput ---------------------------------------------------------------------------

def _machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_1m": os.getloadavg()[0]}


def build_tower(which: str, device: str):
    """A CLIP-sized encoder with random weights (nothing downloaded)."""
    if which in ("vit-b-32", "rn50"):
        import open_clip

        from dife_openclip.encoder import build_custom

        cfg = open_clip.get_model_config({"vit-b-32": "ViT-B-32", "rn50": "RN50"}[which])
        enc = build_custom(cfg, name=which)
    elif which == "hf-vit-b-32":
        from transformers import CLIPConfig, CLIPModel

        from dife_core.model import Preprocess
        from dife_hfclip.encoder import FAMILIES, HFClipEncoder
        from dife_hfclip.testing import tiny_clip_tokenizer

        # openai/clip-vit-base-patch32's sizes (its config.json), random weights
        cfg = CLIPConfig(text_config={"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                                      "num_hidden_layers": 12, "max_position_embeddings": 77},
                         vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                                        "num_hidden_layers": 12, "image_size": 224, "patch_size": 32},
                         projection_dim=512)
        enc = HFClipEncoder(CLIPModel(cfg).eval(), tiny_clip_tokenizer(), Preprocess(image_size=224),
                            family=FAMILIES["clip"], architecture={"model_type": "clip"}, name=which)
    else:
        raise SystemExit(f"unknown model {which!r}")
    return enc.to(device) if hasattr(enc, "to") else enc


def _raw_loop(enc, u8, batch: int, dev):
    """The floor: normalise + forward + L2 over the same uint8 inputs, no service."""
    import torch
    import torch.nn.functional as F

    from dife_core.engine.embeddings import autocast_context

    out = []
    with torch.inference_mode(), autocast_context(dev):
        for lo in range(0, len(u8), batch):
            b = torch.from_numpy(u8[lo:lo + batch])
            if dev.type == "cuda":  # the best plain loop: uint8 over the bus, converted on the device
                b = b.pin_memory().to(dev, non_blocking=True)
            out.append(F.normalize(enc.encode_image(b.float().div_(255.0)).float(), dim=-1))
    return torch.cat(out).cpu()


def _service(enc, u8, batch: int, dev, name: str):
    """The same inputs through EmbeddingService.images, as a streaming source (decode thread + shards)."""
    import torch

    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.populations import RenderedSource

    size = u8.shape[-1]
    src = RenderedSource(len(u8), lambda: u8, key=f"bench-{name}", item_shape=(3, size, size))
    src.eager = False  # stream it: the service's decode thread and shard loop are what is measured
    f = EmbeddingService(batch_size=batch, store=None).images(enc, "bench", src)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return f


def throughput(args) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    rows = []
    for which in args.models:
        enc = build_tower(which, args.device)
        size = enc.preprocess.image_size
        u8 = np.random.default_rng(0).integers(0, 256, (args.n, 3, size, size), dtype=np.uint8)
        _raw_loop(enc, u8, args.batch, dev), _service(enc, u8, args.batch, dev, which)  # warm-up
        t_raw, t_svc = [], []
        for _ in range(args.runs):  # alternate, so drifting machine load hits both alike
            t0 = time.perf_counter()
            a = _service(enc, u8, args.batch, dev, which)
            t_svc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = _raw_loop(enc, u8, args.batch, dev)
            t_raw.append(time.perf_counter() - t0)
        svc, raw = statistics.median(t_svc), statistics.median(t_raw)
        r = {"model": which, "device": args.device, "n": args.n, "batch": args.batch, "image_size": size,
             "service_s": svc, "raw_s": raw, "service_img_per_s": args.n / svc, "raw_img_per_s": args.n / raw,
             "ratio_service_over_raw_throughput": raw / svc, "runs": args.runs, "service_runs_s": t_svc,
             "raw_runs_s": t_raw, "max_abs_feature_diff": float((a - b).abs().max())}
        print(json.dumps(r), flush=True)
        rows.append(r)
    rec = {"what": "encode throughput: DIFE embedding service / raw torch loop, random weights",
           "rows": rows, "machine": _machine()}
    if args.json:
        Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--models", nargs="+", default=["vit-b-32", "rn50", "hf-vit-b-32"])
    t.add_argument("--device", default="cpu")
    t.add_argument("--n", type=int, default=256)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--json", default=None)
    c = sub.add_parser("compare-cb")
    c.add_argument("--cb", default="/tmp/cb/bin/clip_benchmark", help="CLIP_benchmark 1.6.2's CLI (its own venv)")
    c.add_argument("--world-model", default=None,
                   help="a trained shapes-world open_clip checkpoint: also compare on its world (test preset)")
    c.add_argument("--world-preset", default="test", help="the shapes world preset for --world-model")
    c.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    return throughput(args) if args.cmd == "throughput" else compare_cb(args)


if __name__ == "__main__":
    sys.exit(main())
