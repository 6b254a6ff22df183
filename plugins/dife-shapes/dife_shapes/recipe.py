"""The tiny CLIP recipe: an open_clip custom architecture trained on the shapes world.

``clean_clip("default")`` trains the clean reference model on the CPU in a few
minutes, or loads it from the cache when the same recipe (same content: world
preset, architecture, schedule, seed, generator version, and the source of
the code that renders the world and trains the model, :data:`RECIPE_SOURCES`)
was trained before: an edit to that code retrains, with no version bump.
The cache holds DIFE checkpoint folders under ``$DIFE_CACHE_DIR`` (default
``~/.cache/dife``), in ``shapes/``.

Measured figures are in ``docs/world.md`` (``benchmarks/bench_world.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import attrs

from . import render


def _arch(vision_width: int, text_width: int, text_layers: int, embed_dim: int, heads: int = 4) -> dict:
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"layers": [1, 1, 1, 1], "width": vision_width, "image_size": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": text_width, "heads": heads,
                     "layers": text_layers},
    }


@attrs.frozen
class Recipe:
    """Everything that decides the trained weights (the cache key hashes it all)."""

    name: str
    world: Any  # shapes world preset: a name in world.PRESETS or a WorldPreset
    architecture: dict = attrs.field(hash=False)
    steps: int
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float = 0.1

    def key(self, seed: int) -> str:
        blob = json.dumps({"recipe": attrs.asdict(self), "seed": int(seed),
                           "generator": render.GENERATOR_VERSION, "code": recipe_code_digest()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


#: The code that decides a recipe's trained weights: the world's rendering and
#: populations (this package), the model's architecture and forward pass
#: (dife_openclip's encoder) and the core training loop, model and checkpoint
#: code. ``(module, file)`` pairs; the files are hashed by content.
RECIPE_SOURCES = (
    ("dife_shapes", "render.py"), ("dife_shapes", "world.py"), ("dife_shapes", "recipe.py"),
    ("dife_openclip", "encoder.py"),
    ("dife_core", "training.py"), ("dife_core", "model.py"), ("dife_core", "checkpoint.py"),
    ("dife_core", "populations.py"), ("dife_core", "builtins/datasets.py"),
)


def recipe_code_digest(sources=None) -> str:
    """sha256 of the files in ``sources`` (default :data:`RECIPE_SOURCES`)."""
    sources = RECIPE_SOURCES if sources is None else sources
    import importlib.util

    from dife_core.building import source_digest

    files = []
    for module, rel in sources:
        spec = importlib.util.find_spec(module)
        base = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
        files.append((base / rel) if base else Path(f"<{module}>/{rel}"))
    h = hashlib.sha256()
    for (module, rel), f in zip(sources, files):
        h.update(f"{module}/{rel}\0".encode())
        h.update(source_digest([f], f.parent).encode())
    return h.hexdigest()


RECIPES = {
    # ResNet [1,1,1,1] width 32 on 32x32 pixels, 2-layer width-128 text tower.
    "default": Recipe(name="default", world="default", architecture=_arch(32, 128, 2, 128),
                      steps=600, batch_size=256, lr=2e-3, warmup=50),
    # The test suite's clean reference: half the ResNet width and a width-64
    # text tower (0.17 s a step instead of 0.35 s) on the smaller, milder test
    # world; more steps at a higher rate make up for the smaller model.
    "test": Recipe(name="test", world="test", architecture=_arch(16, 64, 2, 128),
                   steps=280, batch_size=256, lr=3e-3, warmup=20),
}


def get_recipe(recipe) -> Recipe:
    from dife_core.errors import NotFoundError, available

    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise NotFoundError(f"unknown shapes recipe {recipe!r}; {available(RECIPES)}.")
    return RECIPES[recipe]


def default_cache_dir() -> Path:
    return Path(os.environ.get("DIFE_CACHE_DIR") or Path.home() / ".cache" / "dife")


def cache_path(recipe, seed: int = 0, cache_dir=None) -> Path:
    r = get_recipe(recipe)
    return Path(cache_dir or default_cache_dir()) / "shapes" / f"clip-{r.name}-s{int(seed)}-{r.key(seed)}"


def build_untrained(recipe, seed: int = 0):
    """The recipe's architecture with its seeded random initialisation."""
    import torch

    from dife_openclip.encoder import build_custom

    r = get_recipe(recipe)
    torch.manual_seed(seed)
    return build_custom(r.architecture, name="clean")


