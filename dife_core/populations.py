"""Audit populations: the data every interface averages over.

A dataset plugin returns a :class:`World`: labelled images, a captioned
retrieval pool, fixed candidate lists and groups, a shadow set and train data
for frozen-feature classifiers. Candidate lists and groups are fixed before
any scoring (indices into the pool), so every checkpoint sees the same ones.

Images are float32 tensors ``[N, 3, H, W]`` in [0, 1] (before normalisation)
or an :class:`ImageSource`: image *files*, WebDataset shards, a ``uint8``
array or a renderer, decoded a shard at a time. A population built from a
source keeps it in ``.source``; ``.images`` is then

- for an *eager* source (a renderer such as the shapes world, small by
  construction): the float tensor, rendered on first use and kept;
- for a *streaming* source (files, shards): :class:`LazyImages`, a view that
  the embedding service reads shard by shard (peak memory: one shard, not the
  population) and that materialises the whole float tensor only when other
  code uses it as a tensor (``.shape`` and contiguous slices never do).

Each population has a ``name`` that is stable for the same content; the
embedding cache keys on it (and the persistent embedding store on the
source's ``content_key``).
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

# -- image sources -----------------------------------------------------------------

class ImageSource:
    """Images read ``[lo, hi)`` at a time (subclasses: files, WebDataset shards,
    arrays, renderers). ``read`` returns uint8 (or float in [0, 1]) ``[n,3,H,W]``;
    ``content_key`` is a stable hash of what the images are (the persistent
    embedding store keys on it); ``item_shape`` is ``(3, H, W)`` when known
    without decoding. ``eager`` sources materialise on ``.images``."""

    eager = False
    item_shape: Optional[tuple] = None

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, lo: int, hi: int):
        raise NotImplementedError

    def content_key(self) -> str:
        raise NotImplementedError

    def materialise(self):
        """The whole population as one float tensor in [0, 1] (kept: later calls are free)."""
        with _lock_of(self):
            got = getattr(self, "_materialised", None)
            if got is None:
                import torch

                n = len(self)
                parts = [_as_float(self.read(lo, min(n, lo + 1024))) for lo in range(0, n, 1024)]
                got = torch.cat(parts) if parts else torch.zeros((0, 3) + tuple(self.item_shape or (1, 1))[1:])
                self._materialised = got
            return got

    #: per-process state a copy (pickle: another process, a Ray worker) starts without
    _TRANSIENT = ("_dife_lock", "_materialised", "_u8", "_cursor")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def shards(self, size: int, *, prefetch: int = 1):
        """``(lo, rows)`` for consecutive shards of ``size`` rows; the next
        ``prefetch`` shards are decoded in a background thread while the
        caller works on the current one."""
        n = len(self)
        starts = list(range(0, n, size))
        if prefetch <= 0 or len(starts) < 2:
            for lo in starts:
                yield lo, self.read(lo, min(n, lo + size))
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dife-decode") as pool:
            pending = [pool.submit(self.read, lo, min(n, lo + size)) for lo in starts[:prefetch + 1]]
            for i, lo in enumerate(starts):
                rows = pending.pop(0).result()
                nxt = i + prefetch + 1
                if nxt < len(starts):
                    pending.append(pool.submit(self.read, starts[nxt], min(n, starts[nxt] + size)))
                yield lo, rows


def _lock_of(obj):
    # one re-entrant lock per source object, made on first use (sources are few and long-lived)
    lock = obj.__dict__.get("_dife_lock")
    if lock is None:
        import threading

        lock = obj.__dict__.setdefault("_dife_lock", threading.RLock())
    return lock


def _as_float(rows):
    return rows if rows.dtype.is_floating_point else rows.float().div_(255.0)


def tensor_key(x) -> str:
    """Content hash of an in-memory pixel tensor / array (dtype, shape and bytes)."""
    import hashlib

    import numpy as np
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().reshape(-1).data if t.numel() else b"")
    return h.hexdigest()[:24]


class ArraySource(ImageSource):
    """An in-memory uint8 / float pixel array ``[N,3,H,W]`` (uint8 keeps a
    224-pixel population at a quarter of float32's memory)."""

    def __init__(self, array):
        import numpy as np
        import torch

        self.array = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
        self.item_shape = tuple(self.array.shape[1:])
        self._key = None

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, lo: int, hi: int):
        return self.array[lo:hi]

    def content_key(self) -> str:
        if self._key is None:
            self._key = "array:" + tensor_key(self.array)
        return self._key


