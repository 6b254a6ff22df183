"""The tiny CLIP recipe: training, determinism, the content-keyed cache, clean utility."""

import attrs
import pytest
import torch

from dife_core.checkpoint import read_manifest
from dife_core.errors import NotFoundError
from dife_shapes import recipe as R
from dife_shapes.world import PRESETS

#: the test recipe cut to a few steps on a tiny world: for behaviour, not quality
TINY_WORLD = attrs.evolve(PRESETS["test"], name="tiny", n_train_pairs=300, n_test=100, n_train=100, n_pool=100,
                          n_shadow=20, n_rerank=5, n_selection=5, n_selection_6x1=5)
TINY = attrs.evolve(R.RECIPES["test"], name="tiny", world=TINY_WORLD, steps=3, batch_size=64)


def test_same_seed_same_weights():
    from dife_shapes.world import make_world

    world = make_world(TINY.world, 0)
    a = R.train_clean(TINY, seed=0, world=world, progress=False)
    b = R.train_clean(TINY, seed=0, progress=False)  # builds its own (identical) world
    assert a.fingerprint() == b.fingerprint()
    c = R.train_clean(TINY, seed=1, world=world, progress=False)  # other init and batch order
    assert c.fingerprint() != a.fingerprint()


def test_cache_is_keyed_by_recipe_content(tmp_path, monkeypatch):
    enc = R.clean_clip(TINY, seed=0, cache_dir=tmp_path, progress=False)
    path = R.cache_path(TINY, 0, tmp_path)
    manifest = read_manifest(path)
    assert manifest["loader"] == "openclip" and manifest["fingerprint"] == enc.fingerprint()
    assert manifest["extra"]["recipe_key"] == TINY.key(0)
    assert set(manifest["extra"]["clean_utility"]) == {"clean_acc", "t2i_p@5"}

    def no_training(*a, **k):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(R, "train_clean", no_training)
    again = R.clean_clip(TINY, seed=0, cache_dir=tmp_path, progress=False)
    assert again.fingerprint() == enc.fingerprint()
    # any change of content is another cache entry
    assert R.cache_path(attrs.evolve(TINY, lr=1e-4), 0, tmp_path) != path
    assert R.cache_path(TINY, 1, tmp_path) != path


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFE_CACHE_DIR", str(tmp_path))
    assert R.cache_path("default").parent == tmp_path / "shapes"
    monkeypatch.delenv("DIFE_CACHE_DIR")
    assert ".cache" in str(R.default_cache_dir())


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(NotFoundError, match="available: default, test"):
        R.clean_clip("huge")


def test_print_clean_utility(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=120)
    util = R.print_clean_utility(TINY, cache_dir=tmp_path, progress=False, console=console)
    text = console.export_text()
    assert "zero-shot accuracy" in text and "trained now" in text
    assert 0.0 <= util["clean_acc"] <= 1.0
    R.print_clean_utility(TINY, cache_dir=tmp_path, progress=False, console=console)
    assert "reused from cache" in console.export_text()


def test_test_recipe_is_clearly_better_than_chance():
    """The acceptance figure of the test recipe (>= 0.5 zero-shot accuracy;
    <= 60 s on 2 idle cores, see docs/world.md); end-to-end tests build on
    this model through dife_shapes.testing."""
    from dife_shapes.testing import clean_test_clip, shapes_test_world

    enc = clean_test_clip()
    util = R.clean_utility(enc, shapes_test_world())
    assert util["clean_acc"] >= 0.5, util
    assert util["t2i_p@5"] >= 0.5, util
    # every caller gets a private copy: training one leaves the shared model alone
    with torch.no_grad():
        next(enc.model.parameters()).add_(1.0)
    enc.invalidate_fingerprint()
    assert clean_test_clip().fingerprint() != enc.fingerprint()
