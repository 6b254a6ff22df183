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
Passes run under ``torch.inference_mode``; on CUDA with bf16 autocast.
Features come back L2-normalised, float32, on the CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Callable, Optional

import attrs

SHARD = 1024


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
    if branch == "visual":
        if rows.dtype == torch.uint8:
            rows = rows.float().div_(255.0)
        if trigger.fn is not None and trigger.channel == "image":
            rows = trigger.fn(rows, seed=seed)
        n = int(rows.shape[0])
    else:
        rows = list(rows)
        if trigger.fn is not None and trigger.channel == "text":
            rows = list(trigger.fn(rows))
        n = len(rows)
    out = []
    with torch.inference_mode(), autocast_context(src.device):
        for lo in range(0, n, batch_size):
            batch = rows[lo:lo + batch_size]
            feats = src.encode_image(batch) if branch == "visual" else src.encode_text(batch)
            out.append(F.normalize(feats.float(), dim=-1).cpu())
    if not out:
        return torch.zeros((0, 0))
    feats = torch.cat(out)
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

    def __init__(self, *, batch_size: int = 256, seed: int = 0, progress=None, shard: int = SHARD):
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shard = int(shard)
        self.progress = progress
        self._cache: dict = {}
        self._rows: dict = {}  # text tower key -> {string: feature row}
        self._memo: dict = {}
        self.log: list = []

    # -- public --------------------------------------------------------------------
    def images(self, encoder, name: str, pixels, trigger: AppliedTrigger = CLEAN):
        """Features of image set ``name`` (pixels ``[N,3,H,W]`` in [0, 1])
        through ``encoder``'s visual tower, with ``trigger`` applied."""
        if trigger.fn is None or trigger.channel != "image":
            trigger = CLEAN  # identity / a text trigger leaves images as they are
        key = (tower_key(encoder, "visual"), "visual", name, trigger.key)
        if key not in self._cache:
            self._cache[key] = self._encode(encoder, "visual", name, pixels, trigger, key)
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
            if missing:
                feats = self._encode(encoder, "text", name, missing, CLEAN, key)
                for s, row in zip(missing, feats):
                    table[s] = row
            self._cache[key] = torch.stack([table[s] for s in applied]) if applied else torch.zeros((0, 0))
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
    def _encode(self, encoder, branch: str, name: str, rows, trigger: AppliedTrigger, key):
        import torch

        n = int(rows.shape[0]) if branch == "visual" else len(rows)
        parts = []
        label = f"encode {name} ({branch}{'' if key[3] == 'clean' else ', triggered'})"
        with self._task(label, n) as task:
            for lo in range(0, n, self.shard):
                parts.append(encode_shard(encoder, branch, rows[lo:lo + self.shard], trigger,
                                          seed=self.seed + lo, batch_size=self.batch_size))
                self.log.append((key[0], branch, name, key[3], min(self.shard, n - lo)))
                task.advance(min(self.shard, n - lo))
        if not parts:
            return torch.zeros((0, 0))
        return torch.cat(parts)

    def _task(self, label: str, total: int):
        if self.progress is None or total < 4 * self.batch_size:
            return _NullTask()
        return self.progress.task(label, total)


class _NullTask:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: int = 1) -> None:
        pass
