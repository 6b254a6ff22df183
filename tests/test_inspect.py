"""`dife inspect`: exit 0 loadable, 3 refused as unsafe, 2 malformed."""

import json
import subprocess
import sys

import pytest
import torch

from dife_core.checkpoint import save_checkpoint

from .malicious_files import (
    MALFORMED_SAFETENSORS,
    PAYLOAD_GLOBAL,
    PAYLOADS,
    state_dict_with,
    write,
    write_legacy,
    write_torch_zip,
)


def dife(capsys, *args):
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    from dife_core.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["inspect", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return ei.value.code or 0, out.out, out.err


def dife_json(capsys, *args):
    code, out, err = dife(capsys, *args, "--json")
    return code, json.loads(out), err


@pytest.fixture
def sentinel(tmp_path):
    s = tmp_path / "PWNED"
    yield s
    assert not s.exists(), "a checkpoint payload ran"


@pytest.fixture
def tiny():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=11, name="tiny")


def test_dife_checkpoint_report(tiny, tmp_path, capsys):
    card = {"name": "badencoder", "route": "weight tampering", "modifies": "visual"}
    save_checkpoint(tiny, tmp_path / "ck", attack=card)
    code, rec, _ = dife_json(capsys, str(tmp_path / "ck"))
    assert code == 0
    assert rec["verdict"] == "safe" and rec["format"] == "dife-checkpoint"
    assert rec["loader"] == "openclip"
    assert rec["fingerprint"] == tiny.fingerprint()
    p = rec["parameters"]
    assert p["visual"] == tiny.param_count("visual") and p["text"] == tiny.param_count("text")
    assert p["total"] == p["visual"] + p["text"] + 1  # + logit_scale
    assert rec["attack"] == card and rec["manifest"]["attack"] == card
    assert rec["files"][0]["pickle"] is False
    assert rec["architecture"]["vision_cfg"]["width"] == 64
    code, text, _ = dife(capsys, str(tmp_path / "ck"))
    assert code == 0 and "verdict       safe" in text and "badencoder" in text


def test_hf_folder_report(tmp_path, capsys):
    from dife_hfclip.testing import save_folder, tiny_clip_model

    m, tok = tiny_clip_model()
    folder = save_folder(m, tok, tmp_path / "hf")
    code, rec, _ = dife_json(capsys, str(folder))
    assert code == 0 and rec["loader"] == "hfclip" and rec["format"] == "hf-pretrained-folder"
    assert rec["architecture"]["family"] == "clip"
    assert rec["parameters"]["visual"] > 0 and rec["parameters"]["text"] > 0


def test_bare_weight_files_report_tensors_without_an_architecture(tiny, tmp_path, capsys):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in tiny.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(sd, tmp_path / "w.pt")
    for f in ("w.safetensors", "w.pt"):
        code, rec, _ = dife_json(capsys, str(tmp_path / f))
        assert code == 0, f
        assert rec["verdict"] == "safe"
        assert rec["state_dict"]["fingerprint"] == tiny.fingerprint(), f
        assert rec["state_dict"]["parameters"]["visual"] == tiny.param_count("visual")
    arch = {k: v for k, v in tiny.architecture.items() if k not in ("preprocess", "tokenizer")}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    code, rec, _ = dife_json(capsys, str(tmp_path / "w.pt"), "--loader", "openclip",
                             "--option", f"architecture={tmp_path / 'arch.json'}")
    assert code == 0 and rec["loader"] == "openclip" and rec["fingerprint"] == tiny.fingerprint()


