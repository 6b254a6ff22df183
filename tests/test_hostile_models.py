"""Hostile checkpoints, model configs and tokenizers: one case per class of attack.

Every input is generated here (nothing large on disk). Each case asserts the
exit code (2 malformed, 3 unsafe) or exception, that the message names the
file and the key, and that no planted code ran (the sentinel never appears).
Memory bombs run in a subprocess under RLIMIT_AS to prove they are refused
before anything big is allocated.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from dife_core.checkpoint import MANIFEST, load_checkpoint, save_checkpoint
from dife_core.errors import InvalidInputError, UnsafeCheckpointError
from dife_core.loading import load_model

ROOT = Path(__file__).resolve().parents[1]
DIFE = ROOT / ".venv" / "bin" / "dife"


@pytest.fixture
def sentinel(tmp_path):
    s = tmp_path / "PWNED"
    yield s
    assert not s.exists(), "code planted in a checkpoint ran"


@pytest.fixture(scope="module")
def tiny():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=5, name="tiny")


def inspect_json(capsys, *args):
    from dife_core.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["inspect", *map(str, args), "--json"])
        raise SystemExit(0)
    return ei.value.code or 0, json.loads(capsys.readouterr().out)


def cli(*args, timeout=60):
    """The installed `dife` in a fresh process: (exit code, stdout + stderr)."""
    exe = [str(DIFE)] if DIFE.exists() else [sys.executable, "-m", "dife_core"]
    r = subprocess.run(exe + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def plant_code(folder: Path, sentinel: Path) -> None:
    """Tokenizer files whose auto_map points at a module that would create the sentinel."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenization_evil.py").write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}))


def edit_manifest(path: Path, fn) -> Path:
    m = json.loads((path / MANIFEST).read_text())
    fn(m)
    (path / MANIFEST).write_text(json.dumps(m))
    return path


@pytest.fixture
def ck(tiny, tmp_path):
    return save_checkpoint(tiny, tmp_path / "ck")


# -- code execution through tokenizer settings ------------------------------------------------

def _remote_code_in_manifest(m):
    m["architecture"]["text_cfg"]["tokenizer_kwargs"] = {"trust_remote_code": True}
    m["architecture"]["tokenizer"] = {"kind": "hf", "name": "tokenizer"}
    m["assets"] = {"tokenizer": "tokenizer"}


def test_trust_remote_code_in_manifest_tokenizer_kwargs(ck, sentinel, capsys):
    plant_code(ck / "tokenizer", sentinel)
    edit_manifest(ck, _remote_code_in_manifest)
    with pytest.raises(UnsafeCheckpointError, match=r"dife\.json: key text_cfg\.tokenizer_kwargs\.trust_remote_code"):
        load_checkpoint(ck)
    code, out = cli("inspect", ck)
    assert code == 3 and "trust_remote_code" in out and "dife.json" in out and "Traceback" not in out


def test_auto_map_in_a_checkpoints_tokenizer_folder(ck, sentinel):
    plant_code(ck / "tokenizer", sentinel)
    edit_manifest(ck, lambda m: m.update(assets={"tokenizer": "tokenizer"}))
    with pytest.raises(UnsafeCheckpointError, match=r"tokenizer_config\.json: key auto_map"):
        load_checkpoint(ck)


def test_trust_remote_code_in_open_clip_folder_config(tiny, tmp_path, sentinel, capsys):
    from dife_openclip.testing import write_open_clip_folder

    folder = write_open_clip_folder(tiny, tmp_path / "oc")
    plant_code(folder, sentinel)
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["text_cfg"].update(hf_tokenizer_name="evil/tok", tokenizer_kwargs={"trust_remote_code": True})
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeCheckpointError,
                       match=r"open_clip_config\.json: key model_cfg\.text_cfg\.tokenizer_kwargs"):
        load_model(str(folder))
    code, rec = inspect_json(capsys, folder)
    assert code == 3 and rec["verdict"] == "refused" and "open_clip_config.json" in rec["error"]
    assert any(f["kind"] == "trust" for f in rec["findings"])


