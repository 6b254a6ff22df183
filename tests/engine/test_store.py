"""The cell store: torn writes, latest-wins, the folder lock, in-process resume."""

import pytest

from dife_core import hookimpl
from dife_core.engine import AuditSpec
from dife_core.engine.runner import Audit
from dife_core.engine.store import AuditLock, CellStore
from dife_core.errors import DifeError
from dife_core.types import Interface, InterfaceCard

from .handmade import spec_dict


def test_torn_last_line_is_ignored_and_cut(tmp_path):
    with CellStore(tmp_path) as s:
        s.append("cell", "k1", {"v": 1})
        s.append("cell", "k2", {"v": 2})
    with open(tmp_path / "cells.jsonl", "ab") as f:
        f.write(b'{"type": "cell", "key": "k3", "rec')  # the process died here
    s = CellStore(tmp_path)
    assert [r["key"] for r in s.records()] == ["k1", "k2"]
    s.append("cell", "k1", {"v": 10})
    s.close()
    latest = CellStore(tmp_path).latest("cell")
    assert latest["k1"]["record"] == {"v": 10} and set(latest) == {"k1", "k2"}
    assert (tmp_path / "cells.jsonl").read_bytes().count(b"\n") == 3


def test_records_are_chained_across_appends_and_reopenings(tmp_path):
    with CellStore(tmp_path) as s:
        s.append("cell", "k1", {"v": 1.5, "name": "caf\u00e9 \ud800"})  # a lone surrogate is stored escaped
    with CellStore(tmp_path) as s:
        s.append("cell", "k2", {"v": 2})
    recs = list(CellStore(tmp_path).records())
    assert [r["seq"] for r in recs] == [0, 1] and recs[0]["record"]["name"] == "caf\u00e9 \ud800"
    assert len({r["store"] for r in recs}) == 1 and all("mac" not in r for r in recs)
    assert (tmp_path / ".dife-store-key").stat().st_mode & 0o777 == 0o600
    fresh = CellStore(tmp_path, fresh=True)
    assert list(fresh.records()) == [] and not (tmp_path / ".dife-store-key").exists()


def test_one_audit_per_folder(tmp_path):
    with AuditLock(tmp_path):
        with pytest.raises(DifeError, match="another audit is writing"):
            with AuditLock(tmp_path):
                pass
    with AuditLock(tmp_path):  # released
        pass


FLAKY = {"fail": True}


class _Flaky:
    @hookimpl
    def register_interfaces(self, register):
        from dife_core.engine import CellResult

        def evaluate(ctx):
            if FLAKY["fail"]:
                raise RuntimeError("transient failure")
            return CellResult(value=0.0, metrics={"ts": 0.0})

        register(Interface(card=InterfaceCard(name="flaky", title="flaky", readout="score",
                                              trigger_channels=("image", "text"), target_event="t",
                                              population="classification", reference=None, metric="ts"),
                           evaluate=evaluate))


def test_resume_reuses_finished_records_and_retries_errors(tmp_path, hand, register_plugin):
    register_plugin(_Flaky(), "flaky")
    spec = AuditSpec.from_dict(spec_dict(interfaces=["zero-shot-classification", "flaky"]))
    FLAKY["fail"] = True
    a = Audit(spec, tmp_path, resume=False, progress=False)
    a.run()
    total = a.counts["computed"]
    FLAKY["fail"] = False
    b = Audit(spec, tmp_path, resume=True, progress=False)
    b.run()
    errors = 4  # the flaky interface on 2 audited + 2 control rows
    assert b.counts == {"computed": errors, "reused": total - errors}
    c = Audit(spec, tmp_path, resume=True, progress=False)
    c.run()
    assert c.counts["computed"] == 0
    # changing a threshold changes the cells' inputs: they are recomputed
    d = Audit(AuditSpec.from_dict(spec_dict(interfaces=["zero-shot-classification", "flaky"],
                                            thresholds={"exposed": 0.6})), tmp_path, resume=True, progress=False)
    d.run()
    # 8 cells, and the 2 footprints: per-interface branch swaps depend on every cell's definition
    assert d.counts["computed"] == 10 and d.counts["reused"] == total - 10
