"""The shapes world: every audit population, generated from a seed.

``make_world("default", seed=0)`` returns a :class:`dife_core.populations.World`
with ten CIFAR-10-named classes drawn as distinct glyphs under random colour,
size, position, rotation, background and noise, natural captions, and:

- ``classification`` -- labelled test images;
- ``train`` -- labelled images for frozen-feature downstream classifiers;
- ``pool`` -- a captioned retrieval pool; the source / target concepts are
  identified by their class-name keywords in captions;
- ``rerank`` -- fixed short lists (10 pool images, 1 target-class image each)
  for clean queries about the source concept;
- ``selection`` -- fixed groups (10 candidates, 2 targets); the 6-with-1
  variant is ``extras["selection_6x1"]``;
- ``shadow`` -- images for encoder attacks (labels kept, attacks may ignore them);
- ``extras["train_pairs"]`` -- the contrastive training pairs (images + captions).

Every split has its own random stream derived from ``(seed, split)``, so
changing one split's size never changes another split's images, and candidate
lists are fixed from the seed before any model sees them.

Only what is used is drawn: a split's labels, captions and scene attributes
are sampled when the world is made (cheap), its pixels the first time
something reads ``.images`` (an audit never reads the 30,000 training pairs).
Drawn pixels are kept on disk under ``$DIFE_CACHE_DIR/world`` keyed by the
generator version and every option that changes them, so later processes
load them instead of drawing again (``DIFE_WORLD_CACHE=off`` turns that off).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Optional

import attrs
import numpy as np

from . import render

TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "a drawing of a {}",
    "a close-up photo of a {}",
)

DEFAULT_SOURCE = "automobile"
DEFAULT_TARGET = "airplane"


@attrs.frozen
class WorldPreset:
    """Sizes of each population (images are ``image_size`` squared)."""

    name: str
    image_size: int = 32
    n_train_pairs: int = 30000
    n_test: int = 2000
    n_train: int = 2000
    n_pool: int = 2000
    n_shadow: int = 2000
    n_rerank: int = 200  # lists
    rerank_k: int = 10
    rerank_targets: int = 1
    rerank_sources: int = 3
    n_selection: int = 200  # groups
    selection_k: int = 10
    selection_targets: int = 2
    selection_sources: int = 3
    n_selection_6x1: int = 200
    selection_6x1_sources: int = 2
    # nuisance: how hard the shapes are to see (see render.sample_scenes)
    backgrounds: tuple = attrs.field(default=render.BACKGROUNDS, converter=tuple)
    max_rotation: float = 15.0
    max_noise: float = 0.05
    size_range: tuple = attrs.field(default=(0.22, 0.45), converter=tuple)

    def scene_options(self) -> dict:
        return {"backgrounds": self.backgrounds, "max_rotation": self.max_rotation,
                "max_noise": self.max_noise, "size_range": self.size_range}


PRESETS = {
    "default": WorldPreset(name="default"),
    # small, and milder nuisance (plain and gradient backgrounds, larger
    # glyphs) so the test recipe learns it in well under a minute
    "test": WorldPreset(name="test", n_train_pairs=8000, n_test=300, n_train=300, n_pool=300, n_shadow=200,
                        n_rerank=30, n_selection=30, n_selection_6x1=30, backgrounds=("plain", "gradient"),
                        max_rotation=10.0, max_noise=0.03, size_range=(0.3, 0.45)),
}

# Stable ids of the random streams (never renumber: images would change).
_SPLITS = {"train_pairs": 1, "test": 2, "train": 3, "pool": 4, "shadow": 5, "queries": 6,
           "rerank": 7, "selection": 8, "selection_6x1": 9}


def get_preset(preset) -> WorldPreset:
    from dife_core.errors import NotFoundError, available

    if isinstance(preset, WorldPreset):
        return preset
    if preset not in PRESETS:
        raise NotFoundError(f"unknown shapes world preset {preset!r}; {available(PRESETS)}.")
    return PRESETS[preset]


def preset_id(preset: WorldPreset) -> str:
    """The preset's name if it is a shipped one unchanged, else a content hash."""
    if PRESETS.get(preset.name) == preset:
        return preset.name
    blob = json.dumps(attrs.asdict(preset), sort_keys=True).encode()
    return f"{preset.name}-{hashlib.sha256(blob).hexdigest()[:8]}"


def _rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLITS[split], render.GENERATOR_VERSION]))


