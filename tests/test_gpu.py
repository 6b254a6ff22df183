"""The CUDA and bf16 paths: a cell and an audit on the GPU agree with the CPU.

Marked ``gpu``: they run in every default test run on a machine with CUDA
and are skipped (with the reason) elsewhere. ``make test-gpu`` runs only
these with ``DIFE_REQUIRE_GPU=1``, which turns a missing GPU into a failure,
so a GPU job can never pass by skipping everything.
"""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.gpu

CARD = {"attack": "gpu-check", "trigger": {"channel": "image", "name": "patch",
                                           "params": {"size": 0.25, "location": "random"}},
        "source": "automobile", "target": "airplane", "modifies": ["visual", "text"]}


def require_cuda():
    if torch.cuda.is_available():
        return
    if os.environ.get("DIFE_REQUIRE_GPU"):
        pytest.fail("DIFE_REQUIRE_GPU is set but torch.cuda.is_available() is false: this GPU job has no GPU "
                    f"(torch {torch.__version__}, CUDA build {torch.version.cuda}).")
    pytest.skip("no CUDA device (torch.cuda.is_available() is false)")


def test_require_gpu_fails_loudly_without_a_gpu(monkeypatch):
    """The guard itself: with DIFE_REQUIRE_GPU set and no GPU, the check fails instead of skipping."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("DIFE_REQUIRE_GPU", "1")
    with pytest.raises(pytest.fail.Exception, match="has no GPU"):
        require_cuda()
    monkeypatch.delenv("DIFE_REQUIRE_GPU")
    with pytest.raises(pytest.skip.Exception):
        require_cuda()


@pytest.fixture(scope="module")
def easy():
    from dife_backdoors.testing import easy_clean, easy_world

    return easy_world(), easy_clean()


@pytest.mark.parametrize("interface", ["zero-shot-classification", "downstream-visual-classification"])
def test_a_cell_on_cuda_bf16_matches_the_cpu(easy, interface):
    require_cuda()
    import attrs

    from dife_core.building import copy_encoder
    from dife_core.engine.evaluate import evaluate_cell

    world, clean = easy
    world = attrs.evolve(world, train=world.extras["train_pairs"])
    cpu = evaluate_cell(clean, clean, world, CARD, interface)
    gpu_model = copy_encoder(clean).to("cuda")
    gpu = evaluate_cell(gpu_model, gpu_model, world, CARD, interface, device="cuda")
    assert gpu["status"] not in ("error", "n.e."), gpu.get("reason")
    assert gpu["metrics"]["n_images"] == cpu["metrics"]["n_images"]
    # bf16 autocast may flip an image or two near a decision boundary, no more
    tol = 3.0 / cpu["metrics"]["n_images"]
    assert gpu["value"] == pytest.approx(cpu["value"], abs=tol)
    assert gpu["metrics"]["clean_acc"] == pytest.approx(cpu["metrics"]["clean_acc"], abs=tol)


def test_an_audit_on_cuda_is_complete_and_says_bf16(easy, tmp_path, register_plugin):
    require_cuda()
    from dife_core import hookimpl
    from dife_core.checkpoint import save_checkpoint
    from dife_core.engine import run_audit
    from dife_core.types import Dataset

    world, clean = easy

    class EasyWorld:
        @hookimpl
        def register_datasets(self, register):
            register(Dataset(name="gpu-easy-world", description="easy world", load=lambda: world,
                             provides=("classification",)))

    register_plugin(EasyWorld(), "gpu-easy-world")
    ref = save_checkpoint(clean, tmp_path / "clean")
    spec = {"seed": 0, "device": "cuda", "populations": {"dataset": "gpu-easy-world"},
            "interfaces": ["zero-shot-classification"], "controls": False,
            "clean": {"name": "clean", "source": str(ref)},
            "checkpoints": [{"name": "same", "source": str(ref), "attack": CARD}]}
    res = run_audit(spec, tmp_path / "audit", progress=False)
    assert res["complete"] is True
    assert not [c for c in res["cells"] if c["status"] == "error"]
    assert "bf16" in str(res), "the results say the features were computed in bf16"
