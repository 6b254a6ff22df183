"""Branch swap on every applicable interface, at no extra encoder pass."""

from dife_core.engine.runner import Audit
from dife_core.engine.spec import AuditSpec


def _run(tmp_path, name, hand, monkeypatch=None, per_interface=True):
    from dife_core.engine import footprint as fp
    from dife_core.engine import runner

    if not per_interface:
        monkeypatch.setattr(runner, "measure_per_interface", lambda *a, **k: {})
    spec = AuditSpec.from_dict(hand.spec_dict())
    audit = Audit(spec, tmp_path / name, resume=False, progress=False)
    audit.run()
    from dife_core.engine.results import assemble

    assert fp  # imported for the monkeypatch target's module
    return audit, assemble(tmp_path / name)


def test_every_measured_cell_has_its_branch_swap(hand, tmp_path):
    _, results = _run(tmp_path, "a", hand)
    for f in results["footprints"]:
        cells = {c["interface"]: c for c in results["cells"] if c["checkpoint"] == f["checkpoint"]}
        measured = {k for k, c in cells.items() if c["status"] not in ("n.e.", "error")}
        assert set(f["per_interface"]) == measured
        for k, v in f["per_interface"].items():
            assert {"a00", "a10", "a01", "a11", "footprint"} <= set(v)
            assert v["a11"] == cells[k]["value"]  # the cell itself is the (P_V, P_T) slot
    by = {f["checkpoint"]: f for f in results["footprints"]}
    # each carrier's per-interface swaps attribute its exposed cells to its own tower
    for iface, v in by["visual"]["per_interface"].items():
        if v["footprint"] != "weak":
            assert v["footprint"] == "visual", iface
    for iface, v in by["textual"]["per_interface"].items():
        if v["footprint"] != "weak":
            assert v["footprint"] == "textual", iface


def test_per_interface_swaps_encode_nothing_new(hand, tmp_path, monkeypatch):
    with_swaps, _ = _run(tmp_path, "with", hand)
    monkeypatch_ctx = monkeypatch
    without, _ = _run(tmp_path, "without", hand, monkeypatch_ctx, per_interface=False)
    jobs = lambda a: sorted({(k[0], k[1], k[2], k[3]) for k in a.embeddings.log})  # noqa: E731
    assert jobs(with_swaps) == jobs(without)
    assert len(with_swaps.embeddings.log) == len(without.embeddings.log)
