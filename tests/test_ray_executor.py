"""``--executor ray`` on a local Ray cluster started here (loopback only, one per module).

Workers are other processes: the hand-made world's plugin (and this module's
loader with failure modes) reach them through ``plugin_modules`` -- each
worker imports ``module:attr`` and registers it (docs/scale-out.md).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'dife[ray]'); the Ray executor is untested")

from dife_core import hookimpl  # noqa: E402
from dife_core.engine import AuditSpec, run_audit  # noqa: E402
from dife_core.engine.store import CellStore  # noqa: E402
from dife_core.executors import RayExecutor  # noqa: E402
from dife_core.types import ModelLoader  # noqa: E402

from .engine import handmade  # noqa: E402
from .engine.handmade import TEXTUAL_CARD, VISUAL_CARD, spec_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["tests.engine.handmade:HandPlugin", "tests.test_ray_executor:FailingLoaderPlugin"]
from dife_core.executors import LOOPBACK  # noqa: E402

DRIVER_ENV = "DIFE_TEST_RAY_DRIVER_PID"


def _load(source, *, trust=False, device="cpu", kill_once=None, **options):
    """The hand-made carriers, with failure modes that fire in Ray workers only
    (the driver loads every checkpoint first, for its fingerprint)."""
    in_worker = os.getpid() != int(os.environ.get(DRIVER_ENV, "0"))
    kind = str(source)
    if kind.startswith("unloadable-") and in_worker:
        raise RuntimeError("this checkpoint will not load on a worker")
    if kill_once and in_worker and not os.path.exists(kill_once):
        Path(kill_once).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-audit, once
    return handmade.HandEncoder(kind.removeprefix("unloadable-")).to(device)


class FailingLoaderPlugin:
    @hookimpl
    def register_model_loaders(self, register):
        register(ModelLoader(name="hand-failing", description="hand-made carriers that fail in workers", load=_load))


@pytest.fixture(scope="module")
def cluster():
    os.environ[DRIVER_ENV] = str(os.getpid())
    # workers inherit this environment: the repository on their path, this run's plugin selection
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # Ray turns 127.0.0.1 into the machine's network address; 127.0.0.2 stays on the loopback
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture
def plugins(register_plugin):
    register_plugin(handmade.HandPlugin(), "hand-test")
    register_plugin(FailingLoaderPlugin(), "hand-failing-test")


def _spec(checkpoints, **kw) -> AuditSpec:
    return AuditSpec.from_dict(spec_dict(checkpoints=checkpoints, interfaces=list(handmade.BUILTIN_IDS), **kw))


def _records(out) -> dict:
    """``{key: record}`` of the planned records of the audit in ``out``."""
    store = CellStore(out)
    plan = store.last("plan")["record"]
    latest = store.latest()
    store.close()
    keys = [x["key"] for part in ("utilities", "cells", "footprints") for x in plan[part]]
    return {k: latest[k]["record"] for k in keys if k in latest}


def _lines(store: Path) -> list:
    """The complete records of a store file (a killed writer may leave half a line)."""
    if not store.exists():
        return []
    return [json.loads(x) for x in store.read_bytes().splitlines(keepends=True) if x.endswith(b"\n")]


def _ck(name, kind, card, loader="handmade", **options):
    d = {"name": name, "source": kind, "loader": loader, "attack": card}
    if options:
        d["options"] = options
    return d


@pytest.mark.parametrize("weights", ["object-store", "path"])
def test_ray_records_identical_to_local(cluster, plugins, tmp_path, weights):
    spec = _spec([_ck("textual-a", "textual", TEXTUAL_CARD), _ck("visual-a", "visual", VISUAL_CARD),
                  _ck("textual-b", "textual", TEXTUAL_CARD), _ck("plain", "clean", None)])
    local = run_audit(spec, tmp_path / "local", progress=False)
    ex = RayExecutor(plugin_modules=PLUGINS, weights=weights)
    remote = run_audit(spec, tmp_path / "ray", progress=False, executor=ex)
    a, b = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert a.keys() == b.keys() and a
    assert a == b  # same statuses, same values (both fp32 on the CPU)
    assert local["complete"] and remote["complete"]
    assert ex.stats["tasks"] == ex.stats["units"]


def test_failed_load_is_error_cells_and_killed_worker_is_retried(cluster, plugins, tmp_path, capsys):
    marker = tmp_path / "killed-once"
    spec = _spec([_ck("textual", "textual", TEXTUAL_CARD),
                  _ck("killer", "visual", VISUAL_CARD, loader="hand-failing", kill_once=str(marker)),
                  _ck("broken", "unloadable-textual", TEXTUAL_CARD, loader="hand-failing")])
    res = run_audit(spec, tmp_path / "out", progress=True, show_matrix=False,  # per-checkpoint task bars
                    executor=RayExecutor(plugin_modules=PLUGINS, weights="path"))  # workers load the sources
    assert marker.exists()  # a worker really died
    err = capsys.readouterr().err
    assert "tasks (all checkpoints)" in err
    by_row: dict = {}
    for c in res["cells"]:
        by_row.setdefault(c["checkpoint"], []).append(c)
    assert all(c["status"] == "error" and "will not load" in c["reason"] for c in by_row["broken"])
    for name in ("textual", "killer", "clean@broken", "clean@killer"):
        assert by_row[name] and all(c["status"] != "error" for c in by_row[name]), name
    assert not res["complete"] and not res["missing"]
    broken_fp = next(f for f in res["footprints"] if f["checkpoint"] == "broken")
    assert "will not load" in json.dumps(broken_fp)
    # the killed worker's unit was retried: its records equal a local audit's
    local_spec = _spec([_ck("killer", "visual", VISUAL_CARD, loader="hand-failing", kill_once=str(marker))])
    run_audit(local_spec, tmp_path / "local", progress=False)
    mine = _records(tmp_path / "out")
    for key, rec in _records(tmp_path / "local").items():
        assert mine[key] == rec


def test_object_store_weights_never_load_a_checkpoint_in_a_worker(cluster, plugins, tmp_path):
    """With the default weights="object-store", tasks use the driver's loaded
    copy: a checkpoint whose loader fails on every worker still audits."""
    spec = _spec([_ck("broken", "unloadable-textual", TEXTUAL_CARD, loader="hand-failing")])
    res = run_audit(spec, tmp_path / "out", progress=False, executor=RayExecutor(plugin_modules=PLUGINS))
    assert res["complete"] and all(c["status"] != "error" for c in res["cells"])
    run_audit(spec, tmp_path / "local", progress=False)
    assert _records(tmp_path / "out") == _records(tmp_path / "local")
    with pytest.raises(ValueError, match="weights"):
        RayExecutor(weights="nfs")


DRIVER = """
import sys, ray, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
ray.init(address={address!r}, log_to_driver=False, runtime_env={{"env_vars": {{"HAND_DELAY": "0.05"}}}})
from dife_core.cli import main
from dife_core.plugins import get_registry
from tests.engine.handmade import HandPlugin
get_registry().register_object(HandPlugin(), "hand")
main(["audit", sys.argv[1], "--out", sys.argv[2], "--no-progress", "--executor", "ray", *sys.argv[3:]])
"""


def test_resume_after_kill_9_of_the_driver_recomputes_nothing_finished(cluster, plugins, tmp_path):
    spec = _spec([_ck(f"{k}-{i}", k, c) for i in range(3) for k, c in (("textual", TEXTUAL_CARD),
                                                                          ("visual", VISUAL_CARD))])
    path = tmp_path / "audit.toml"
    path.write_text(spec.to_toml())
    out = tmp_path / "out"
    env = dict(os.environ, DIFE_WORKER_PLUGINS="tests.engine.handmade:HandPlugin")
    script = DRIVER.format(root=str(ROOT), address=cluster)
    p = subprocess.Popen([sys.executable, "-c", script, str(path), str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    store = out / "cells.jsonl"
    while time.time() < deadline:
        if sum(r.get("type") == "cell" for r in _lines(store)) >= 8:
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    assert not (out / "results.json").exists()  # it died mid-audit
    before = _records(out)
    plan = CellStore(out).last("plan")["record"]
    planned = {x["key"] for part in ("utilities", "cells", "footprints") for x in plan[part]}
    assert 0 < len(before) < len(planned)
    n_lines = len(_lines(store))

    ex = RayExecutor(plugin_modules=PLUGINS)
    res = run_audit(path, out, resume=True, progress=False, executor=ex)
    new = _lines(store)[n_lines:]
    recomputed = {r["key"] for r in new if r.get("type") in ("cell", "utility", "footprint")} & before.keys()
    assert not recomputed, "finished records were recomputed on --resume"
    assert res["complete"] and _records(out).keys() == planned
