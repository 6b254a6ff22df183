"""The hfclip loader: folders and cached hub ids, no remote code, no downloads,
and clear errors for everything a stranger's folder can get wrong."""

import json

import pytest
import torch

from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.loading import load_model


@pytest.fixture
def sentinel(tmp_path):
    s = tmp_path / "PWNED"
    yield s
    assert not s.exists(), "code from the model folder ran"


@pytest.fixture
def clip_folder(tmp_path):
    from dife_hfclip.testing import save_folder, tiny_clip_model

    m, tok = tiny_clip_model(seed=3)
    return save_folder(m, tok, tmp_path / "clip"), m


def _plant_remote_code(folder, sentinel, model_type=None):
    """Add an auto_map pointing at a module that would create the sentinel when imported."""
    (folder / "modeling_evil.py").write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel", "AutoConfig": "modeling_evil.EvilConfig"}
    if model_type:
        cfg["model_type"] = model_type
    (folder / "config.json").write_text(json.dumps(cfg))
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))


def test_auto_map_is_refused_never_executed(clip_folder, sentinel, capsys):
    from dife_core.cli import main
    from dife_core.errors import UnsafeCheckpointError

    folder, _ = clip_folder
    _plant_remote_code(folder, sentinel)
    with pytest.raises(UnsafeCheckpointError, match=r"config\.json: key auto_map"):
        load_model(str(folder))
    with pytest.raises(SystemExit) as ei:
        main(["inspect", str(folder), "--json"])
    assert ei.value.code == 3
    rec = json.loads(capsys.readouterr().out)
    assert rec["verdict"] == "refused" and "auto_map" in rec["error"]


def test_auto_map_in_tokenizer_config_alone_is_refused(clip_folder, sentinel):
    from dife_core.errors import UnsafeCheckpointError

    folder, _ = clip_folder
    (folder / "tokenization_evil.py").write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(UnsafeCheckpointError, match=r"tokenizer_config\.json: key auto_map"):
        load_model(str(folder))


def test_unknown_model_type_with_remote_code_is_refused(clip_folder, sentinel):
    from dife_core.errors import UnsafeCheckpointError

    folder, _ = clip_folder
    _plant_remote_code(folder, sentinel, model_type="evil_clip")
    with pytest.raises(UnsafeCheckpointError, match="auto_map"):
        load_model(str(folder), loader="hfclip")


def test_config_bombs_are_refused_before_building(clip_folder):
    folder, _ = clip_folder
    cfg = json.loads((folder / "config.json").read_text())
    for section, key, value in (("text_config", "num_hidden_layers", 10**6), ("vision_config", "hidden_size", 10**6),
                                ("text_config", "max_position_embeddings", 10**8)):
        bad = json.loads(json.dumps(cfg))
        bad[section][key] = value
        (folder / "config.json").write_text(json.dumps(bad))
        with pytest.raises(InvalidInputError, match=f"{section}.{key}"):
            load_model(str(folder))
    # within the bounds but larger than the weights: refused from the meta-device build
    bad = json.loads(json.dumps(cfg))
    bad["text_config"]["num_hidden_layers"] = 200
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(InvalidInputError, match="larger than its weights"):
        load_model(str(folder))


def test_zero_std_preprocessing_is_refused(clip_folder):
    folder, _ = clip_folder
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5, 0, 0.5]}))
    with pytest.raises(InvalidInputError, match="image_std must be positive"):
        load_model(str(folder))


def test_tokenizer_panic_is_a_refusal(clip_folder, monkeypatch):
    from transformers import AutoTokenizer

    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    def panics(*a, **k):
        raise PanicException("regex panicked")

    folder, _ = clip_folder
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", panics)
    with pytest.raises(InvalidInputError, match="PanicException"):
        load_model(str(folder))


def test_shard_index_cannot_escape_the_folder(clip_folder, tmp_path):
    folder, _ = clip_folder
    (folder / "model.safetensors").rename(tmp_path / "outside.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    with pytest.raises(InvalidInputError, match="refusing file name"):
        load_model(str(folder))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001.safetensors"}}))
    with pytest.raises(NotFoundError, match="shard 'model-00001.safetensors'"):
        load_model(str(folder))
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(NotFoundError, match="no weights found"):
        load_model(str(folder))


def test_missing_tokenizer_and_bad_config(clip_folder):
    folder, _ = clip_folder
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).unlink()
    with pytest.raises(NotFoundError, match="no tokenizer vocabulary"):
        load_model(str(folder))
    (folder / "config.json").write_text("{oops")
    with pytest.raises(InvalidInputError, match="config.json is not valid JSON"):
        load_model(str(folder), loader="hfclip")


def test_weights_that_do_not_fit_the_config(clip_folder):
    from safetensors.torch import load_file, save_file

    folder, _ = clip_folder
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop("visual_projection.weight")
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(InvalidInputError, match="visual_projection.weight"):
        load_model(str(folder))


def test_uncached_hub_id_never_downloads(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as hc

    def boom(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(NotFoundError, match="never downloads"):
        load_model("openai/clip-vit-base-patch32", loader="hfclip")
    with pytest.raises(NotFoundError, match="no model loader recognises"):
        load_model("openai/clip-vit-base-patch32")


def test_siglip_pads_to_max_length_without_mask(tmp_path):
    from dife_hfclip.testing import save_folder, tiny_siglip_model

    m, tok = tiny_siglip_model()
    enc = load_model(str(save_folder(m, tok, tmp_path / "sig")))
    t = enc.tokenize(["a", "a much longer caption than the first one, cut at sixteen"])
    assert list(t) == ["input_ids"] and t["input_ids"].shape == (2, 16)
    assert enc.logit_bias is not None


def test_precision_option(clip_folder):
    folder, _ = clip_folder
    enc = load_model(str(folder), precision="bf16")
    assert enc.dtype == torch.bfloat16
    with pytest.raises(InvalidInputError, match="unknown precision"):
        load_model(str(folder), precision="fp7")
    with pytest.raises(InvalidInputError, match="unknown options"):
        load_model(str(folder), architecture="x")


def test_sniff(clip_folder, tmp_path):
    from dife_hfclip.loader import sniff

    folder, _ = clip_folder
    assert sniff(str(folder))
    assert not sniff(str(folder / "model.safetensors"))
    (tmp_path / "oc").mkdir()
    (tmp_path / "oc" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (tmp_path / "oc" / "open_clip_config.json").write_text("{}")
    assert not sniff(str(tmp_path / "oc"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not sniff(str(tmp_path / "bert"))
    assert not sniff("ViT-B-32")
