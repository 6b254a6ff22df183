"""Many checkpoints in one spec (glob: / dir: sources), the executor switch and
the local executor (the Ray executor itself: tests/test_ray_executor.py)."""

import subprocess
import sys

import pytest

from dife_core.engine import AuditSpec, run_audit
from dife_core.errors import InvalidInputError, UnsafeCheckpointError
from dife_core.executors import LocalExecutor, RayExecutor, make_executor

from .engine import handmade


def _touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _spec(tmp_path, *checkpoints, **top):
    d = handmade.spec_dict(checkpoints=list(checkpoints), **top)
    return AuditSpec.from_dict(d, base_dir=tmp_path, where=str(tmp_path / "audit.toml"))


def test_glob_of_folders_names_each_from_its_path(tmp_path):
    for n in ("ft-1", "ft-2", ".hidden"):
        (tmp_path / "models" / n).mkdir(parents=True)
    _touch(tmp_path / "models" / "notes.txt")
    spec = _spec(tmp_path, {"source": "glob:models/*/", "loader": "handmade"})
    assert [c.name for c in spec.checkpoints] == ["ft-1", "ft-2"]
    assert all(c.source.startswith(str(tmp_path.resolve())) and c.loader == "handmade" for c in spec.checkpoints)
    # the written spec lists the expanded checkpoints: it runs again as it is
    again = AuditSpec.from_dict(__import__("tomllib").loads(spec.to_toml()))
    assert [c.to_dict() for c in again.checkpoints] == [c.to_dict() for c in spec.checkpoints]
    assert "glob:" not in spec.to_toml()


def test_glob_of_files_drops_suffixes_and_makes_names_unique_and_valid(tmp_path):
    _touch(tmp_path / "a" / "model.safetensors")
    _touch(tmp_path / "b" / "model.pt")
    _touch(tmp_path / "c" / "we@ird name.pt")
    spec = _spec(tmp_path, {"source": "glob:*/*.*", "loader": "handmade", "attack": handmade.TEXTUAL_CARD})
    assert [c.name for c in spec.checkpoints] == ["model", "model-2", "we_ird_name"]
    assert all(c.attack == handmade.TEXTUAL_CARD for c in spec.checkpoints)  # the table's keys apply to each


def test_dir_source_lists_every_entry_but_hidden_ones(tmp_path):
    (tmp_path / "zoo" / "x").mkdir(parents=True)
    _touch(tmp_path / "zoo" / "y.safetensors")
    _touch(tmp_path / "zoo" / ".DS_Store")
    spec = _spec(tmp_path, {"source": "dir:zoo", "loader": "handmade"},
                 {"name": "single", "source": "textual", "loader": "handmade"})
    assert [c.name for c in spec.checkpoints] == ["x", "y", "single"]


@pytest.mark.parametrize("entry, message", [
    ({"source": "glob:nothing/*"}, "matches no file or folder"),
    ({"source": "dir:absent"}, "is not a folder"),
    ({"source": "glob:"}, "needs a pattern"),
    ({"source": "glob:m/*", "name": "x"}, "drop name"),
])
def test_bad_many_checkpoint_sources_name_the_key(tmp_path, entry, message):
    (tmp_path / "m" / "a").mkdir(parents=True)
    with pytest.raises(InvalidInputError) as e:
        _spec(tmp_path, entry)
    assert "checkpoints[0]" in str(e.value) and message in str(e.value)


def test_expansion_is_bounded_by_the_checkpoints_limit(tmp_path, monkeypatch):
    from dife_core import untrusted

    monkeypatch.setitem(untrusted.LIMITS, "checkpoints", 3)
    for i in range(5):
        (tmp_path / "m" / f"c{i}").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="bound checkpoints"):
        _spec(tmp_path, {"source": "glob:m/*"})
    with pytest.raises(InvalidInputError, match="bound checkpoints"):  # several tables together
        _spec(tmp_path, {"source": "glob:m/c[01]"}, {"source": "glob:m/c[234]"})


def test_executor_keys(tmp_path):
    base = {"name": "t", "source": "textual", "loader": "handmade"}
    assert _spec(tmp_path, base).executor == "local"
    s = _spec(tmp_path, base, executor="ray", ray_address="127.0.0.1:6379")
    assert (s.executor, s.ray_address) == ("ray", "127.0.0.1:6379")
    assert 'executor = "ray"' in s.to_toml()
    assert "executor" not in _spec(tmp_path, base).to_toml()  # a local spec is written as before
    with pytest.raises(InvalidInputError, match="executor"):
        _spec(tmp_path, base, executor="slurm")
    # a spec is untrusted: it never points DIFE at a network host
    with pytest.raises(UnsafeCheckpointError, match="ray_address"):
        _spec(tmp_path, base, executor="ray", ray_address="10.1.2.3:6379")


def test_make_executor():
    assert isinstance(make_executor(None), LocalExecutor) and isinstance(make_executor("local"), LocalExecutor)
    ex = make_executor("ray", address="auto", plugin_modules=["a.b:C"])
    assert isinstance(ex, RayExecutor) and ex.address == "auto" and ex.plugin_modules == ("a.b:C",)
    with pytest.raises(InvalidInputError, match="unknown executor"):
        make_executor("slurm")


def test_ray_is_imported_only_when_chosen():
    code = ("import sys; import dife_core.executors, dife_core.engine.runner; "
            "from dife_core.cli import build_cli; build_cli(); assert 'ray' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_audit_command_options(capsys):
    from dife_core.cli import main

    try:
        main(["audit", "--help"])
    except SystemExit as e:
        assert not e.code
    out = capsys.readouterr().out
    assert "--executor" in out and "--ray-address" in out
    with pytest.raises(SystemExit) as e:
        main(["audit", "x.toml", "--out", "o", "--executor", "local", "--ray-address", "auto"])
    assert e.value.code == 2


def test_glob_audit_writes_every_row_and_resume_reuses_every_record(tmp_path, register_plugin):
    register_plugin(handmade.HandPlugin(), "hand-test")
    for n in ("visual-1", "visual-2", "visual-3"):
        (tmp_path / "zoo" / n).mkdir(parents=True)
    d = handmade.spec_dict(checkpoints=[{"source": "glob:zoo/*/", "loader": "handmade",
                                         "attack": handmade.VISUAL_CARD}])
    (tmp_path / "audit.toml").write_text(AuditSpec.from_dict(d, base_dir=tmp_path).to_toml())
    from dife_core.engine import load_spec

    out = tmp_path / "out"
    res = run_audit(load_spec(tmp_path / "audit.toml"), out, progress=False)
    audited = [c["name"] for c in res["checkpoints"] if c["role"] == "audited"]
    assert audited == ["visual-1", "visual-2", "visual-3"] and res["complete"]
    assert "visual-3" in (out / "spec.toml").read_text()
    from dife_core.engine.runner import Audit

    audit = Audit(load_spec(out / "spec.toml"), out, resume=True, progress=False)
    audit.run()
    assert audit.counts["computed"] == 0 and audit.counts["reused"] > 0
