"""Hostile specs, attack cards, output folders, stores, datasets and plugins.

Every input is made here, in ``tmp_path``. Each case asserts the exit code
(2 malformed, 3 unsafe), that the one-paragraph message names the file and
the key, and that nothing outside the output folder was written (a link's
target keeps its content, a sentinel is never created). Audits run on the
hand-made engine world (tests/engine/handmade.py): a few seconds in all.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest

from dife_core.engine import AuditSpec, run_audit, validate_spec
from dife_core.engine.toml_writer import dumps
from dife_core.errors import InvalidInputError

from .engine.handmade import HandPlugin
from .engine.handmade import spec_dict as _spec_dict
from .plugin_fixtures import make_dist, run_dife

SECRET = "the user's own file\n"


def spec_dict(**kw) -> dict:
    import copy

    return copy.deepcopy(_spec_dict(**kw))  # the hand-made cards are module-level dicts: never mutate them


@pytest.fixture
def hand(register_plugin):
    import torch

    torch.set_num_threads(1)
    register_plugin(HandPlugin(), "hand-hostile")


@pytest.fixture(autouse=True)
def _limits():
    yield
    from dife_core.untrusted import reset_limits

    reset_limits()


def dife(capsys, *args) -> tuple:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    from dife_core.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(dumps(data), encoding="utf-8")
    return path


def audit(out, **kw):
    return run_audit(AuditSpec.from_dict(spec_dict()), out, progress=False, **kw)


def one_paragraph(err: str) -> None:
    assert err.startswith("Error: ") and "Traceback" not in err, err


# -- 1. trust comes only from the command line ----------------------------------------------

def test_trust_in_a_spec_is_refused_by_validate_and_audit(tmp_path, capsys, hand):
    d = spec_dict()
    d["checkpoints"][1]["trust"] = True
    spec = write_spec(tmp_path / "shared.toml", d)
    for args in (("validate", spec), ("audit", spec, "--out", tmp_path / "out", "--no-progress")):
        code, _, err = dife(capsys, *args)
        assert code == 3, err
        one_paragraph(err)
        msg = " ".join(err.split())
        assert "shared.toml" in msg and "checkpoints[1].trust" in msg and "--trust-checkpoint NAME" in msg
    assert not (tmp_path / "out").exists()
    assert "trust" not in AuditSpec.from_dict(spec_dict()).to_toml()  # spec.toml never carries it


def test_trust_checkpoint_names_checkpoints_of_the_spec(tmp_path, capsys, hand, monkeypatch):
    spec = write_spec(tmp_path / "a.toml", spec_dict())
    code, _, err = dife(capsys, "audit", spec, "--out", tmp_path / "o", "--trust-checkpoint", "nosuch")
    assert code == 2 and "'nosuch'" in err and "a.toml" in err
    assert not (tmp_path / "o").exists()

    import dife_core.loading as loading

    seen = {}
    real = loading.load_model

    def spy(source, *, trust=False, name=None, **kw):
        seen[name] = trust
        return real(source, trust=trust, name=name, **kw)

    monkeypatch.setattr(loading, "load_model", spy)
    run_audit(AuditSpec.from_dict(spec_dict(interfaces=["zero-shot-classification"])), tmp_path / "t",
              progress=False, trusted={"visual"})
    assert seen == {"clean": False, "textual": False, "visual": True}


# -- 2. bounds on what a spec or an attack card may ask for ----------------------------------

def test_probe_steps_beyond_the_bound_is_refused_by_validate_and_audit(tmp_path, capsys, hand):
    d = spec_dict(interface_options={"downstream-visual-classification": {"probe_steps": 1e12}})
    spec = write_spec(tmp_path / "slow.toml", d)
    for args in (("validate", spec), ("audit", spec, "--out", tmp_path / "out")):
        code, _, err = dife(capsys, *args)
        assert code == 2, err
        one_paragraph(err)
        msg = " ".join(err.split())
        assert "slow.toml" in msg and "interface_options.downstream-visual-classification.probe_steps" in msg
        assert "--limit steps=N" in msg
    assert not (tmp_path / "out").exists()


def test_limit_flag_raises_a_bound_for_one_command(tmp_path, capsys, hand):
    spec = write_spec(tmp_path / "big.toml", spec_dict(batch_size=10_000))
    code, _, err = dife(capsys, "validate", spec)
    assert code == 2 and "batch_size" in err and "--limit batch_size=N" in " ".join(err.split())
    code, out, err = dife(capsys, "validate", spec, "--limit", "batch_size=20000")
    assert code == 0 and "OK" in out, err
    code, _, err = dife(capsys, "validate", spec, "--limit", "no_such_bound=1")
    assert code == 2 and "no_such_bound" in err


def test_wanet_grid_beyond_the_bound_is_refused_before_allocation(hand):
    from dife_backdoors.triggers import make_wanet

    card = {"attack": "wanet", "target": "airplane", "source": "automobile", "modifies": "visual",
            "trigger": {"channel": "image", "name": "wanet", "params": {"grid_size": 12000}}}
    d = spec_dict()
    d["checkpoints"][1]["attack"] = card
    t = time.perf_counter()
    problems = {p.key: p.message for p in validate_spec(d)}
    assert time.perf_counter() - t < 5
    assert "grid_size" in problems["checkpoints[1].attack.trigger.params"]
    assert "trigger_grid" in problems["checkpoints[1].attack.trigger.params"]
    with pytest.raises(ValueError, match="grid_size"):
        make_wanet(grid_size=12000)


@pytest.mark.parametrize("where, value, key, says", [
    ("name", "n" * 200_000, "checkpoints[0].name", "string_chars"),
    ("seed", float("nan"), "seed", "not a finite number"),
    ("threshold", float("inf"), "thresholds.exposed", "not a finite number"),
    ("card", float("nan"), "checkpoints[1].attack.trigger.params.value", "not a finite number"),
    ("card", "\ud800", "checkpoints[1].attack.trigger.params.value", "lone surrogate"),
    ("seed", 2**80, "seed", "bits"),
    ("batch", 10**9, "batch_size", "bound batch_size"),
    ("options", 10**8, "populations.options.n", "bound population"),
])
def test_malformed_values_are_input_errors_naming_the_key(where, value, key, says):
    d = spec_dict()
    if where == "name":
        d["checkpoints"][0]["name"] = value
    elif where == "seed":
        d["seed"] = value
    elif where == "threshold":
        d["thresholds"] = {"exposed": value}
    elif where == "card":
        d["checkpoints"][1]["attack"]["trigger"]["params"] = {"value": value}
    elif where == "batch":
        d["batch_size"] = value
    else:
        d["populations"]["options"]["n"] = value
    t = time.perf_counter()
    with pytest.raises(InvalidInputError) as ei:
        AuditSpec.from_dict(d, where="hostile.toml")
    assert time.perf_counter() - t < 2  # a 200k-character name is refused fast
    msg = str(ei.value)
    assert msg.startswith("hostile.toml:") and key in msg and says in msg and len(msg) < 2000


def test_deeply_nested_and_huge_toml_are_exit_2(tmp_path, capsys):
    cases = {
        "nested.toml": "seed = " + "[" * 5000 + "]" * 5000 + "\n",
        "nested2.toml": "[populations]\ndataset = \"x\"\noptions = {a = " + "[" * 40 + "1" + "]" * 40 + "}\n",
        "digits.toml": "seed = " + "9" * 5000 + "\n",
        "bytes.toml": "# " + "x" * 2_000_000 + "\n",
        "nan.toml": "seed = nan\n",
        "binary.toml": "seed = 1\nname = \"\xff\"\n",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_bytes(text.encode("latin-1"))
        code, _, err = dife(capsys, "validate", p)
        assert code == 2, (name, err)
        one_paragraph(err)
        assert name in err and "RecursionError:" not in err and "ValueError" not in err


def test_build_spec_cannot_grant_trust_or_ask_for_unbounded_work(tmp_path, capsys):
    base = ('[clean]\ncheckpoint = "model.pt"\n{trust}\n[world]\ndataset = "shapes"\n\n'
            '[[attacks]]\nattack = "badtexttower"\nconfig = {{steps = {steps}}}\n')
    cases = (("trust = true", 300, 3, "clean.trust"), ("", "1e12", 2, "attacks[0].config.steps"),
             ("", "nan", 2, "attacks[0].config.steps"))
    for trust, steps, code, key in cases:
        spec = tmp_path / "build.toml"
        spec.write_text(base.format(trust=trust, steps=steps))
        got, _, err = dife(capsys, "build", spec, "--out", tmp_path / "ckpts")
        assert got == code, err
        one_paragraph(err)
        assert "build.toml" in err and key in " ".join(err.split())
    assert not (tmp_path / "ckpts").exists()


# -- 3. the output folder ------------------------------------------------------------------

def _sentinel_link(tmp_path, out: Path, name: str) -> Path:
    target = tmp_path / f"victim-{name.strip('.')}"
    target.write_text(SECRET)
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(target)
    return target


def test_a_non_empty_foreign_folder_is_refused_unless_force(tmp_path, hand):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a DIFE output folder.*--force"):
        audit(out)
    assert sorted(os.listdir(out)) == ["holiday.jpg"]  # not even a lock file
    audit(out, force=True)
    assert (out / "holiday.jpg").read_text() == "mine" and (out / "results.json").is_file()


def test_an_existing_audit_is_replaced_only_with_force_and_resume_keeps_it(tmp_path, hand):
    out = tmp_path / "out"
    audit(out)
    with pytest.raises(InvalidInputError, match=r"already holds an audit \(.*cells.jsonl.*\).*--resume.*--force"):
        audit(out)
    first = (out / "cells.jsonl").read_bytes()
    audit(out, resume=True)
    assert (out / "cells.jsonl").read_bytes().startswith(first)
    audit(out, force=True)
    assert not (out / "cells.jsonl").read_bytes().startswith(first[:200])  # a new store, new key


def test_links_planted_in_the_output_folder_are_never_written_through(tmp_path, hand):
    out = tmp_path / "out"
    audit(out)
    victims = [_sentinel_link(tmp_path, out, n) for n in ("spec.toml", "report.md", "report.html")]
    audit(out, resume=True)
    for v in victims:
        assert v.read_text() == SECRET
    assert not (out / "spec.toml").is_symlink() and "[[checkpoints]]" in (out / "spec.toml").read_text()

    lock = _sentinel_link(tmp_path, out, ".dife-audit.lock")
    with pytest.raises(InvalidInputError, match=r"\.dife-audit\.lock is a symbolic link"):
        audit(out, resume=True)
    assert lock.read_text() == SECRET
    (out / ".dife-audit.lock").unlink()

    store = _sentinel_link(tmp_path, out, "cells.jsonl")
    with pytest.raises(InvalidInputError, match=r"cells\.jsonl is a symbolic link"):
        audit(out, resume=True)
    assert store.read_text() == SECRET


def test_report_temp_files_are_unique_and_never_followed(tmp_path):
    from dife_core.outdir import write_text_atomic

    out = tmp_path / "out"
    out.mkdir()
    victim = _sentinel_link(tmp_path, out, "results.json.tmp")  # the name an older writer used
    (out / "results.json").symlink_to(tmp_path / "victim-elsewhere")
    write_text_atomic(out, "results.json", "{}\n")
    assert victim.read_text() == SECRET and not (tmp_path / "victim-elsewhere").exists()
    assert (out / "results.json").read_text() == "{}\n" and not (out / "results.json").is_symlink()
    assert not [n for n in os.listdir(out) if n.startswith(".results.json.")]  # no temp file left


# -- 4. the store is tamper-evident ------------------------------------------------------------

def _lines(out):
    return (out / "cells.jsonl").read_bytes().splitlines(keepends=True)


def _refused(capsys, out, match):
    """--resume and `dife report` both refuse the store, naming the line."""
    with pytest.raises(InvalidInputError, match=match):
        audit(out, resume=True)
    code, _, err = dife(capsys, "report", out, "--quiet")
    assert code == 2, err
    one_paragraph(err)
    assert "cells.jsonl line" in err


@pytest.mark.parametrize("how", ["edit", "reorder", "delete", "foreign", "not-an-object", "no-key"])
def test_tampered_store_is_detected_by_resume_and_report(tmp_path, capsys, hand, how):
    out = tmp_path / "out"
    audit(out)
    lines = _lines(out)
    i = next(n for n, line in enumerate(lines) if json.loads(line)["type"] == "cell")
    if how == "edit":
        rec = json.loads(lines[i])
        rec["record"]["status"] = "weak" if rec["record"].get("status") != "weak" else "exposed"
        lines[i] = (json.dumps(rec) + "\n").encode()
        match = rf"line {i + 1} \(key '.*was edited"
    elif how == "reorder":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        match = rf"line {i + 1} .*out of place"
    elif how == "delete":
        del lines[i]
        match = rf"line {i + 1} .*out of place"
    elif how == "foreign":
        other = tmp_path / "other"
        audit(other)
        lines[i] = _lines(other)[i]
        match = rf"line {i + 1} .*foreign"
    elif how == "not-an-object":
        lines[i] = b"[1, 2, 3]\n"
        match = rf"line {i + 1} is a JSON list, not a record"
    else:
        (out / ".dife-store-key").unlink()
        match = "no key file"
    (out / "cells.jsonl").write_bytes(b"".join(lines))
    if how == "no-key":
        with pytest.raises(InvalidInputError, match=match):
            audit(out, resume=True)
        code, _, err = dife(capsys, "report", out, "--quiet")
        assert code == 2 and "no key file" in err
        return
    _refused(capsys, out, match)


def test_store_key_is_private_to_the_user(tmp_path, hand):
    out = tmp_path / "out"
    audit(out)
    assert (out / ".dife-store-key").stat().st_mode & 0o777 == 0o600


# -- 5. the error contract -----------------------------------------------------------------

def test_plugin_raising_systemexit_is_a_broken_plugin_and_never_a_success(tmp_path):
    make_dist(tmp_path, "dife-exits", "dife_exits", "raise SystemExit(0)\n")
    make_dist(tmp_path, "dife-evil-loader", "dife_evil_loader", """
        from dife_core import hookimpl
        from dife_core.types import ModelLoader

        def load(source, **kw):
            raise SystemExit(0)

        @hookimpl
        def register_model_loaders(register):
            register(ModelLoader(name="evil", description="exits", load=load, sniff=lambda s: True))

        class Panic(BaseException):
            pass

        @hookimpl
        def register_commands(cli):
            @cli.command("panic-please")
            def panic():
                raise Panic("tokenizer panicked")
    """)
    env = {"DIFE_LOAD_PLUGINS": "dife_exits,dife_evil_loader"}
    r = run_dife("list-plugins", "--json", pythonpath=[tmp_path], env=env)
    assert r.returncode == 0, r.stderr
    data = {d["name"]: d for d in json.loads(r.stdout)}
    assert "SystemExit" in data["dife-exits"]["error"]
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x80\x02}q\x00.")
    r = run_dife("inspect", str(bad), "--loader", "evil", pythonpath=[tmp_path], env=env)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = run_dife("panic-please", pythonpath=[tmp_path], env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Error: Panic: tokenizer panicked" in r.stderr and r.stderr.count("Error:") == 1
    assert not (Path.cwd() / "sentinel").exists()


def test_audit_cli_exit_codes_in_a_fresh_process(tmp_path):
    """The documented exit codes hold outside pytest too: 3 unsafe, 2 malformed, 0 fine."""
    script = Path(__file__).parent / "engine" / "run_hand_audit.py"
    d = spec_dict()
    d["checkpoints"][0]["options"] = {"tokenizer_kwargs": {"trust_remote_code": True}}
    unsafe = write_spec(tmp_path / "unsafe.toml", d)
    nested = tmp_path / "nested.toml"
    nested.write_text("seed = " + "[" * 3000 + "]" * 3000 + "\n")
    env = dict(os.environ, DIFE_STRICT_PLUGINS="1", DIFE_LOAD_PLUGINS="")
    import subprocess

    for spec, code, key in ((unsafe, 3, "checkpoints[0].options.tokenizer_kwargs.trust_remote_code"),
                            (nested, 2, "nested.toml")):
        r = subprocess.run([sys.executable, str(script), str(spec), str(tmp_path / "out")], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == code, r.stderr
        assert key in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


# -- 6. datasets -----------------------------------------------------------------------------

def _png_header(path: Path, w: int, h: int) -> None:
    """A tiny PNG claiming ``w`` x ``h`` pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_dataset_bombs_escapes_and_long_captions_are_refused(tmp_path):
    from dife_core.builtins.datasets import load_csv, load_image, load_imagefolder

    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    _png_header(root / "cat" / "bomb.png", 100_000, 100_000)
    t = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"bomb.png claims .*image_pixels.*not decoded"):
        load_image(root / "cat" / "bomb.png", 16)
    with pytest.raises(InvalidInputError, match="image_pixels"):
        load_imagefolder(root, image_size=16)
    _png_header(root / "cat" / "bomb.png", 7000, 7000)  # over the bound, under twice PIL's own
    with pytest.raises(InvalidInputError, match=r"bomb.png claims 7000 x 7000 pixels.*image_pixels"):
        load_image(root / "cat" / "bomb.png", 16)
    assert time.perf_counter() - t < 5

    secret = tmp_path / "secret.png"
    _png_header(secret, 4, 4)
    (root / "cat" / "bomb.png").unlink()
    (root / "cat" / "link.png").symlink_to(secret)
    with pytest.raises(InvalidInputError, match="outside the dataset root"):
        load_imagefolder(root, image_size=16)
    for row in ("../secret.png,a cat", f"{secret},a cat"):
        (root / "pairs.csv").write_text("filepath,title\n" + row + "\n")
        with pytest.raises(InvalidInputError, match=r"pairs.csv row 2, column 'filepath'.*outside the dataset root"):
            load_csv(root / "pairs.csv", image_size=16)
    (root / "pairs.csv").write_text("filepath,title\ncat/x.png," + "a" * 5000 + "\n")
    with pytest.raises(InvalidInputError, match=r"row 2, column 'title': a caption of 5000 characters"):
        load_csv(root / "pairs.csv", image_size=16)
    (root / "pairs.csv").write_text("filepath,title\ncat/x.png,\"" + "a" * 200_000 + "\"\n")
    with pytest.raises(InvalidInputError, match="pairs.csv"):
        load_csv(root / "pairs.csv", image_size=16)
    with pytest.raises(InvalidInputError, match="option image_size"):
        load_csv(root / "pairs.csv", image_size=10**6)


def test_scan_budgets_in_a_spec_are_bounded_before_anything_runs(tmp_path, capsys, hand):
    """A checkpoint's `scan` table (and its loader options) may not ask for
    more optimisation steps or enumerated candidates than the bounds allow:
    refused by validate, naming the file and the key."""
    d = spec_dict()
    d["checkpoints"][0]["scan"] = {"text-tokens.steps": 10**12, "text-tokens.drift_exhaustive": 10**15}
    spec = write_spec(tmp_path / "scan.toml", d)
    code, _, err = dife(capsys, "validate", spec)
    assert code == 2, err
    one_paragraph(err)
    msg = " ".join(err.split())
    assert "scan.toml" in msg and "checkpoints[0].scan.'text-tokens.steps'" in msg and "--limit steps=N" in msg
    assert "checkpoints[0].scan.'text-tokens.drift_exhaustive'" in msg