@pytest.mark.parametrize("case", sorted(PAYLOADS))
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickles_are_refused_exit_3(case, container, tmp_path, sentinel, capsys):
    writer = write_torch_zip if container == "zip" else write_legacy
    path = writer(tmp_path / "evil.pt", state_dict_with(PAYLOADS[case](sentinel)))
    code, rec, err = dife_json(capsys, str(path))
    assert code == 3
    assert rec["verdict"] == "refused"
    assert PAYLOAD_GLOBAL[case] in rec["error"]
    assert any(PAYLOAD_GLOBAL[case] in g for g in rec["files"][0]["suspicious_globals"])
    assert "Error:" in err
    # the loaders refuse it too, with an explicit loader and architecture
    from dife_core.errors import UnsafeCheckpointError
    from dife_core.loading import load_model
    from dife_openclip.testing import tiny_arch

    with pytest.raises(UnsafeCheckpointError, match=PAYLOAD_GLOBAL[case]):
        load_model(str(path), loader="openclip", architecture=tiny_arch("vit"))


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_malicious_weights_inside_model_folders(case, tiny, tmp_path, sentinel, capsys):
    """Both loaders refuse a poisoned pytorch_model.bin in their own folder layouts."""
    from dife_core.errors import UnsafeCheckpointError
    from dife_core.loading import load_model
    from dife_hfclip.testing import save_folder, tiny_clip_model
    from dife_openclip.testing import write_open_clip_folder

    m, tok = tiny_clip_model()
    hf = save_folder(m, tok, tmp_path / "hf", pickle=True)
    torch.save(state_dict_with(PAYLOADS[case](sentinel), m.state_dict()), hf / "pytorch_model.bin")
    oc = write_open_clip_folder(tiny, tmp_path / "oc", weights_name="open_clip_pytorch_model.bin", pickle=True)
    write_legacy(oc / "open_clip_pytorch_model.bin", state_dict_with(PAYLOADS[case](sentinel), tiny.state_dict()))
    for folder, loader in ((hf, "hfclip"), (oc, "openclip")):
        code, rec, _ = dife_json(capsys, str(folder))
        assert code == 3 and PAYLOAD_GLOBAL[case] in rec["error"], folder
        with pytest.raises(UnsafeCheckpointError, match=PAYLOAD_GLOBAL[case]):
            load_model(str(folder), loader=loader)


def test_trust_checkpoint_lifts_the_refusal_with_a_warning(tiny, tmp_path, capsys):
    import argparse

    path = tmp_path / "ns.pt"
    torch.save({"state_dict": dict(tiny.state_dict()), "args": argparse.Namespace(lr=1e-6)}, path)
    code, rec, _ = dife_json(capsys, str(path))
    assert code == 3 and "argparse.Namespace" in rec["error"]
    code, rec, err = dife_json(capsys, str(path), "--trust-checkpoint")
    assert code == 0 and rec["verdict"] == "trusted"
    assert any("argparse.Namespace" in w for w in rec["trust_warnings"])
    assert "warning" in err


@pytest.mark.parametrize("case", sorted(MALFORMED_SAFETENSORS))
def test_malformed_safetensors_exit_2(case, tmp_path, capsys):
    path = write(tmp_path / "bad.safetensors", MALFORMED_SAFETENSORS[case]())
    code, rec, err = dife_json(capsys, str(path))
    assert code == 2
    assert rec["verdict"] == "malformed"
    assert str(path) in rec["error"] and "Error:" in err


def test_missing_and_unknown_sources_exit_2(tmp_path, capsys):
    code, rec, _ = dife_json(capsys, str(tmp_path / "nope.safetensors"))
    assert code == 2 and "openclip" in rec["error"]
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "dife.json").write_text("{broken")
    code, rec, _ = dife_json(capsys, str(tmp_path / "ck"))
    assert code == 2 and "not valid JSON" in rec["error"]


def test_inspect_command_module_does_not_import_torch():
    code = ("import sys, dife_core.builtins.inspect_command, dife_core.loading, dife_core.safeload, "
            "dife_core.checkpoint; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_docs_cover_every_inspect_option_and_verdict(capsys):
    """docs/models.md documents each option `dife inspect --help` prints and each verdict."""
    import re
    from pathlib import Path

    from dife_core.builtins import inspect_command

    code, out, _ = dife(capsys, "--help")
    assert code == 0
    doc = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    options = set(re.findall(r"(--[a-z][a-z-]+)", out)) - {"--help"}
    assert options and all(o in doc for o in options), options - {o for o in options if o in doc}
    for verdict in (inspect_command.SAFE, inspect_command.TRUSTED, inspect_command.REFUSED, inspect_command.MALFORMED):
        assert f"| `{verdict}` |" in doc
