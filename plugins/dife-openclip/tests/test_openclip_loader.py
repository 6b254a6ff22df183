"""The openclip loader's source syntax: tags from the local cache only, hub and
local folders, custom architectures, and the errors a user sees."""

import json

import pytest
import torch

from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.loading import load_model

ARCH = "dife-test-tiny"
REPO = "dife-test/tiny-openclip"


@pytest.fixture
def tiny():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=21)


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test."""
    import urllib.request

    import huggingface_hub

    def boom(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    import open_clip.pretrained as ocp

    monkeypatch.setattr(ocp, "hf_hub_download", boom, raising=False)


def _hub_cache(root, repo, files: dict):
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / ("1" * 40)
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("1" * 40)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return root


@pytest.fixture
def registered_arch(monkeypatch, tiny):
    """Register the tiny architecture and a pretrained tag with open_clip (in-process only)."""
    import open_clip.factory as ocf
    import open_clip.pretrained as ocp

    arch = {k: v for k, v in tiny.architecture.items() if k not in ("preprocess", "tokenizer")}
    monkeypatch.setitem(ocf._MODEL_CONFIGS, ARCH, arch)
    monkeypatch.setitem(ocp._PRETRAINED, ARCH, {
        "tiny": {"hf_hub": f"{REPO}/", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                 "interpolation": "bilinear", "resize_mode": "squash"},
        "url_tag": {"url": "https://example.invalid/weights/tiny-url.pt", "hf_hub": ""},
    })
    return arch


def _weights(enc) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in enc.model.state_dict().items()})


def test_pretrained_tag_from_the_local_cache(tiny, registered_arch, tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE",
                        str(_hub_cache(tmp_path, REPO, {"open_clip_model.safetensors": _weights(tiny)})))
    for source, opts in ((f"{ARCH}:tiny", {}), (ARCH, {"pretrained": "tiny"})):
        enc = load_model(source, **opts)
        assert enc.fingerprint() == tiny.fingerprint()
        assert enc.preprocess.mean == (0.5, 0.5, 0.5) and enc.preprocess.resize_mode == "squash"
        assert enc.preprocess.interpolation == "bilinear"
        assert enc.architecture["model_name"] == ARCH
        assert enc.name == f"{ARCH}:tiny"


def test_url_tag_from_the_clip_cache_folder(tiny, registered_arch, tmp_path, no_network):
    torch.save({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, tmp_path / "tiny-url.pt")
    enc = load_model(f"{ARCH}:url_tag", cache_dir=str(tmp_path))
    assert enc.fingerprint() == tiny.fingerprint()


def test_uncached_tag_says_so_and_lists_tags(registered_arch, tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(NotFoundError) as ei:
        load_model(f"{ARCH}:tiny")
    msg = str(ei.value)
    assert "not in the local cache" in msg and "never downloads" in msg
    assert "tiny, url_tag" in msg
    with pytest.raises(NotFoundError, match="known tags: tiny, url_tag"):
        load_model(f"{ARCH}:no-such-tag")
    with pytest.raises(InvalidInputError, match="without weights"):
        load_model(ARCH, loader="openclip")


def test_real_architecture_names_list_their_tags(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/clip either
    with pytest.raises(NotFoundError) as ei:
        load_model("ViT-B-32:openai")
    assert "openai" in str(ei.value) and "laion2b_s34b_b79k" in str(ei.value)
    with pytest.raises(NotFoundError, match="unknown open_clip source 'ViT-Q-99:x'.*ViT-B-32"):
        load_model("ViT-Q-99:x", loader="openclip")


def test_random_init_is_explicit(registered_arch):
    enc = load_model(ARCH, random_init=True)
    assert enc.param_count("visual") > 0


def test_name_and_local_weight_file(tiny, registered_arch, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    enc = load_model(f"{ARCH}:{tmp_path / 'w.safetensors'}")
    assert enc.fingerprint() == tiny.fingerprint()


def test_hf_hub_open_clip_repo_from_cache(tiny, tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants as hc

    arch = {k: v for k, v in tiny.architecture.items() if k not in ("preprocess", "tokenizer")}
    cfg = json.dumps({"model_cfg": arch, "preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}}).encode()
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(_hub_cache(
        tmp_path, REPO, {"open_clip_config.json": cfg, "open_clip_model.safetensors": _weights(tiny)})))
    enc = load_model(f"hf-hub:{REPO}")
    assert enc.loader == "openclip" and enc.fingerprint() == tiny.fingerprint()
    assert enc.preprocess.mean == (0.1, 0.2, 0.3)
    with pytest.raises(NotFoundError, match="not in the local Hugging Face cache"):
        load_model("hf-hub:dife-test/absent", loader="openclip")


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="open_clip_config.json"):
        load_model(f"local-dir:{tmp_path / 'empty'}")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_model(f"local-dir:{tmp_path / 'absent'}")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 8}}))
    with pytest.raises(InvalidInputError, match="not an open_clip architecture config"):
        load_model(f"local-dir:{tmp_path / 'cfg'}")


def test_weights_that_do_not_fit_name_the_keys(tiny, tmp_path):
    from safetensors.torch import save_file

    from dife_openclip.testing import tiny_arch

    sd = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    del sd["ln_final.weight"]
    sd["extra.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(InvalidInputError) as ei:
        load_model(str(tmp_path / "w.safetensors"), loader="openclip", architecture=tiny_arch("vit"))
    assert "ln_final.weight" in str(ei.value) and "extra.weight" in str(ei.value)
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(tmp_path / "w2.safetensors"))
    with pytest.raises(InvalidInputError, match="shape mismatch|missing"):
        load_model(str(tmp_path / "w2.safetensors"), loader="openclip", architecture=tiny_arch("resnet"))


def test_unknown_option_is_an_error(tiny, tmp_path):
    from dife_core.checkpoint import save_checkpoint

    with pytest.raises(InvalidInputError, match="unknown options"):
        load_model("ViT-B-32", loader="openclip", colour="blue")
    save_checkpoint(tiny, tmp_path / "ck")
    with pytest.raises(InvalidInputError, match="do not apply"):
        load_model(str(tmp_path / "ck"), pretrained="x")


def test_custom_text_tower_and_quick_gelu(tmp_path):
    from dife_core.checkpoint import save_checkpoint
    from dife_openclip.encoder import build_custom
    from dife_openclip.testing import tiny_arch

    arch = tiny_arch("vit")
    arch.update(custom_text=True, quick_gelu=True)
    enc = build_custom(arch, name="ct")
    assert type(enc.model).__name__ == "CustomTextCLIP"
    assert all(k.startswith("visual.") for k in enc.visual_param_names)
    assert any(k.startswith("text.") for k in enc.text_param_names)
    save_checkpoint(enc, tmp_path / "ck")
    got = load_model(str(tmp_path / "ck"))
    with torch.no_grad():
        assert torch.allclose(got.encode_text(["a b"]), enc.encode_text(["a b"]))
    assert got.fingerprint() == enc.fingerprint()


def test_sniff(tiny, tmp_path):
    from safetensors.torch import save_file

    from dife_openclip.loader import sniff
    from dife_openclip.testing import write_open_clip_folder

    write_open_clip_folder(tiny, tmp_path / "oc")
    save_file({"visual.x": torch.zeros(1)}, str(tmp_path / "v.safetensors"))
    save_file({"vision_model.x": torch.zeros(1)}, str(tmp_path / "hf.safetensors"))
    (tmp_path / "arch.json").write_text(json.dumps(tiny_arch_json(tiny)))
    (tmp_path / "other.json").write_text("{}")
    assert sniff(str(tmp_path / "oc")) and sniff(f"local-dir:{tmp_path / 'oc'}")
    assert sniff(str(tmp_path / "oc" / "open_clip_model.safetensors"))
    assert sniff(str(tmp_path / "v.safetensors")) and not sniff(str(tmp_path / "hf.safetensors"))
    assert sniff(str(tmp_path / "arch.json")) and not sniff(str(tmp_path / "other.json"))
    assert sniff("ViT-B-32") and sniff("RN50:openai") and not sniff("not-a-model")
    assert not sniff(str(tmp_path))


def tiny_arch_json(enc):
    return {k: v for k, v in enc.architecture.items() if k not in ("preprocess", "tokenizer")}


def test_hf_tokenizer_travels_with_the_checkpoint(tmp_path):
    """An open_clip model with a Hugging Face tokenizer stays loadable after its source folder is gone."""
    import shutil

    from dife_core.checkpoint import read_manifest, save_checkpoint
    from dife_hfclip.testing import tiny_clip_tokenizer
    from dife_openclip.encoder import build_custom
    from dife_openclip.testing import tiny_arch

    tok = tiny_clip_tokenizer()
    tok.save_pretrained(str(tmp_path / "tok"))
    arch = tiny_arch("vit")
    arch["text_cfg"].update(hf_tokenizer_name=str(tmp_path / "tok"), vocab_size=len(tok))
    enc = build_custom(arch, name="hf-tok")
    assert enc.architecture["text_cfg"]["hf_tokenizer_name"]
    save_checkpoint(enc, tmp_path / "ck")
    shutil.rmtree(tmp_path / "tok")
    assert read_manifest(tmp_path / "ck")["assets"] == {"tokenizer": "tokenizer"}
    got = load_model(str(tmp_path / "ck"))
    with torch.no_grad():
        assert torch.allclose(got.encode_text(["a cat", "xbtd"]), enc.encode_text(["a cat", "xbtd"]))


def test_loading_skips_the_random_fill_and_restores_torch_init(tiny, tmp_path, monkeypatch):
    """A model whose weights are loaded strictly is built without its random fill; the loaded
    weights are the file's, bit for bit, and torch.nn.init is itself again afterwards (also after
    a failing build)."""
    import torch.nn.init as init

    from dife_core.checkpoint import save_checkpoint
    from dife_openclip import encoder as E

    before = {n: getattr(init, n) for n in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_")}
    fills = []
    real_normal = init.normal_
    def counted(*a, **k):
        t = a[0] if a else k["tensor"]
        if t.device.type != "meta":  # the size check builds on meta first
            fills.append(tuple(t.shape))
        return real_normal(*a, **k)

    monkeypatch.setattr(init, "normal_", counted)
    save_checkpoint(tiny, tmp_path / "ck")
    fills.clear()
    enc = load_model(str(tmp_path / "ck"))
    assert fills == []  # no weight was filled at random
    assert enc.fingerprint() == tiny.fingerprint()
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(enc.model.state_dict()[k], v), k
    with pytest.raises(ValueError):
        E.build_model({**tiny.architecture, "multimodal_cfg": {"x": 1}}, init_weights=False)
    monkeypatch.undo()
    assert {n: getattr(init, n) for n in before} == before
    # a random-init model still gets its random fill
    a, b = E.build_model(tiny.architecture), E.build_model(tiny.architecture)
    assert not torch.equal(a.visual.conv1.weight, b.visual.conv1.weight)


def test_a_model_built_in_another_thread_meanwhile_is_still_filled(tiny):
    """The skipped fill is this thread's only: a module another thread builds while a load is
    inside skipped_init gets its random init."""
    import threading

    import torch.nn.init as init

    from dife_openclip.encoder import skipped_init

    got = {}
    with skipped_init():
        t = threading.Thread(target=lambda: got.update(w=init.normal_(torch.zeros(64), std=1.0)))
        t.start()
        t.join()
        mine = init.normal_(torch.zeros(64), std=1.0)
    assert torch.count_nonzero(got["w"]) > 0  # the other thread's fill ran
    assert torch.count_nonzero(mine) == 0  # this thread's did not
