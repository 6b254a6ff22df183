"""DIFE's CLIP_benchmark-compatible clean-utility keys equal CLIP_benchmark 1.6.2's.

benchmarks/bench_clip_sized.py compare-cb ran CLIP_benchmark's own CLI (in its
own environment) on deterministic files and stored its outputs in
benchmarks/results/clip_benchmark_1.6.2.json; this test rebuilds the same files,
checks they are the same bytes, and computes DIFE's keys on them.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "benchmarks" / "results" / "clip_benchmark_1.6.2.json"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_clip_sized

        yield bench_clip_sized
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_keys_equal_stored_clip_benchmark_outputs(bench, tmp_path):
    stored = json.loads(STORED.read_text())
    assert stored["clip_benchmark"] == ["1.6.2"]
    hashes = bench.make_cb_data(tmp_path)
    assert hashes == stored["file_sha256_16"], "the comparison files changed: rerun compare-cb"
    ours = bench.dife_cb_keys(tmp_path)
    n = 0
    for task, theirs in stored["clip_benchmark_metrics"].items():
        for key, value in theirs.items():
            assert ours[task][key] == pytest.approx(value, abs=1e-6), (task, key)
            n += 1
    assert n == 15


@pytest.mark.parametrize("run", ["trained_world_model", "trained_default_world_model"])
def test_stored_comparison_on_a_trained_world_model(run):
    """The recorded runs on trained shapes models: equal wherever captions are
    unique; with repeated captions only text retrieval may differ (exact ties
    between identical captions, which CLIP_benchmark orders by torch.topk)."""
    world = json.loads(STORED.read_text())[run]
    assert world is not None and len(world["comparison"]) == 15
    for key, row in world["comparison"].items():
        if key.startswith("zeroshot_retrieval_coco1/text_retrieval"):
            assert row["abs_diff"] < 0.02, key
        else:
            assert row["abs_diff"] <= 1e-6, key


def _oracle_recall(scores, positive, k):
    """CLIP_benchmark's definition, written out: a query is a hit when one of
    its positives is among its k best items (data without ties)."""
    top = torch.topk(scores, k, dim=1).indices
    return float(torch.stack([positive[q, top[q]].any() for q in range(scores.shape[0])]).float().mean())


def test_retrieval_keys_follow_the_own_caption_definition():
    from dife_core.engine.scoring import retrieval_keys, zero_shot_classification_keys

    g = torch.Generator().manual_seed(0)
    xi = torch.nn.functional.normalize(torch.randn(30, 16, generator=g), dim=-1)
    owner = torch.arange(90) % 30  # three captions per image
    xt = torch.nn.functional.normalize(xi[owner] + 0.9 * torch.randn(90, 16, generator=g), dim=-1)
    got = retrieval_keys(xi, xt, owner, ks=(1, 5), chunk=7)
    pos = owner.view(-1, 1) == torch.arange(30).view(1, -1)  # [texts, images]
    for k in (1, 5):
        assert got[f"image_retrieval_recall@{k}"] == pytest.approx(_oracle_recall(xt @ xi.T, pos, k))
        assert got[f"text_retrieval_recall@{k}"] == pytest.approx(_oracle_recall(xi @ xt.T, pos.T, k))
    # classification: acc@K and the mean of per-class recalls
    w = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    y = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    x = torch.nn.functional.normalize(w[y] + 0.8 * torch.randn(10, 16, generator=g), dim=-1)
    keys = zero_shot_classification_keys(x, w, y)
    pred = (x @ w.T).argmax(1)
    assert keys["acc1"] == pytest.approx(float((pred == y).float().mean()))
    assert keys["acc5"] == 1.0  # 4 classes: every label is in the top 5
    per = [float((pred[y == c] == c).float().mean()) for c in range(4)]
    assert keys["mean_per_class_recall"] == pytest.approx(sum(per) / 4)


def test_clean_utility_reports_both_vocabularies():
    from dife_core.engine.embeddings import EmbeddingService
    from dife_core.engine.scoring import clean_utility
    from dife_core.populations import CaptionedPool, LabelledImages, World
    from dife_openclip.testing import tiny_encoder

    model = tiny_encoder("vit", seed=1)
    g = torch.Generator().manual_seed(1)
    px = torch.rand(12, 3, 32, 32, generator=g)
    caps = tuple(f"item {i % 10}" for i in range(12))  # two repeated captions
    world = World(name="w", classnames=("a", "b"), templates=("a photo of a {}",), source="a", target="b",
                  classification=LabelledImages("w/test", px, torch.arange(12) % 2, ("a", "b")),
                  pool=CaptionedPool("w/pool", px, caps, torch.arange(12) % 2, ("a", "b")))
    u = clean_utility(EmbeddingService(store=None), model, world, world.templates)
    for k in ("clean_acc", "i2t_r@1", "t2i_r@5", "acc1", "acc5", "mean_per_class_recall",
              "image_retrieval_recall@1", "text_retrieval_recall@10"):
        assert k in u
    assert u["acc1"] == pytest.approx(u["clean_acc"])
    # identical captions: one group for DIFE's recall, only the own image for CLIP_benchmark's
    assert u["t2i_r@1"] >= u["image_retrieval_recall@1"]