def test_hub_tokenizer_name_in_a_folder_config_is_refused(tiny, tmp_path):
    from dife_openclip.testing import write_open_clip_folder

    folder = write_open_clip_folder(tiny, tmp_path / "oc")
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "evil-org/evil-tokenizer"
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsafeCheckpointError,
                       match=r"open_clip_config\.json: key text_cfg\.hf_tokenizer_name .*hub name"):
        load_model(str(folder))


def test_trust_remote_code_in_custom_architecture_json(tiny, tmp_path, sentinel):
    from dife_openclip.testing import tiny_arch

    plant_code(tmp_path, sentinel)
    arch = tiny_arch("vit")
    arch["text_cfg"]["tokenizer_kwargs"] = {"trust_remote_code": True, "revision": "main"}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    w = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(w))
    with pytest.raises(UnsafeCheckpointError, match=r"arch\.json: key text_cfg\.tokenizer_kwargs\.trust_remote_code"):
        load_model(str(tmp_path / "arch.json"), pretrained=str(w))
    code, out = cli("inspect", tmp_path / "arch.json", "--option", f"pretrained={w}")
    assert code == 3 and "arch.json: key text_cfg.tokenizer_kwargs.trust_remote_code" in out and "Traceback" not in out
    # an architecture handed over as a dict (from a spec's loader options) passes the same gate
    with pytest.raises(UnsafeCheckpointError, match="trust_remote_code"):
        load_model(str(w), loader="openclip", architecture=arch)
    # unknown tokenizer arguments would reach AutoTokenizer: refused too
    arch["text_cfg"]["tokenizer_kwargs"] = {"revision": "main"}
    with pytest.raises(UnsafeCheckpointError, match=r"tokenizer_kwargs\.revision"):
        load_model(str(w), loader="openclip", architecture=arch)


def test_siglip_tokenizer_kind_would_download(ck):
    edit_manifest(ck, lambda m: m["architecture"].update(tokenizer={"kind": "siglip", "variant": "c4-en"}))
    with pytest.raises(UnsafeCheckpointError, match=r"dife\.json: key tokenizer\.kind 'siglip'.*network"):
        load_checkpoint(ck)


@pytest.mark.parametrize("where, value", [
    (("vision_cfg", "timm_model_name"), "hf-hub:evil/model"),
    (("text_cfg", "hf_model_name"), "evil/text-tower"),
    (("vision_cfg", "act_kwargs"), {"url": "https://evil.example/x"}),
])
def test_network_reaching_config_values(ck, where, value):
    edit_manifest(ck, lambda m: m["architecture"][where[0]].update({where[1]: value}))
    with pytest.raises(UnsafeCheckpointError, match=rf"dife\.json: key {where[0]}\.{where[1]}"):
        load_checkpoint(ck)


