"""`dife demo` end to end on the small test world (the README's main command, scaled down).

The clean test-recipe CLIP is shared with the other tests through
``dife_shapes.testing``'s cache; the two attack builds and the audit run for
real. A second run must reuse every build and every finished cell.
"""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def shared_cache(monkeypatch):
    from dife_shapes.testing import _cache_dir

    monkeypatch.setenv("DIFE_CACHE_DIR", _cache_dir())


def _demo(out):
    from click.testing import CliRunner

    from dife_core.cli import build_cli

    r = CliRunner().invoke(build_cli(), ["demo", "--preset", "test", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    return r.output


def _cell(results, checkpoint, interface):
    return next(c for c in results["cells"] if c["checkpoint"] == checkpoint and c["interface"] == interface)


def test_demo_end_to_end(tmp_path, shared_cache):
    out = tmp_path / "demo"
    first = _demo(out)
    assert "DIFE exposure matrix" in first  # printed even without progress bars
    for name in ("results.json", "report.md", "report.html", "spec.toml"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    assert not [c for c in results["cells"] if c["status"] == "error"]
    names = [c["name"] for c in results["checkpoints"]]
    assert names[:3] == ["clean", "contrastive-poisoning", "badtexttower"]
    assert {"clean@contrastive-poisoning", "clean@badtexttower"} <= set(names)

    # every checkpoint carries its attack card with the native value it measured
    cards = {c["name"]: c["attack"] for c in results["checkpoints"] if c["role"] == "audited"}
    assert cards["contrastive-poisoning"]["native"]["metric"] == "ts"
    assert cards["badtexttower"]["native"]["metric"] == "qhr"

    # N.E. cells say why; the text route carries BadTextTower
    ne = _cell(results, "contrastive-poisoning", "text-reranking")
    assert ne["status"] == "n.e." and "text trigger" in ne["reason"]
    assert _cell(results, "badtexttower", "downstream-visual-classification")["status"] == "n.e."
    assert _cell(results, "badtexttower", "prompt-conditioned-classification")["status"] == "exposed"
    assert _cell(results, "contrastive-poisoning", "zero-shot-classification")["status"] == "exposed"
    fps = {f["checkpoint"]: f for f in results["footprints"]}
    assert fps["badtexttower"]["footprint"] == "textual"
    # (ContrastivePoisoning's footprint is `visual` on the default world; the test
    # world's under-trained clean model lets the text tower co-adapt: see docs/findings.md)
    assert fps["contrastive-poisoning"]["footprint"] in ("visual", "coupled")
    # the clean reference under each attack's trigger is not flagged
    assert results["controls"] and not any(c["flagged"] for c in results["controls"])

    # warm: builds and cells reused, same numbers
    second = _demo(out)
    assert second.count("reused from cache") == 2, second
    again = json.loads((out / "results.json").read_text())
    assert [(c["checkpoint"], c["interface"], c["value"]) for c in again["cells"]] == \
        [(c["checkpoint"], c["interface"], c["value"]) for c in results["cells"]]


def test_demo_without_the_world_plugin(fresh_registry, monkeypatch):
    from dife_core.demo import demo_spec
    from dife_core.errors import NotFoundError

    monkeypatch.setenv("DIFE_LOAD_PLUGINS", "openclip")  # no dife-shapes
    with pytest.raises(NotFoundError, match="needs .*no installed plugin provides"):
        demo_spec(preset="test")
