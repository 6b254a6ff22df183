"""The embedding service: every encoder pass of an audit goes through here.

One cache, keyed by *(tower key, branch, input-set name, trigger key)*
(text is also cached per string, so a string shared by two sets is encoded
once). The
tower key is the branch's content fingerprint (plus, for the visual tower,
its preprocessing), so a branch-swap hybrid that borrows the poisoned visual
tower finds the poisoned checkpoint's image embeddings already there: each
unique tower x input set x trigger is encoded exactly once per audit, however
many interfaces and hybrids use it.

Work is split into *encode jobs* -- (tower, input set, trigger, shard of
``SHARD`` rows) -- each a pure function of its inputs (:func:`encode_shard`),
so a later version can run them elsewhere (a Ray cluster) without changing
the cache. Image triggers are applied per shard with seed ``audit seed +
first row index``, so a triggered set does not depend on the batch size.
Passes run under ``torch.inference_mode``; on CUDA with bf16 autocast,
pinned host memory and non-blocking copies. Features come back
L2-normalised, float32, on the CPU.

**Streaming.** An image set may be a tensor or an image *source*
(:class:`dife_core.populations.ImageSource`: files, WebDataset shards, a
renderer; ``population.images`` of a streaming source is a
:class:`~dife_core.populations.LazyImages` that carries it). A source is
read one shard at a time, the next shard decoded in a background thread
while the current one is encoded, so peak memory is one or two shards plus
the features, whatever the population's size. Shards, seeds and batches are
the same as for the in-memory tensor, so the features are identical.

**Persistent store.** With a :class:`dife_core.embedstore.EmbeddingStore`
(``store=``; by default the one ``$DIFE_EMBED_STORE`` names, see
:func:`dife_core.embedstore.from_env`) every set is looked up on disk before it
is encoded and written there after; ``log`` still lists only the encode jobs
actually run, ``store_hits`` the sets read from disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Callable, Optional

import attrs

SHARD = 1024
_FROM_ENV = object()


@attrs.frozen
class AppliedTrigger:
    """A trigger ready to apply: ``key`` names it in cache keys. Calling it
    applies it (``trigger(pixels, seed=0)`` or ``trigger(strings)``)."""

    key: str
    channel: str  # "image", "text" or "none" (identity)
    fn: Optional[Callable] = attrs.field(default=None, eq=False)

    def __call__(self, x, **kwargs):
        return x if self.fn is None else self.fn(x, **kwargs)


CLEAN = AppliedTrigger("clean", "none", None)


def trigger_key(spec: Optional[dict]) -> str:
    """The one content key of a trigger spec ``{"name", "params"}`` (``"none"`` for no trigger)."""
    if spec is None:
        return "none"
    return spec["name"] + ":" + json.dumps(dict(spec.get("params") or {}), sort_keys=True, separators=(",", ":"))


def resolve_trigger(spec, *, where: str = "trigger") -> AppliedTrigger:
    """The one way from a trigger spec to its applying function.

    ``spec`` is ``{"name", "params"}`` (or anything with ``to_dict()``), or
    None for no trigger. The registered family's defaults fill missing
    parameters; unknown parameters and values the family rejects raise
    :class:`~dife_core.errors.InvalidInputError` naming ``where``. The key is
    computed from the full parameter set, so a card that spells out a default
    and one that omits it share cached features.
    """
    from ..errors import InvalidInputError
    from ..plugins import get_registry

    if spec is not None and hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    if spec is None:
        return AppliedTrigger(key="none", channel="none", fn=None)
    name = spec["name"]
    fam = get_registry().get("triggers", name)
    params = dict(spec.get("params") or {})
    unknown = sorted(set(params) - set(fam.defaults)) if fam.defaults else []
    if unknown:
        raise InvalidInputError(f"{where}: unknown parameter(s) {', '.join(unknown)} for trigger {name!r}; "
                                f"valid: {', '.join(sorted(fam.defaults))}.")
    full = {**fam.defaults, **params}
    try:
        fn = fam.make(**full)
    except Exception as e:  # the family rejects its parameters
        raise InvalidInputError(f"{where}: trigger {name!r}: parameters {params} rejected: {e}") from e
    full = json.loads(json.dumps(full, default=list))
    return AppliedTrigger(key=trigger_key({"name": name, "params": full}), channel=fam.channel, fn=fn)


class NonFiniteFeatures(Exception):
    """A tower produced NaN or Inf features: the weights (or preprocessing) are
    broken, and any figure computed from them would lie. Cells become errors."""


def _source(encoder, branch: str):
    """The encoder that really owns ``branch`` (hybrids delegate)."""
    attr = "visual_encoder" if branch == "visual" else "text_encoder"
    while hasattr(encoder, attr):
        encoder = getattr(encoder, attr)
    return encoder


def tower_key(encoder, branch: str) -> str:
    """Content key of one tower: branch fingerprint (+ preprocessing for images)."""
    src = _source(encoder, branch)
    fp = src.fingerprint()[branch]
    extra = ""
    if branch == "visual":
        extra = hashlib.sha1(json.dumps(src.preprocess.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{type(src).__name__}:{fp}:{extra}" if extra else f"{type(src).__name__}:{fp}"


def text_set_name(strings) -> str:
    h = hashlib.sha1("\x1f".join(strings).encode("utf-8")).hexdigest()[:16]
    return f"text:{len(strings)}:{h}"


def autocast_context(device):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_shard(encoder, branch: str, rows, trigger: AppliedTrigger, *, seed: int, batch_size: int):
    """One encode job: apply the trigger to a shard of inputs, encode it in
    batches, return L2-normalised float32 CPU features."""
    import torch
    import torch.nn.functional as F

    src = _source(encoder, branch)
    visual = branch == "visual"
    if visual:
        if trigger.fn is not None and trigger.channel == "image":
            rows = trigger.fn(rows.float().div_(255.0) if rows.dtype == torch.uint8 else rows, seed=seed)
        n = int(rows.shape[0])
    else:
        rows = list(rows)
        if trigger.fn is not None and trigger.channel == "text":
            rows = list(trigger.fn(rows))
        n = len(rows)
    out = []
    dev = torch.device(getattr(src, "device", "cpu"))
    with torch.inference_mode(), autocast_context(dev):
        for lo in range(0, n, batch_size):
            batch = rows[lo:lo + batch_size]
            if visual:
                if dev.type == "cuda":
                    # page-locked host memory lets the copy overlap the previous batch's kernels
                    batch = batch.pin_memory().to(dev, non_blocking=True)
                if batch.dtype == torch.uint8:  # one batch at a time (on the device there): uint8 travels
                    batch = batch.float().div_(255.0)
            feats = src.encode_image(batch) if visual else src.encode_text(batch)
            out.append(F.normalize(feats.float(), dim=-1))
    if not out:
        return torch.zeros((0, 0))
    feats = torch.cat(out).cpu()  # one device-to-host copy per shard: no sync per batch
    if not bool(torch.isfinite(feats).all()):
        bad = int((~torch.isfinite(feats)).any(dim=1).sum())
        raise NonFiniteFeatures(
            f"the {branch} tower of {getattr(src, 'name', 'the model')!r} gives non-finite (NaN/Inf) features for "
            f"{bad} of {feats.shape[0]} inputs; its weights or preprocessing are broken, so no figure is reported")
    return feats


class EmbeddingService:
    """The audit's embedding cache (see the module docstring).

    ``log`` records one entry per encode job actually run:
    ``(tower key, branch, input-set name, trigger key, rows)``; tests use it
    to show nothing is encoded twice.
    """

    def __init__(self, *, batch_size: int = 256, seed: int = 0, progress=None, shard: int = SHARD,
                 store=_FROM_ENV, prefetch: int = 1):
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shard = int(shard)
        self.progress = progress
        self.prefetch = int(prefetch)
        if store is _FROM_ENV:
            from ..embedstore import from_env

            store = from_env()
        self.store = store
        self._cache: dict = {}
        self._rows: dict = {}  # text tower key -> {string: feature row}
        self._memo: dict = {}
        self._content: dict = {}  # id(tensor) -> (tensor, version, content key)
        self.log: list = []
        self.store_hits: list = []

    # -- public --------------------------------------------------------------------
    def images(self, encoder, name: str, pixels, trigger: AppliedTrigger = CLEAN):
        """Features of image set ``name`` (pixels ``[N,3,H,W]`` in [0, 1] or
        uint8, a :class:`~dife_core.populations.LazyImages` or an image source)
        through ``encoder``'s visual tower, with ``trigger`` applied."""
        if trigger.fn is None or trigger.channel != "image":
            trigger = CLEAN  # identity / a text trigger leaves images as they are
        key = (tower_key(encoder, "visual"), "visual", name, trigger.key)
        if key not in self._cache:
            skey = self._store_key(encoder, "visual", pixels, trigger, key) if self.store is not None else None
            feats = self._load(skey, key)
            if feats is None:
                feats = self._encode(encoder, "visual", name, pixels, trigger, key)
                self._save(skey, feats, name)
            self._cache[key] = feats
        return self._cache[key]

    def texts(self, encoder, strings, trigger: AppliedTrigger = CLEAN, name: Optional[str] = None):
        """Features of ``strings`` through ``encoder``'s text tower, with
        ``trigger`` applied to the raw strings.

        Text is cached per string as well as per set: a string that two
        input sets share (a class prompt that is also a query) is encoded
        once per tower.
        """
        import torch

        strings = list(strings)
        if trigger.fn is None or trigger.channel != "text":
            trigger = CLEAN
        name = name or text_set_name(strings)
        tk = tower_key(encoder, "text")
        key = (tk, "text", name, trigger.key)
        if key not in self._cache:
            applied = self.triggered_strings(strings, trigger)
            table = self._rows.setdefault(tk, {})
            missing = list(dict.fromkeys(s for s in applied if s not in table))
            skey, hit = None, False
            if missing and self.store is not None:
                skey = {"tower": tk, "branch": "text", "population": _strings_key(applied),
                        "trigger": "clean", "precision": _precision(encoder, "text")}
                stored = self._load(skey, key)
                if stored is not None and stored.shape[0] == len(applied):
                    for s, row in zip(applied, stored):
                        table.setdefault(s, row)
                    missing, hit = [], True
            if missing:
                feats = self._encode(encoder, "text", name, missing, CLEAN, key)
                for s, row in zip(missing, feats):
                    table[s] = row
            self._cache[key] = torch.stack([table[s] for s in applied]) if applied else torch.zeros((0, 0))
            if skey is not None and applied and not hit:
                self._save(skey, self._cache[key], name)
        return self._cache[key]

    def memo(self, key, fn: Callable):
        """Cache a derived result (e.g. a probe fitted on one tower's features)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def triggered_strings(self, strings, trigger: AppliedTrigger) -> list:
        strings = list(strings)
        return list(trigger.fn(strings)) if trigger.fn is not None and trigger.channel == "text" else strings

    # -- internals -------------------------------------------------------------------
    def _shards(self, branch: str, rows):
        """``(lo, shard)`` pairs: slices of an in-memory tensor / string list,
        or a source read shard by shard with background decoding."""
        if branch == "visual":
            from ..populations import ArraySource, as_source

            src = as_source(rows)
            if not isinstance(src, ArraySource) and not getattr(src, "eager", False):
                yield from src.shards(self.shard, prefetch=self.prefetch)
                return
            rows = src.array if isinstance(src, ArraySource) else src.materialise()
            n = int(rows.shape[0])
        else:
            n = len(rows)
        for lo in range(0, n, self.shard):
            yield lo, rows[lo:lo + self.shard]

    def _encode(self, encoder, branch: str, name: str, rows, trigger: AppliedTrigger, key):
        import torch

        from ..populations import ImageSource, LazyImages

        lazy = isinstance(rows, (ImageSource, LazyImages))
        n = len(rows) if branch != "visual" or lazy else int(rows.shape[0])
        out = None
        label = f"encode {name} ({branch}{'' if key[3] == 'clean' else ', triggered'})"
        with self._task(label, n) as task:
            for lo, shard in self._shards(branch, rows):
                m = int(shard.shape[0]) if branch == "visual" else len(shard)
                feats = encode_shard(encoder, branch, shard, trigger, seed=self.seed + lo, batch_size=self.batch_size)
                del shard
                if out is None:  # one [N, D] buffer: no list of parts plus a concatenated copy at the end
                    out = torch.empty((n, feats.shape[1]), dtype=feats.dtype)
                out[lo:lo + m] = feats
                self.log.append((key[0], branch, name, key[3], m))
                task.advance(m)
        if out is None:
            return torch.zeros((0, 0))
        return out

    # -- persistent store ----------------------------------------------------------------
    def _content_key(self, pixels) -> str:
        """The population content key: a source's own, or a hash of the pixels
        (memoised per tensor while it is unchanged)."""
        from ..populations import ImageSource, LazyImages, tensor_key

        if isinstance(pixels, LazyImages):
            pixels = pixels.source
        if isinstance(pixels, ImageSource):
            return pixels.content_key()
        got = self._content.get(id(pixels))
        version = getattr(pixels, "_version", None)
        if got is not None and got[0] is pixels and got[1] == version:
            return got[2]
        ck = "array:" + tensor_key(pixels)
        self._content[id(pixels)] = (pixels, version, ck)
        return ck

    def _store_key(self, encoder, branch: str, pixels, trigger: AppliedTrigger, key) -> dict:
        k = {"tower": key[0], "branch": branch, "population": self._content_key(pixels), "trigger": trigger.key,
             "precision": _precision(encoder, branch)}
        if trigger.key != "clean":  # random placement depends on the seed and the shard boundaries
            k.update(seed=self.seed, shard=self.shard)
        return k

    def _load(self, skey, key):
        if skey is None or self.store is None:
            return None
        feats = self.store.get(skey)
        if feats is not None:
            self.store_hits.append((key, skey))
        return feats

    def _save(self, skey, feats, name: str) -> None:
        if skey is None or self.store is None or feats.numel() == 0:
            return
        try:
            self.store.put(skey, feats, info={"name": name})
        except OSError:  # a full or read-only disk costs a re-encode later, never the audit
            pass

    def _task(self, label: str, total: int):
        if self.progress is None or total < 4 * self.batch_size:
            return _NullTask()
        return self.progress.task(label, total)


def _precision(encoder, branch: str) -> str:
    """What the features were computed in: fp32 on the CPU, bf16 autocast on CUDA."""
    import torch

    dev = torch.device(getattr(_source(encoder, branch), "device", "cpu"))
    return "cuda-bf16" if dev.type == "cuda" else f"{dev.type}-fp32"


def _strings_key(strings) -> str:
    return "text:" + hashlib.sha256("\x1f".join(strings).encode("utf-8")).hexdigest()[:32]


class _NullTask:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: int = 1) -> None:
        pass