def test_tokenizer_panic_is_a_refusal(ck, monkeypatch):
    from open_clip.tokenizer import SimpleTokenizer

    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    def panic(self, *a, **k):
        raise PanicException("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(SimpleTokenizer, "__call__", panic)
    with pytest.raises(InvalidInputError, match="PanicException"):
        load_checkpoint(ck)


# -- resource bombs ---------------------------------------------------------------------------

BOMBS = {
    "layers": (("vision_cfg", "layers"), 10**6),
    "width": (("vision_cfg", "width"), 10**6),
    "context": (("text_cfg", "context_length"), 10**8),
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_architecture_bombs_are_refused_before_building(ck, case):
    (section, key), value = BOMBS[case]
    edit_manifest(ck, lambda m: m["architecture"][section].update({key: value}))
    t0 = time.monotonic()
    with pytest.raises(InvalidInputError, match=rf"dife\.json: key {section}\.{key} = {value} exceeds"):
        load_checkpoint(ck)
    assert time.monotonic() - t0 < 1.0


def test_architecture_larger_than_its_weights(ck):
    """Within every bound, but the weights cannot fill it: refused from a meta-device build."""
    edit_manifest(ck, lambda m: m["architecture"]["vision_cfg"].update(layers=200, width=1024))
    with pytest.raises(InvalidInputError, match="larger than its weights"):
        load_checkpoint(ck)


def test_bounds_can_be_raised_only_by_the_caller(ck):
    from dife_core import untrusted

    edit_manifest(ck, lambda m: m["architecture"]["vision_cfg"].update(layers=300))
    with pytest.raises(InvalidInputError, match=r"limit layers=256"):
        load_checkpoint(ck)
    try:
        untrusted.set_limits(layers=400)
        with pytest.raises(InvalidInputError, match="larger than its weights"):  # past the bound, then the size check
            load_checkpoint(ck)
    finally:
        untrusted.reset_limits()
    assert untrusted.limit("layers") == untrusted.DEFAULT_LIMITS["layers"]
    assert untrusted.parse_limit("layers=1_000") == ("layers", 1000)
    with pytest.raises(InvalidInputError):
        untrusted.set_limits(nonsense=3)
    with pytest.raises(InvalidInputError):
        untrusted.parse_limit("layers=-1")


def test_huge_integer_in_manifest_is_exit_2(ck, capsys):
    text = (ck / MANIFEST).read_text().replace('"embed_dim": 32', '"embed_dim": ' + "9" * 5000)
    (ck / MANIFEST).write_text(text)
    with pytest.raises(InvalidInputError, match=r"dife\.json: manifest is not valid JSON \(integer with 5000 digits"):
        load_checkpoint(ck)
    code, rec = inspect_json(capsys, ck)
    assert code == 2 and rec["verdict"] == "malformed"


def _safetensors_header(entries: bytes) -> bytes:
    head = b"{" + entries + b"}"
    return len(head).to_bytes(8, "little") + head


def test_huge_safetensors_header_and_long_names_are_refused_fast(tmp_path):
    from dife_core.safeload import validate_safetensors

    many = b",".join(b'"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % i for i in range(210_000))
    (tmp_path / "many.safetensors").write_bytes(_safetensors_header(many))
    long = b'"' + b"x" * 200_000 + b'":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    (tmp_path / "long.safetensors").write_bytes(_safetensors_header(long))
    for name, message in (("many", "lists about 210,000 tensors"), ("long", "tensor name of 200,000 characters")):
        t0 = time.monotonic()
        with pytest.raises(InvalidInputError, match=message):
            validate_safetensors(tmp_path / f"{name}.safetensors")
        assert time.monotonic() - t0 < 2.0, name


def test_stride_zero_tensor_is_malformed_not_expanded(tmp_path, capsys):
    path = tmp_path / "expand.pt"
    torch.save({"visual.w": torch.zeros(1).expand(40_000, 40_000)}, path)  # 1 stored float, 6.4 GB as a view
    code, rec = inspect_json(capsys, path)
    assert code == 2 and rec["verdict"] == "malformed"
    assert "visual.w" in rec["error"] and "stride-0" in rec["error"]
    over = tmp_path / "overlap.pt"
    torch.save({"w": torch.zeros(200).as_strided((100, 100), (1, 1))}, over)  # overlapping rows
    with pytest.raises(InvalidInputError, match="needs 40,000 bytes but its storage holds 800"):
        from dife_core.safeload import load_state_dict

        load_state_dict(over)


BOMB_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    from dife_core.checkpoint import load_checkpoint
    from dife_core.errors import DifeError
    from dife_core.builtins.inspect_command import inspect_source
    import dife_openclip.loader, open_clip  # imports first: the limit is on what the refusals allocate
    load_checkpoint(sys.argv[1])  # warm every lazy import once, on the clean checkpoint
    vm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:")][0]
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))
    out = {}
    for path in sys.argv[2:]:
        try:
            if path.endswith(".pt"):
                out[path] = inspect_source(path)[1]
            else:
                load_checkpoint(path)
                out[path] = 0
        except DifeError as e:
            out[path] = e.exit_code
        except MemoryError:
            out[path] = "MemoryError"
    print(json.dumps(out))
""")


def test_bombs_stay_under_one_gib(tiny, tmp_path):
    clean = save_checkpoint(tiny, tmp_path / "clean")
    paths = []
    for case, ((section, key), value) in sorted(BOMBS.items()):
        p = save_checkpoint(tiny, tmp_path / case)
        edit_manifest(p, lambda m, s=section, k=key, v=value: m["architecture"][s].update({k: v}))
        paths.append(str(p))
    stride = tmp_path / "stride.pt"
    torch.save({"visual.w": torch.zeros(1).expand(100_000, 100_000)}, stride)  # 40 GB if materialised
    paths.append(str(stride))
    r = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(clean), *paths], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    codes = json.loads(r.stdout.strip().splitlines()[-1])
    assert codes == {p: 2 for p in paths}, codes


# -- numbers that lie -------------------------------------------------------------------------

def test_nan_weights_named_at_load_and_reported_by_inspect(tiny, tmp_path, capsys):
    from dife_openclip.testing import tiny_encoder

    enc = tiny_encoder("vit", seed=5)
    with torch.no_grad():
        enc.model.visual.proj[0, 0] = float("nan")
        enc.model.text_projection[1, 1] = float("inf")
    enc.invalidate_fingerprint()
    path = save_checkpoint(enc, tmp_path / "nan")
    with pytest.raises(InvalidInputError,
                       match=r"model\.safetensors: tensor '(visual\.proj|text_projection)' holds non-finite"):
        load_checkpoint(path)
    code, rec = inspect_json(capsys, path)
    assert code == 2 and rec["verdict"] == "malformed"
    assert {n["tensor"] for n in rec["nonfinite"]} == {"visual.proj", "text_projection"}
    assert sum(f["kind"] == "non-finite" for f in rec["findings"]) == 2
    assert rec["fingerprint"] == enc.fingerprint()  # the rest of the report is still there


def test_zero_std_preprocessing_is_refused(ck, tiny, tmp_path):
    edit_manifest(ck, lambda m: m["preprocess"].update(std=[0.26, 0.0, 0.27]))
    with pytest.raises(InvalidInputError, match=r"dife\.json: key preprocess\.std must be positive"):
        load_checkpoint(ck)
    from dife_openclip.testing import write_open_clip_folder

    folder = write_open_clip_folder(tiny, tmp_path / "oc")
    cfg = json.loads((folder / "open_clip_config.json").read_text())
    cfg["preprocess_cfg"]["mean"] = "abc"
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidInputError, match=r"key preprocess_cfg\.mean must be three finite numbers"):
        load_model(str(folder))


# -- file references --------------------------------------------------------------------------

def test_asset_paths_cannot_leave_the_checkpoint(ck, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for value in ("..", "/etc", "../outside"):
        edit_manifest(ck, lambda m, v=value: m.update(assets={"tokenizer": v}))
        with pytest.raises(InvalidInputError, match=r"dife\.json: key assets\.tokenizer"):
            load_checkpoint(ck)
    (ck / "tok").symlink_to(outside, target_is_directory=True)
    edit_manifest(ck, lambda m: m.update(assets={"tokenizer": "tok"}))
    with pytest.raises(InvalidInputError, match=r"key assets\.tokenizer .*outside the checkpoint folder"):
        load_checkpoint(ck)


def test_tokenizer_name_and_weight_symlinks_cannot_leave_the_checkpoint(ck, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    edit_manifest(ck, lambda m: m["architecture"].update(tokenizer={"kind": "hf", "name": str(outside)}))
    with pytest.raises(InvalidInputError, match=r"key tokenizer\.name .*outside the checkpoint folder"):
        load_checkpoint(ck)
    edit_manifest(ck, lambda m: m["architecture"].update(tokenizer={"kind": "simple"}))
    (ck / "model.safetensors").rename(outside / "w.safetensors")
    (ck / "model.safetensors").symlink_to(outside / "w.safetensors")
    with pytest.raises(InvalidInputError, match=r"key model\.safetensors .*outside the checkpoint folder"):
        load_checkpoint(ck)


# -- TorchScript ------------------------------------------------------------------------------

class _Both(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, image, text):
        return self.m.encode_image(image), self.m.encode_text(text)


def _torchscript_of(tiny, path: Path) -> Path:
    from dife_openclip.testing import tiny_encoder

    model = tiny_encoder("vit", seed=5).model
    traced = torch.jit.trace(model, (torch.rand(1, 3, 32, 32), torch.randint(0, 100, (1, 16))),
                             strict=False, check_trace=False)
    torch.jit.save(traced, str(path))
    return path


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_archive_read_without_running_it(tiny, tmp_path, capsys, monkeypatch):
    import zipfile

    from dife_openclip.testing import tiny_arch

    ts = _torchscript_of(tiny, tmp_path / "ViT-tiny.pt")
    plain = tmp_path / "plain.pt"
    torch.save(dict(tiny.state_dict()), plain)

    def no_jit(*a, **k):
        raise AssertionError("torch.jit.load was called on an untrusted file")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    a = load_model(str(ts), loader="openclip", architecture=tiny_arch("vit"))
    b = load_model(str(plain), loader="openclip", architecture=tiny_arch("vit"))
    assert a.fingerprint() == b.fingerprint() == tiny.fingerprint()
    code, rec = inspect_json(capsys, ts)
    assert code == 0 and rec["format"] == "torchscript" and rec["files"][0]["torchscript"]
    assert rec["state_dict"]["fingerprint"] == tiny.fingerprint()
    # OpenAI's files have compressed members: still read, still the same weights
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(ts) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    c = load_model(str(packed), loader="openclip", architecture=tiny_arch("vit"))
    assert c.fingerprint() == tiny.fingerprint()


def test_torchscript_with_foreign_globals_is_refused(tmp_path):
    import zipfile

    from tests.malicious_files import PAYLOADS  # noqa: F401 -- same payload family as the pickle suite

    ts = tmp_path / "evil.pt"
    with zipfile.ZipFile(ts, "w") as z:
        z.writestr("evil/code/__torch__/m.py", "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n")
        z.writestr("evil/constants.pkl", b"\x80\x02).")
        z.writestr("evil/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    from dife_core.safeload import load_state_dict

    with pytest.raises(InvalidInputError, match=r"evil\.pt: TorchScript archive .*os\.system"):
        load_state_dict(ts)


# -- loader choice ----------------------------------------------------------------------------

def test_auto_loader_ties_are_refused(tmp_path):
    from dife_core import hookimpl
    from dife_core.loading import pick_loader
    from dife_core.plugins import get_registry
    from dife_core.types import ModelLoader

    class Two:
        @hookimpl
        def register_model_loaders(self, register):
            for name, prio in (("tie-a", 5), ("tie-b", 5), ("low", 1)):
                register(ModelLoader(name=name, description="d", load=lambda s, **k: None,
                                     sniff=lambda s: s == "tie-source", priority=prio))

    reg = get_registry()
    reg.register_object(Two(), "tie-plugin")
    try:
        with pytest.raises(InvalidInputError, match="tie-a, tie-b"):
            load_model("tie-source")
        from dife_core.loading import sniff_loaders

        assert sniff_loaders("tie-source") == ["tie-a", "tie-b", "low"]
        assert pick_loader("x", ["low"]) == "low"
    finally:
        reg.unregister_object("tie-plugin")


def test_open_clip_folder_weights_cannot_be_a_symlink_outside(tiny, tmp_path):
    from dife_openclip.testing import write_open_clip_folder

    folder = write_open_clip_folder(tiny, tmp_path / "oc")
    (folder / "open_clip_model.safetensors").rename(tmp_path / "w.safetensors")
    (folder / "open_clip_model.safetensors").symlink_to(tmp_path / "w.safetensors")
    with pytest.raises(InvalidInputError, match=r"key open_clip_model\.safetensors .*outside the checkpoint folder"):
        load_model(str(folder))
