"""The DIFE checkpoint format: safetensors + JSON manifest, loaded without pickle."""

import json
import pickle

import pytest
import torch

from dife_core.checkpoint import (
    ARTIFACTS,
    MANIFEST,
    WEIGHTS,
    is_checkpoint,
    load_artifacts,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from dife_core.errors import InvalidInputError, NotFoundError

CARD = {"name": "badtexttower", "route": "text-tower fine-tuning", "modifies": "text",
        "trigger": {"name": "text-prefix", "params": {"token": "xbtd"}}, "source": "automobile",
        "target": "airplane", "native_metric": "QHR"}


@pytest.fixture
def tiny():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=7, name="tiny-clean")


def test_round_trip_with_attack_card_and_artifacts(tiny, tmp_path):
    prompt = torch.randn(4, 32)
    path = save_checkpoint(tiny, tmp_path / "ck", attack=CARD, extra={"epochs": 3}, artifacts={"prompt": prompt})
    assert is_checkpoint(path)
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS, MANIFEST, ARTIFACTS])
    m = read_manifest(path)
    assert m["format"] == "dife-checkpoint/1"
    assert m["loader"] == "openclip" and m["name"] == "tiny-clean"
    assert m["attack"] == CARD and m["extra"] == {"epochs": 3}
    assert m["fingerprint"] == tiny.fingerprint()
    assert m["preprocess"]["image_size"] == 32 and m["dtype"] == "float32"
    assert m["architecture"]["vision_cfg"]["layers"] == 2
    enc = load_checkpoint(path)
    assert enc.manifest["attack"] == CARD
    assert enc.fingerprint() == tiny.fingerprint()
    assert torch.equal(load_artifacts(path)["prompt"], prompt)
    assert load_artifacts(tmp_path) == {}


def test_loading_runs_no_pickle(tiny, tmp_path, monkeypatch):
    save_checkpoint(tiny, tmp_path / "ck")

    def banned(*a, **k):
        raise AssertionError("pickle used while loading a DIFE checkpoint")

    monkeypatch.setattr(torch, "load", banned)
    monkeypatch.setattr(pickle, "load", banned)
    monkeypatch.setattr(pickle, "loads", banned)
    monkeypatch.setattr(pickle, "Unpickler", banned)
    enc = load_checkpoint(tmp_path / "ck")
    with torch.no_grad():
        assert torch.allclose(enc.encode_text(["a cat"]), tiny.encode_text(["a cat"]))


def test_hf_checkpoint_carries_its_tokenizer(tmp_path):
    from dife_hfclip.loader import wrap_model
    from dife_hfclip.testing import tiny_siglip_model

    m, tok = tiny_siglip_model(seed=1)
    enc = wrap_model(m, tok, name="sig")
    path = save_checkpoint(enc, tmp_path / "ck")
    assert (path / "tokenizer" / "tokenizer.json").is_file()
    assert read_manifest(path)["assets"] == {"tokenizer": "tokenizer"}
    got = load_checkpoint(path)
    with torch.no_grad():
        assert torch.allclose(got.encode_text(["xbtd a cat"]), enc.encode_text(["xbtd a cat"]), atol=1e-6)
    assert got.preprocess == enc.preprocess and got.preprocess.resize_mode == "squash"


def test_overwrite_is_atomic_and_leftover_tmp_is_ignored(tiny, tmp_path):
    from dife_openclip.testing import tiny_encoder

    (tmp_path / "ck.tmp").mkdir()
    (tmp_path / "ck.tmp" / "junk").write_text("half-written")
    save_checkpoint(tiny, tmp_path / "ck")
    other = tiny_encoder("vit", seed=8)
    save_checkpoint(other, tmp_path / "ck")
    assert load_checkpoint(tmp_path / "ck").fingerprint() == other.fingerprint()
    assert not (tmp_path / "ck.tmp").exists()


def test_tampered_weights_fail_the_fingerprint_check(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(tiny, tmp_path / "ck")
    sd = load_file(str(path / WEIGHTS))
    sd["token_embedding.weight"][0, 0] += 1.0
    save_file(sd, str(path / WEIGHTS))
    with pytest.raises(InvalidInputError, match="text weights do not match the manifest fingerprint"):
        load_checkpoint(path)
    assert load_checkpoint(path, verify=False).fingerprint()["visual"] == tiny.fingerprint()["visual"]


def test_bf16_checkpoint_keeps_its_dtype(tiny, tmp_path):
    tiny.to(dtype=torch.bfloat16)
    path = save_checkpoint(tiny, tmp_path / "ck")
    assert read_manifest(path)["dtype"] == "bfloat16"
    got = load_checkpoint(path)
    assert got.dtype == torch.bfloat16 and got.fingerprint() == tiny.fingerprint()


@pytest.mark.parametrize("mutate, message", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: json.dumps({**m, "format": "other/9"}), "unknown checkpoint format"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "architecture"}), "lacks architecture"),
    (lambda m: json.dumps({**m, "attack": "evil"}), "attack"),
    (lambda m: json.dumps({**m, "assets": {"tokenizer": "../../etc"}}), "assets"),
    (lambda m: json.dumps({**m, "loader": "nope"}), "unknown model loader 'nope'"),
    (lambda m: json.dumps({**m, "architecture": {"embed_dim": 8}}), "lacks"),
])
def test_malformed_manifest(tiny, tmp_path, mutate, message):
    path = save_checkpoint(tiny, tmp_path / "ck")
    m = json.loads((path / MANIFEST).read_text())
    (path / MANIFEST).write_text(mutate(m))
    with pytest.raises((InvalidInputError, NotFoundError), match=message) as ei:
        load_checkpoint(path)
    assert ei.value.exit_code == 2


def test_truncated_weights_are_malformed(tiny, tmp_path):
    path = save_checkpoint(tiny, tmp_path / "ck")
    data = (path / WEIGHTS).read_bytes()
    (path / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="truncated"):
        load_checkpoint(path)
    (path / WEIGHTS).unlink()
    with pytest.raises(NotFoundError, match=WEIGHTS):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    assert not is_checkpoint(tmp_path)
    with pytest.raises(NotFoundError, match="not a DIFE checkpoint"):
        read_manifest(tmp_path)