class RenderedSource(ImageSource):
    """Images a function draws whole (``render() -> uint8 [N,3,H,W]`` numpy),
    on first use only: a split nobody reads is never drawn. Eager: ``.images``
    is the float tensor, as for an in-memory population."""

    eager = True

    def __init__(self, n: int, render, key: str, item_shape: Optional[tuple] = None):
        self.n, self._render, self.key, self.item_shape = int(n), render, key, item_shape

    def __len__(self) -> int:
        return self.n

    def _pixels(self):
        with _lock_of(self):
            if getattr(self, "_u8", None) is None:
                import torch

                self._u8 = torch.from_numpy(self._render())
            return self._u8

    def read(self, lo: int, hi: int):
        return self._pixels()[lo:hi]

    def materialise(self):
        with _lock_of(self):
            got = getattr(self, "_materialised", None)
            if got is None:
                got = self._pixels().float().div_(255.0)
                self._materialised = got
            return got

    def content_key(self) -> str:
        return self.key


class LazyImages:
    """``population.images`` of a streaming source: reads what is asked for.

    ``len``, ``.shape`` (when the source knows its image size) and contiguous
    slices ``[lo:hi]`` decode only what they return; anything else (a torch
    function, a tensor method, fancy indexing) materialises the float tensor
    once and works on it, so code written for in-memory populations keeps
    working."""

    __slots__ = ("source",)

    def __init__(self, source: ImageSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self):
        import torch

        if self.source.item_shape is not None:
            return torch.Size((len(self.source),) + tuple(self.source.item_shape))
        return self.source.materialise().shape

    @property
    def dtype(self):
        import torch

        return torch.float32

    def __getitem__(self, key):
        n = len(self.source)
        if isinstance(key, slice) and key.step in (None, 1):
            lo, hi, _ = key.indices(n)
            return _as_float(self.source.read(lo, max(lo, hi)))
        if isinstance(key, int) and -n <= key < n:
            key %= n
            return _as_float(self.source.read(key, key + 1))[0]
        return self.source.materialise()[key]

    def __getattr__(self, name):
        return getattr(self.source.materialise(), name)

    def __iter__(self):
        return iter(self.source.materialise())

    def __array__(self, dtype=None, copy=None):
        a = self.source.materialise().numpy()
        return a if dtype is None else a.astype(dtype)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_unwrap(args), **_unwrap(kwargs or {}))

    def __repr__(self) -> str:
        return f"LazyImages({type(self.source).__name__}, n={len(self.source)})"


def _delegate(op: str):
    def method(self, *args):
        return getattr(self.source.materialise(), op)(*_unwrap(args))

    method.__name__ = op
    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "radd", "rsub", "rmul", "rtruediv",
            "rmatmul", "neg", "abs", "lt", "le", "gt", "ge", "eq", "ne"):
    setattr(LazyImages, f"__{_op}__", _delegate(f"__{_op}__"))


def _unwrap(x):
    if isinstance(x, LazyImages):
        return x.source.materialise()
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def as_source(pixels) -> ImageSource:
    """An ImageSource for anything a population's ``images`` may be."""
    if isinstance(pixels, ImageSource):
        return pixels
    if isinstance(pixels, LazyImages):
        return pixels.source
    return ArraySource(pixels)


#: Population kinds an interface card can name in ``population``.
POPULATION_KINDS = (
    "classification",  # LabelledImages: test images with labels
    "train",  # LabelledImages: train data for frozen-feature classifiers
    "pool",  # CaptionedPool: retrieval pool (images + captions + concepts)
    "rerank",  # CandidateLists: fixed short lists, ~1 target each
    "selection",  # CandidateLists: fixed groups, >=1 target each
    "shadow",  # LabelledImages (labels optional): shadow data for encoder attacks
)