def _balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    labels = np.arange(n) % n_classes
    return labels[rng.permutation(n)].astype(np.int64)


@functools.lru_cache(maxsize=32)
def scenes(n: int, seed: int, split: str, image_size: int = 32, scene_options: tuple = ()):
    """The sampled scenes of a split, its labels and captions: no pixels drawn."""
    rng = _rng(seed, split)
    labels = _balanced_labels(rng, n, len(render.CLASSNAMES))
    sc = render.sample_scenes(rng, labels, image_size, **dict(scene_options))
    return sc, labels, tuple(render.captions(sc, image_size))


def split_key(n: int, seed: int, split: str, image_size: int = 32, scene_options: tuple = ()) -> str:
    """Content key of a split's pixels: generator version and every option that changes them."""
    blob = json.dumps([render.GENERATOR_VERSION, int(n), int(seed), split, int(image_size),
                       [[k, list(v) if isinstance(v, tuple) else v] for k, v in scene_options]],
                      sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _cache_dir() -> Optional[Path]:
    if (os.environ.get("DIFE_WORLD_CACHE") or "").lower() in ("0", "off", "false", "no"):
        return None
    return Path(os.environ.get("DIFE_CACHE_DIR") or Path.home() / ".cache" / "dife") / "world"


def _read_cached(path: Path, shape: tuple):
    """Pixels from the disk cache if the file is whole (shape, dtype and SHA-256 check out)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            u8 = f.get_tensor("pixels")
    except Exception:  # absent, truncated or foreign: draw again
        return None
    if u8.dtype != np.uint8 or tuple(u8.shape) != shape or meta.get("sha256") != hashlib.sha256(u8.data).hexdigest():
        return None
    return u8


def _write_cached(path: Path, u8: np.ndarray) -> None:
    """Write atomically (unique temp file + os.replace): concurrent audits never see half a file."""
    from safetensors.numpy import save

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        data = save({"pixels": u8}, metadata={"sha256": hashlib.sha256(u8.data).hexdigest()})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache only costs drawing again next time
        pass


@functools.lru_cache(maxsize=16)
def pixels(n: int, seed: int, split: str, image_size: int = 32, scene_options: tuple = ()) -> np.ndarray:
    """A split's ``uint8 [N,3,H,W]`` pixels: from the disk cache, else drawn
    (and cached). Shared in-process: never write into the returned array."""
    folder = _cache_dir()
    path = folder / f"{split}-{split_key(n, seed, split, image_size, scene_options)}.safetensors" if folder else None
    if path is not None:
        got = _read_cached(path, (n, 3, image_size, image_size))
        if got is not None:
            got.flags.writeable = False
            return got
    sc = scenes(n, seed, split, image_size, scene_options)[0]
    u8 = np.ascontiguousarray(render.render(sc, image_size))
    if path is not None:
        _write_cached(path, u8)
    u8.flags.writeable = False
    return u8


def generate(n: int, seed: int, split: str, image_size: int = 32, scene_options: tuple = ()):
    """``n`` class-balanced images (uint8 ``[N,3,H,W]``), their labels and captions
    (pixels drawn now; :func:`make_world` draws them only when read)."""
    _, labels, caps = scenes(n, seed, split, image_size, scene_options)
    return pixels(n, seed, split, image_size, scene_options), labels, caps


def _clear_caches() -> None:
    """Forget in-process scenes and pixels (the disk cache stays; DIFE_WORLD_CACHE=off skips it)."""
    scenes.cache_clear()
    pixels.cache_clear()


generate.cache_clear = _clear_caches  # callers written for the old lru-cached generate()


def split_source(n: int, seed: int, split: str, image_size: int = 32, scene_options: tuple = ()):
    """An eager image source that draws the split on first use (see the module docstring)."""
    from dife_core.populations import RenderedSource

    return RenderedSource(n, functools.partial(_writable_pixels, n, seed, split, image_size, scene_options),
                          key="shapes:" + split_key(n, seed, split, image_size, scene_options),
                          item_shape=(3, image_size, image_size))


def _writable_pixels(*args):
    # torch.from_numpy wants a writable array; the copy is what an in-memory world held anyway
    return np.array(pixels(*args))


def source_queries(n: int, seed: int, source: str, image_size: int = 32, scene_options: tuple = ()) -> list:
    """Clean text queries about the source concept: captions of unseen source scenes."""
    rng = _rng(seed, "queries")
    labels = np.full(n, render.CLASSNAMES.index(source), dtype=np.int64)
    scenes = render.sample_scenes(rng, labels, image_size, **dict(scene_options))
    return render.captions(scenes, image_size)


def _to_tensor(u8):
    import torch

    return torch.from_numpy(u8).float().div_(255.0)


class Deferred:
    """A value of :class:`LazyExtras` computed on first access."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class LazyExtras(dict):
    """``World.extras`` whose expensive values are made on first access; every
    way of reading a value (``[k]``, ``get``, ``items``, ``values``, ``dict(...)``,
    iteration) sees the made value."""

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if isinstance(value, Deferred):
            value = value.fn()
            dict.__setitem__(self, key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __iter__(self):  # not dict's own iterator: dict(x) / update(x) then read values through __getitem__
        return iter(list(dict.keys(self)))

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]

    def copy(self):
        return dict(self.items())

    def pop(self, key, *default):
        if key in self:
            value = self[key]
            dict.pop(self, key)
            return value
        return dict.pop(self, key, *default)


def make_world(preset="default", seed: int = 0, *, source: str = DEFAULT_SOURCE,
               target: str = DEFAULT_TARGET):
    """Build the shapes world (deterministic from ``preset`` and ``seed``)."""
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.errors import InvalidInputError
    from dife_core.populations import CaptionedPool, LabelledImages, World

    p = get_preset(preset)
    classes = render.CLASSNAMES
    for role, c in (("source", source), ("target", target)):
        if c not in classes:
            raise InvalidInputError(f"shapes world: {role} {c!r} is not a class; classes: {', '.join(classes)}.")
    if source == target:
        raise InvalidInputError(f"shapes world: source and target must differ (both {source!r}).")
    name = f"shapes-{preset_id(p)}-s{int(seed)}"
    size = p.image_size
    opts = tuple(p.scene_options().items())  # hashable, for the generation cache

    def labelled(split: str, n: int, pop_name: Optional[str] = None):
        _, y, caps = scenes(n, seed, split, size, opts)
        return LabelledImages(name=f"{name}/{pop_name or split}", images=split_source(n, seed, split, size, opts),
                              labels=y.copy(), classnames=classes, captions=tuple(caps))

    _, pool_y, pool_caps = scenes(p.n_pool, seed, "pool", size, opts)
    pool = CaptionedPool(name=f"{name}/pool", images=split_source(p.n_pool, seed, "pool", size, opts),
                         captions=pool_caps, labels=pool_y.copy(), classnames=classes)
    s, t = classes.index(source), classes.index(target)
    pair = f"{source}-{target}"
    n_queries = max(p.n_rerank, p.n_selection, p.n_selection_6x1)
    queries = source_queries(n_queries, seed, source, size, opts)

    def lists(split, n, k, n_targets, n_sources):
        return make_candidate_lists(
            f"{name}/{split.replace('_', '-')}-{pair}", pool_y, queries=queries[:n], source=s, target=t,
            k=k, n_targets=n_targets, n_sources=n_sources, rng=_rng(seed, split))

    return World(
        name=name,
        classnames=classes,
        templates=TEMPLATES,
        source=source,
        target=target,
        classification=labelled("test", p.n_test),
        train=labelled("train", p.n_train),
        pool=pool,
        rerank=lists("rerank", p.n_rerank, p.rerank_k, p.rerank_targets, p.rerank_sources),
        selection=lists("selection", p.n_selection, p.selection_k, p.selection_targets, p.selection_sources),
        shadow=labelled("shadow", p.n_shadow),
        extras=LazyExtras({
            # 30,000 scenes and captions: sampled only when an attack or the recipe asks for them
            "train_pairs": Deferred(functools.partial(labelled, "train_pairs", p.n_train_pairs, "train-pairs")),
            "selection_6x1": lists("selection_6x1", p.n_selection_6x1, 6, 1, p.selection_6x1_sources),
            "preset": attrs.asdict(p),
            "seed": int(seed),
            "generator_version": render.GENERATOR_VERSION,
        }),
    )


def manifests(world) -> dict:
    """The fixed candidate lists / groups of a world as JSON-ready manifests."""
    out = {"rerank": world.rerank.to_manifest(), "selection": world.selection.to_manifest()}
    if "selection_6x1" in world.extras:
        out["selection_6x1"] = world.extras["selection_6x1"].to_manifest()
    return out
