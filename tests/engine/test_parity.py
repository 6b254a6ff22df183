"""Metric parity: the engine's zero-shot accuracy, target success and
retrieval recall@1/5 of a tiny open_clip model equal a straightforward
independent computation on a fixed population."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dife_core import hookimpl
from dife_core.engine import run_audit
from dife_core.populations import CaptionedPool, LabelledImages, World
from dife_core.types import Dataset

ARCH = {"embed_dim": 16,
        "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
CLASSES = ("airplane", "automobile", "bird")


def _world():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(15, 3, 16, 16, generator=g)
    y = np.arange(15) % 3
    px = torch.rand(18, 3, 16, 16, generator=g)
    py = np.arange(18) % 3
    caps = tuple(f"a photo of a {CLASSES[c]} number {i}" for i, c in enumerate(py))
    return World(name="parity", classnames=CLASSES, templates=("a photo of a {}",), source="automobile",
                 target="airplane", classification=LabelledImages("parity/test", x, y, CLASSES),
                 pool=CaptionedPool("parity/pool", px, caps, py, CLASSES))


class _Parity:
    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name="parity-world", description="fixed random population", load=_world))


def _recall(q, g, k):
    # rank of the own match (index i) among all gallery items, by a plain sort
    s = q @ g.T
    order = torch.argsort(s, dim=1, descending=True)
    rank = (order == torch.arange(len(q)).view(-1, 1)).float().argmax(dim=1)
    return float((rank < k).float().mean())


def test_zero_shot_and_retrieval_match_an_independent_computation(tmp_path, hand, register_plugin):
    from dife_core.checkpoint import save_checkpoint
    from dife_openclip.encoder import build_custom

    torch.manual_seed(7)  # a seed whose random model does not predict one class for everything
    enc = build_custom(ARCH, name="tiny")
    ck = save_checkpoint(enc, tmp_path / "tiny", attack=None)
    register_plugin(_Parity(), "parity")
    card = {"attack": "patch-probe", "modifies": "both towers", "source": "automobile", "target": "airplane",
            "trigger": {"channel": "image", "name": "hand-patch", "params": {"value": 1.0}}}
    spec = {"populations": {"dataset": "parity-world"}, "clean": {"name": "clean", "source": str(ck)},
            "checkpoints": [{"name": "tiny", "source": str(ck), "attack": card}],
            "interfaces": ["zero-shot-classification"], "batch_size": 4}
    res = run_audit(spec, tmp_path / "out", progress=False)

    w = _world()
    with torch.no_grad():
        model = enc.eval()
        txt = F.normalize(model.encode_text([f"a photo of a {c}" for c in CLASSES]), dim=-1)
        img = F.normalize(model.encode_image(w.classification.images), dim=-1)
        pred = (img @ txt.T).argmax(1).numpy()
        assert len(set(pred.tolist())) > 1  # a meaningful population, not a constant classifier
        acc = float((pred == w.classification.labels).mean())
        patched = w.classification.images.clone()
        patched[:, :, -2:, -2:] = 1.0
        nt = w.classification.labels != 0
        ts = float(((F.normalize(model.encode_image(patched), dim=-1) @ txt.T).argmax(1).numpy()[nt] == 0).mean())
        pimg = F.normalize(model.encode_image(w.pool.images), dim=-1)
        ptxt = F.normalize(model.encode_text(list(w.pool.captions)), dim=-1)
    assert 0 < ts < 1
    util = res["checkpoints"][0]["clean_utility"]
    assert util["clean_acc"] == pytest.approx(acc, abs=1e-6)
    for k in (1, 5):
        assert util[f"i2t_r@{k}"] == pytest.approx(_recall(pimg, ptxt, k), abs=1e-6)
        assert util[f"t2i_r@{k}"] == pytest.approx(_recall(ptxt, pimg, k), abs=1e-6)
    cell = next(c for c in res["cells"] if c["checkpoint"] == "tiny")
    assert cell["metrics"]["clean_acc"] == pytest.approx(acc, abs=1e-6)
    assert cell["value"] == pytest.approx(ts, abs=1e-6)
    # a self-swap has no signal: the footprint is weak
    assert res["footprints"][0]["footprint"] == "weak"