@attrs.frozen(eq=False)
class LabelledImages:
    name: str
    #: given as ``images=``: a tensor [N,3,H,W] float in [0,1] (or uint8), or an ImageSource
    source: Any = attrs.field(alias="images")
    labels: Any  # numpy int64 [N] (or None for unlabelled)
    classnames: tuple = attrs.field(converter=tuple)
    captions: Optional[tuple] = None  # optional natural captions, one per image

    @property
    def images(self):
        return _images_of(self.source)

    def __len__(self) -> int:
        return _len_of(self.source)


@attrs.frozen(eq=False)
class CaptionedPool:
    """Retrieval pool: ``images[i]`` is described by ``captions[i]``.

    ``labels[i]`` is the class of item i; a caption mentions its class name,
    so *source* / *target* concepts are identified by keywords in captions.
    """

    name: str
    source: Any = attrs.field(alias="images")  # like LabelledImages
    captions: tuple = attrs.field(converter=tuple)
    labels: Any  # numpy int64 [N]
    classnames: tuple = attrs.field(converter=tuple)

    @property
    def images(self):
        return _images_of(self.source)

    def __len__(self) -> int:
        return len(self.captions)


def _images_of(source):
    if isinstance(source, ImageSource):
        return source.materialise() if source.eager else LazyImages(source)
    return source


def _len_of(source) -> int:
    return len(source) if isinstance(source, ImageSource) else int(source.shape[0])


@attrs.frozen(eq=False)
class CandidateLists:
    """Fixed ranking problems over the pool's images.

    ``queries[q]`` is a clean text query; ``candidates[q]`` are pool indices
    (numpy int64 ``[Q, K]``), ``targets[q]`` marks target candidates (bool
    ``[Q, K]``).
    """

    name: str
    queries: tuple = attrs.field(converter=tuple)
    candidates: Any
    targets: Any

    def to_manifest(self) -> dict:
        return {
            "name": self.name,
            "queries": list(self.queries),
            "candidates": [list(map(int, r)) for r in self.candidates],
            "targets": [list(map(bool, r)) for r in self.targets],
        }


@attrs.frozen(eq=False)
class World:
    """Everything an audit needs besides the checkpoints.

    ``source`` / ``target`` are class names (the paper's automobile / airplane);
    ``templates`` are the classification prompt templates (``"a photo of a {}"``).
    Any population may be ``None`` when a dataset does not provide it; the
    engine then marks interfaces that need it as N.E.
    """

    name: str
    classnames: tuple = attrs.field(converter=tuple)
    templates: tuple = attrs.field(converter=tuple)
    source: str
    target: str
    classification: Optional[LabelledImages] = None
    train: Optional[LabelledImages] = None
    pool: Optional[CaptionedPool] = None
    rerank: Optional[CandidateLists] = None
    selection: Optional[CandidateLists] = None
    shadow: Optional[LabelledImages] = None
    #: free-form extras (e.g. contrastive training pairs for attack recipes)
    extras: dict = attrs.field(factory=dict)

    def population(self, kind: str):
        if kind not in POPULATION_KINDS:
            raise KeyError(kind)
        return getattr(self, kind)

    def prompts(self, template: Optional[str] = None) -> list:
        t = template or self.templates[0]
        return [t.format(c) for c in self.classnames]


def load_world(dataset: str, options=None, *, where: str = "populations") -> "World":
    """The one way to a World: the registered dataset ``dataset`` loaded with
    ``options``; a wrong option or return type is an input error naming ``where``."""
    from .errors import InvalidInputError
    from .plugins import get_registry

    ds = get_registry().get("datasets", dataset)
    options = dict(options or {})
    if ds.options:
        unknown = sorted(set(options) - set(ds.options))
        if unknown:
            raise InvalidInputError(f"{where}: dataset {ds.name!r} has no option(s) {', '.join(unknown)}; "
                                    f"options: {', '.join(sorted(ds.options))}.")
    try:
        world = ds.load(**options)
    except TypeError as e:
        raise InvalidInputError(f"{where}: options for dataset {ds.name!r}: {e}; "
                                f"options: {', '.join(sorted(ds.options)) or '(none)'}.") from e
    if not isinstance(world, World):
        raise InvalidInputError(f"{where}: dataset {ds.name!r} returned {type(world).__name__}, not a "
                                f"dife_core.populations.World")
    return world
