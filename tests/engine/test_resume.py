"""An audit killed with SIGKILL resumes to identical results without
recomputing any finished cell."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from dife_core.engine import AuditSpec

from .handmade import spec_dict

SCRIPT = Path(__file__).with_name("run_hand_audit.py")


def _run(spec, out, *extra, wait=True, pause_after=0):
    # no installed plugins: only the hand-made ones (fast start, same in every run)
    env = dict(os.environ, DIFE_STRICT_PLUGINS="1", DIFE_LOAD_PLUGINS="", HAND_PAUSE_AFTER_CELLS=str(pause_after))
    p = subprocess.Popen([sys.executable, str(SCRIPT), str(spec), str(out), *extra], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        o, e = p.communicate(timeout=300)
        assert p.returncode == 0, o + e
    return p


def _store(out):
    path = Path(out) / "cells.jsonl"
    if not path.exists():
        return []
    recs = []
    for line in path.read_bytes().splitlines(keepends=True):
        if line.endswith(b"\n"):
            recs.append(json.loads(line))
    return recs


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    d = spec_dict(batch_size=4)
    spec = tmp_path / "audit.toml"
    spec.write_text(AuditSpec.from_dict(d).to_toml())

    killed = tmp_path / "killed"
    # the audit pauses right after its 6th cell record is on disk and says so on
    # stdout: the kill lands at that event, mid-audit, whatever the machine's speed
    p = _run(spec, killed, wait=False, pause_after=6)
    line = p.stdout.readline()
    assert line.strip() == "paused", line + p.communicate()[1]
    assert sum(r["type"] == "cell" for r in _store(killed)) == 6
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert not (killed / "results.json").exists()  # it really died mid-audit
    before = _store(killed)
    plan = next(r for r in before if r["type"] == "plan")["record"]
    done_before = {r["key"] for r in before if r["type"] in ("cell", "footprint", "utility")}
    planned = {c["key"] for c in plan["cells"] + plan["footprints"] + plan["utilities"]}
    assert 0 < len(done_before & planned) < len(planned)

    _run(spec, killed, "--resume")
    after = _store(killed)
    resumed_run = [r for r in after[len(before):] if r["type"] in ("cell", "footprint", "utility")]
    recomputed = {r["key"] for r in resumed_run} & done_before
    assert not recomputed, "finished records were recomputed on --resume"
    assert {r["key"] for r in resumed_run} | done_before >= planned

    fresh = tmp_path / "fresh"
    _run(spec, fresh)
    a = json.loads((killed / "results.json").read_text())
    b = json.loads((fresh / "results.json").read_text())
    assert a["complete"] and a == b
