"""The DualEncoder contract, through both loader plugins and every supported layout.

Tiny models (random weights, two layers) are built in the test, saved in each
layout, loaded through ``dife_core.loading.load_model`` and compared with the
library's own model object (cosine >= 0.9999).
"""

import json

import pytest
import torch
import torch.nn.functional as F

from dife_core.checkpoint import save_checkpoint
from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.loading import load_model

TEXTS = ["a photo of a cat", "xbtd a red square", "dog"]
COS = 0.9999


def _pixels(n=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _normalise(x, pp):
    mean = torch.tensor(pp.mean).view(1, 3, 1, 1)
    std = torch.tensor(pp.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _close(a, b):
    return F.cosine_similarity(a.float(), b.float(), dim=-1).min().item() >= COS


# -- open_clip ---------------------------------------------------------------------

def _openclip_reference(model, pp, tokenizer):
    """Embeddings straight from the open_clip model object."""
    with torch.no_grad():
        img = model.encode_image(_normalise(_pixels(), pp))
        txt = model.encode_text(tokenizer(TEXTS))
    return img, txt


def _openclip_layouts(enc, tmp_path):
    """Every way DIFE can load an open_clip model: (source, options)."""
    from safetensors.torch import save_file

    from dife_openclip.testing import write_open_clip_folder

    arch = {k: v for k, v in enc.architecture.items() if k not in ("preprocess", "tokenizer")}
    arch_json = tmp_path / "tiny-arch.json"
    arch_json.write_text(json.dumps(arch))
    sd = {k: v.contiguous() for k, v in enc.model.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(sd, tmp_path / "w.pt")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "w-legacy.pth",
               _use_new_zipfile_serialization=False)
    write_open_clip_folder(enc, tmp_path / "oc-folder")
    write_open_clip_folder(enc, tmp_path / "oc-folder-bin", weights_name="open_clip_pytorch_model.bin", pickle=True)
    save_checkpoint(enc, tmp_path / "dife-ckpt")
    return {
        "dife-checkpoint": (str(tmp_path / "dife-ckpt"), {}),
        "local-dir": (f"local-dir:{tmp_path / 'oc-folder'}", {}),
        "folder-pickle": (str(tmp_path / "oc-folder-bin"), {}),
        "safetensors+arch-dict": (str(tmp_path / "w.safetensors"), {"loader": "openclip", "architecture": arch}),
        "pt+arch-json": (str(tmp_path / "w.pt"), {"loader": "openclip", "architecture": str(arch_json)}),
        "legacy-pth+arch-json": (str(tmp_path / "w-legacy.pth"),
                                 {"loader": "openclip", "architecture": str(arch_json)}),
        "custom-json+pretrained": (str(arch_json), {"pretrained": str(tmp_path / "w.safetensors")}),
    }


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_openclip_every_layout_matches_the_library_model(kind, tmp_path):
    from open_clip.tokenizer import SimpleTokenizer

    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder(kind, seed=3)
    ref_img, ref_txt = _openclip_reference(enc.model, enc.preprocess, SimpleTokenizer(context_length=16))
    fp = enc.fingerprint()
    for label, (source, opts) in _openclip_layouts(enc, tmp_path).items():
        opts = dict(opts)
        loader = opts.pop("loader", "auto")
        got = load_model(source, loader=loader, **opts)
        assert got.loader == "openclip", label
        with torch.no_grad():
            assert _close(got.encode_image(_pixels()), ref_img), label
            assert _close(got.encode_text(TEXTS), ref_txt), label
        assert got.fingerprint() == fp, label
        assert got.logit_scale == pytest.approx(enc.logit_scale), label


def test_openclip_local_dir_agrees_with_open_clip_create_model(tmp_path):
    """open_clip's own loader reading the same folder gives the same embeddings."""
    import open_clip

    from dife_openclip.testing import tiny_encoder, write_open_clip_folder

    enc = tiny_encoder("vit", seed=5)
    folder = write_open_clip_folder(enc, tmp_path / "f")
    theirs = open_clip.create_model(f"local-dir:{folder}").eval()
    ours = load_model(f"local-dir:{folder}")
    with torch.no_grad():
        assert _close(ours.encode_image(_pixels()), theirs.encode_image(_normalise(_pixels(), ours.preprocess)))
        toks = open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS)
        assert _close(ours.encode_text(TEXTS), theirs.encode_text(toks))


# -- Hugging Face ------------------------------------------------------------------

def _hf_models():
    from dife_hfclip.testing import tiny_clip_model, tiny_siglip_model

    return {"clip": tiny_clip_model, "siglip": tiny_siglip_model}


def _hf_reference(model, tok, family, pp):
    with torch.no_grad():
        img = model.get_image_features(pixel_values=_normalise(_pixels(), pp)).pooler_output
        if family == "siglip":
            t = tok(TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
            txt = model.get_text_features(input_ids=t["input_ids"]).pooler_output
        else:
            t = tok(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
            txt = model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).pooler_output
    return img, txt


def _fake_hub_cache(root, repo, files: dict):
    """Lay files out the way huggingface_hub caches a snapshot."""
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0" * 40)
    for name, src in files.items():
        (snap / name).write_bytes(src.read_bytes())
    return root


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hf_every_layout_matches_the_library_model(family, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from dife_hfclip.testing import save_folder

    model, tok = _hf_models()[family](seed=2)
    folder = save_folder(model, tok, tmp_path / "st")
    save_folder(model, tok, tmp_path / "bin", pickle=True)
    model.save_pretrained(str(tmp_path / "sharded"), max_shard_size="20KB")
    tok.save_pretrained(str(tmp_path / "sharded"))
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    cache = _fake_hub_cache(tmp_path / "hub", f"dife-test/tiny-{family}",
                            {p.name: p for p in folder.iterdir() if p.is_file()})
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    first = load_model(str(folder))
    save_checkpoint(first, tmp_path / "dife-ckpt")
    ref_img, ref_txt = _hf_reference(model, tok, family, first.preprocess)
    sources = {
        "save_pretrained": str(folder),
        "pytorch_model.bin": str(tmp_path / "bin"),
        "sharded": str(tmp_path / "sharded"),
        "hub-id": f"dife-test/tiny-{family}",
        "hf-hub:": f"hf-hub:dife-test/tiny-{family}",
        "dife-checkpoint": str(tmp_path / "dife-ckpt"),
    }
    for label, source in sources.items():
        got = load_model(source)
        assert got.loader == "hfclip", label
        assert got.architecture["family"] == family
        with torch.no_grad():
            assert _close(got.encode_image(_pixels()), ref_img), label
            assert _close(got.encode_text(TEXTS), ref_txt), label
        assert got.fingerprint() == first.fingerprint(), label


def test_hf_from_pretrained_agrees(tmp_path):
    """transformers' own from_pretrained on the same folder gives the same embeddings."""
    from transformers import CLIPModel

    from dife_hfclip.testing import save_folder, tiny_clip_model

    model, tok = tiny_clip_model(seed=4)
    folder = save_folder(model, tok, tmp_path / "m")
    theirs = CLIPModel.from_pretrained(str(folder)).eval()
    ours = load_model(str(folder))
    img, txt = _hf_reference(theirs, tok, "clip", ours.preprocess)
    with torch.no_grad():
        assert _close(ours.encode_image(_pixels()), img)
        assert _close(ours.encode_text(TEXTS), txt)


def test_hf_preprocessing_matches_the_image_processor():
    """Resizing inside encode_image follows preprocessor_config (shortest edge + centre crop)
    and agrees with transformers' own CLIPImageProcessor on a non-square image."""
    from transformers import CLIPImageProcessor

    from dife_hfclip.loader import wrap_model
    from dife_hfclip.testing import tiny_clip_model

    model, tok = tiny_clip_model()
    cfg = {"size": {"shortest_edge": 32}, "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
           "resample": 3, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]}
    enc = wrap_model(model, tok, preprocessor_config=cfg)
    pp = enc.preprocess
    assert (pp.image_size, pp.resize_mode, pp.interpolation, pp.mean) == (32, "shortest", "bicubic", (0.5, 0.4, 0.3))
    x = (torch.rand(2, 3, 48, 70, generator=torch.Generator().manual_seed(0)) * 255).round().to(torch.uint8)
    theirs = CLIPImageProcessor(**cfg)(images=list(x), return_tensors="pt")["pixel_values"]
    ours = enc.normalise(x.float() / 255)
    assert ours.shape == theirs.shape
    diff = (ours - theirs).abs()  # they round to uint8 after resizing: ~1/255 / std
    assert diff.mean() < 0.02 and diff.max() < 0.2
    with torch.no_grad():
        assert _close(enc.encode_image(x.float() / 255), model.get_image_features(pixel_values=theirs).pooler_output)


# -- the contract itself -----------------------------------------------------------

def test_resize_follows_torchvision_shortest_side_and_centre_crop():
    from torchvision.transforms import v2

    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder("vit")
    x = torch.rand(2, 3, 48, 70)
    pp = enc.preprocess
    tv = v2.Compose([v2.Resize(32, interpolation=v2.InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(32)])
    ref = _normalise(tv(x).clamp(0, 1), pp)
    assert torch.allclose(enc.normalise(x), ref, atol=1e-4)


def test_squash_resize_mode():
    from dife_core.model import resize_pixels

    x = torch.rand(1, 3, 20, 50)
    assert resize_pixels(x, 32, mode="squash").shape[-2:] == (32, 32)
    assert resize_pixels(x, 32, mode="shortest").shape[-2:] == (32, 32)


def _pair(kind):
    if kind == "openclip":
        from dife_openclip.testing import tiny_encoder

        return tiny_encoder("vit", seed=0, name="clean"), tiny_encoder("vit", seed=1, name="poisoned")
    from dife_hfclip.loader import wrap_model
    from dife_hfclip.testing import tiny_clip_model

    out = []
    for seed, name in ((0, "clean"), (1, "poisoned")):
        m, tok = tiny_clip_model(seed=seed)
        with torch.no_grad():
            m.logit_scale.fill_(2.0 + seed)
        out.append(wrap_model(m, tok, name=name))
    return tuple(out)


@pytest.mark.parametrize("kind", ["openclip", "hfclip"])
def test_branch_swap_hybrid(kind):
    clean, poisoned = _pair(kind)
    x = _pixels()
    with torch.no_grad():
        h10 = clean.recombine(visual_from=poisoned, text_from=clean)
        assert torch.equal(h10.encode_image(x), poisoned.encode_image(x))
        assert torch.equal(h10.encode_text(TEXTS), clean.encode_text(TEXTS))
        h01 = clean.recombine(visual_from=clean, text_from=poisoned)
        assert torch.equal(h01.encode_image(x), clean.encode_image(x))
        assert torch.equal(h01.encode_text(TEXTS), poisoned.encode_text(TEXTS))
        assert not torch.equal(clean.encode_image(x), poisoned.encode_image(x))
    # the logit scale is the clean reference's, whichever towers are swapped in
    assert h10.logit_scale == h01.logit_scale == clean.logit_scale != poisoned.logit_scale
    assert h10.fingerprint() == {"visual": poisoned.fingerprint()["visual"], "text": clean.fingerprint()["text"]}
    # no weight copies: the hybrid's parameters are the source models' tensors
    pv = dict(poisoned.branch_parameters("visual"))
    for n, p in h10.branch_parameters("visual"):
        assert p is pv[n]
    ct = dict(clean.branch_parameters("text"))
    for n, p in h10.branch_parameters("text"):
        assert p is ct[n]
    assert h10.visual_param_names == poisoned.visual_param_names
    assert h10.param_count("visual") == poisoned.param_count("visual")


def test_branch_split_openclip():
    from dife_openclip.testing import tiny_encoder

    for kind in ("vit", "resnet"):
        enc = tiny_encoder(kind)
        keys = set(enc.state_dict())
        vis, txt = set(enc.visual_param_names), set(enc.text_param_names)
        assert vis and txt and not vis & txt
        assert vis == {k for k in keys if k.startswith("visual.")}
        assert keys - vis - txt == {"logit_scale"}
        assert {"token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight"} <= txt


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_branch_split_hf(family, tmp_path):
    from dife_hfclip.testing import save_folder

    model, tok = _hf_models()[family]()
    enc = load_model(str(save_folder(model, tok, tmp_path / "m")))
    keys = set(enc.state_dict())
    vis, txt = set(enc.visual_param_names), set(enc.text_param_names)
    assert vis and txt and not vis & txt
    leftover = keys - vis - txt
    if family == "clip":
        assert "visual_projection.weight" in vis and "text_projection.weight" in txt
        assert leftover == {"logit_scale"}
    else:
        assert any(k.startswith("vision_model.head.") for k in vis)
        assert any(k.startswith("text_model.head.") for k in txt)
        assert leftover == {"logit_scale", "logit_bias"}
    assert all(k.startswith(("vision_model.", "visual_projection.")) for k in vis)


@pytest.mark.parametrize("kind", ["openclip", "hfclip"])
def test_fingerprints_are_stable_and_per_branch(kind, tmp_path):
    clean, _ = _pair(kind)
    save_checkpoint(clean, tmp_path / "c")
    a, b = load_model(str(tmp_path / "c")), load_model(str(tmp_path / "c"))
    assert a.fingerprint() == b.fingerprint() == clean.fingerprint()
    text_name = a.text_param_names[0]
    with torch.no_grad():
        a.model.state_dict()[text_name].view(-1)[0] += 1.0
    a.invalidate_fingerprint()
    assert a.fingerprint()["visual"] == b.fingerprint()["visual"]
    assert a.fingerprint()["text"] != b.fingerprint()["text"]
    vis_name = b.visual_param_names[-1]
    with torch.no_grad():
        b.model.state_dict()[vis_name].view(-1)[0] += 1.0
        b.model.logit_scale.add_(1.0)
    b.invalidate_fingerprint()
    assert b.fingerprint()["text"] == clean.fingerprint()["text"]
    assert b.fingerprint()["visual"] != clean.fingerprint()["visual"]


def test_dtype_moves_and_fingerprint_invalidation():
    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder("vit")
    fp32 = enc.fingerprint()
    with torch.no_grad():
        ref = enc.encode_image(_pixels())
        enc.to(dtype=torch.float64)
        assert enc.dtype == torch.float64
        out = enc.encode_image(_pixels())
    assert out.dtype == torch.float64 and _close(out, ref)
    assert enc.fingerprint() != fp32  # the hash covers dtype; to() invalidated the cache


@pytest.mark.gpu
def test_cuda_device(tmp_path):
    from dife_openclip.testing import tiny_encoder
    from tests.test_gpu import require_cuda

    require_cuda()  # skips without CUDA; fails instead under DIFE_REQUIRE_GPU (make test-gpu)

    enc = tiny_encoder("vit")
    save_checkpoint(enc, tmp_path / "c")
    got = load_model(str(tmp_path / "c"), device="cuda")
    assert got.device.type == "cuda"
    with torch.no_grad():
        assert _close(got.encode_image(_pixels()).cpu(), enc.encode_image(_pixels()))
        assert _close(got.encode_text(TEXTS).cpu(), enc.encode_text(TEXTS))
    assert got.fingerprint() == enc.fingerprint()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="CUDA is not available"):
        load_model("whatever", device="cuda")


def test_load_model_errors_name_what_is_available(tmp_path):
    with pytest.raises(NotFoundError, match="openclip") as ei:
        load_model(str(tmp_path / "nothing-here"))
    assert "hfclip" in str(ei.value)
    with pytest.raises(NotFoundError, match="unknown model loader 'nope'"):
        load_model("x", loader="nope")
    (tmp_path / "w.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(InvalidInputError, match="architecture"):
        load_model(str(tmp_path / "w.bin"))


def test_name_override(tmp_path):
    from dife_openclip.testing import tiny_encoder

    save_checkpoint(tiny_encoder("vit"), tmp_path / "c")
    assert load_model(str(tmp_path / "c"), name="reference").name == "reference"