def train_clean(recipe, seed: int = 0, *, world=None, progress: bool = True, device: str = "cpu"):
    """Train the recipe from scratch (no cache). Returns the encoder."""
    from dife_core.training import contrastive_train

    from .world import make_world

    r = get_recipe(recipe)
    world = world if world is not None else make_world(r.world, seed)
    pairs = world.extras["train_pairs"]
    enc = build_untrained(r, seed)
    return contrastive_train(enc, pairs.images, pairs.captions, steps=r.steps, batch_size=r.batch_size, lr=r.lr,
                             warmup=r.warmup, weight_decay=r.weight_decay, seed=seed, progress=progress,
                             description=f"training tiny CLIP ({r.name})", device=device)


def clean_clip(preset="default", seed: int = 0, cache_dir=None, progress: bool = True, device: str = "cpu"):
    """The clean tiny CLIP of a recipe: from the cache, or trained and cached.

    Returns an :class:`dife_openclip.encoder.OpenClipEncoder` in eval mode.
    Processes that ask for the same model at once train it once: the others
    wait on a lock file and then read the cache.
    """
    r = get_recipe(preset)
    path = cache_path(r, seed, cache_dir)
    enc = _load_cached(r, seed, path, device)
    if enc is not None:
        return enc
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.with_name(path.name + ".lock")):
        enc = _load_cached(r, seed, path, device)  # trained by another process meanwhile?
        if enc is None:
            enc = _train_and_save(r, seed, path, progress, device)
    return enc.eval()


def _load_cached(r: Recipe, seed: int, path: Path, device: str):
    from dife_core.checkpoint import is_checkpoint, load_checkpoint

    if not is_checkpoint(path):
        return None
    enc = load_checkpoint(path, device=device)
    if enc.manifest.get("extra", {}).get("recipe_key") != r.key(seed):
        return None
    return enc.eval()


def _train_and_save(r: Recipe, seed: int, path: Path, progress: bool, device: str):
    from dife_core.checkpoint import save_checkpoint

    from .world import make_world

    world = make_world(r.world, seed)
    enc = train_clean(r, seed, world=world, progress=progress, device=device)
    stats = getattr(enc, "train_stats", None)
    extra = {"recipe": attrs.asdict(r), "recipe_key": r.key(seed), "seed": int(seed),
             "world": world.name, "generator_version": render.GENERATOR_VERSION,
             "train_seconds": round(stats.seconds, 1) if stats else None,
             "clean_utility": clean_utility(enc, world)}
    save_checkpoint(enc, path, extra=extra)
    enc.manifest = {"extra": extra}
    return enc


@contextlib.contextmanager
def _lock(lock_path: Path):
    try:
        import fcntl
    except ImportError:  # no advisory locks here: at worst two processes train the same model
        yield
        return
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clean_utility(encoder, world) -> dict:
    """``{"clean_acc", "t2i_p@5"}``: zero-shot accuracy on the test set with
    ``world.templates[0]`` and text-to-image precision@5 on the pool."""
    from dife_core.utility import clean_utility as _cu

    return _cu(encoder, classification=world.classification, pool=world.pool, template=world.templates[0], k=5)


def print_clean_utility(preset="default", seed: int = 0, cache_dir=None, device: str = "cpu",
                        progress: bool = True, console=None) -> dict:
    """Train or reuse the cached clean model and print its clean utility
    (what ``dife demo`` shows before the audit). Returns the figures."""
    from rich.console import Console
    from rich.table import Table

    from .world import make_world

    console = console or Console()
    r = get_recipe(preset)
    path = cache_path(r, seed, cache_dir)
    cached = path.exists()
    enc = clean_clip(r, seed, cache_dir=cache_dir, progress=progress, device=device)
    util = clean_utility(enc, make_world(r.world, seed))
    table = Table(title=f"clean tiny CLIP ({r.name} recipe, seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("zero-shot accuracy (\"a photo of a {}\")", f"{util['clean_acc']:.3f}")
    table.add_row("text->image precision@5", f"{util['t2i_p@5']:.3f}")
    console.print(table)
    # soft wrap: a long cache path stays on one line, whole, for copying
    console.print(f"checkpoint: {path} ({'reused from cache' if cached else 'trained now'})", soft_wrap=True)
    return util
