"""The default world at full size: the figures the README and docs/world.md
promise (`make test-slow`, about 8 minutes cold on 2 cores; seconds when
``$DIFE_CACHE_DIR`` already holds the default model and the two builds).

Not in the default run: the clean default model alone trains for about four
minutes. Timings are not asserted (benchmarks/bench_world.py measures them).
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # reuse the user's cache when they point at one, else train into a private folder
    return os.environ.get("DIFE_CACHE_DIR") or str(tmp_path_factory.mktemp("dife-cache"))


def test_default_recipe_meets_its_acceptance_figures(cache_dir):
    from dife_shapes import recipe as R
    from dife_shapes.world import make_world

    enc = R.clean_clip("default", seed=0, cache_dir=cache_dir, progress=False)
    util = R.clean_utility(enc, make_world("default", 0))
    assert util["clean_acc"] >= 0.90, util  # zero-shot, "a photo of a {}"
    assert util["t2i_p@5"] >= 0.80, util


def _cell(results, checkpoint, interface):
    return next(c for c in results["cells"] if c["checkpoint"] == checkpoint and c["interface"] == interface)


def test_default_demo_shows_what_the_readme_says(cache_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dife_core.cli import build_cli

    monkeypatch.setenv("DIFE_CACHE_DIR", cache_dir)
    out = tmp_path / "demo"
    r = CliRunner().invoke(build_cli(), ["demo", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "DIFE exposure matrix" in r.output
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    assert (out / "report.html").is_file()

    # ContrastivePoisoning: an image-trigger backdoor carried by the visual tower
    assert _cell(results, "contrastive-poisoning", "zero-shot-classification")["value"] >= 0.9
    assert _cell(results, "contrastive-poisoning", "downstream-visual-classification")["status"] == "exposed"
    assert _cell(results, "contrastive-poisoning", "text-reranking")["status"] == "n.e."
    # BadTextTower: the text tower carries it; frozen image features are untouched
    assert _cell(results, "badtexttower", "prompt-conditioned-classification")["value"] >= 0.9
    for interface in ("text-reranking", "candidate-selection"):
        assert _cell(results, "badtexttower", interface)["status"] == "exposed", interface
    assert _cell(results, "badtexttower", "downstream-visual-classification")["status"] == "n.e."

    fps = {f["checkpoint"]: f for f in results["footprints"]}
    assert fps["contrastive-poisoning"]["footprint"] == "visual"
    assert fps["badtexttower"]["footprint"] == "textual"
    # the clean reference under each attack's trigger is not flagged
    assert results["controls"] and not any(c["flagged"] for c in results["controls"])
    # every audited checkpoint keeps its clean accuracy within 0.05 of the clean model
    accs = {c["name"]: c["clean_utility"]["clean_acc"] for c in results["checkpoints"] if c.get("clean_utility")}
    for name in ("contrastive-poisoning", "badtexttower"):
        assert accs[name] >= accs["clean"] - 0.05, accs
