"""Audit populations: the data every interface averages over.

A dataset plugin returns a :class:`World`: labelled images, a captioned
retrieval pool, fixed candidate lists and groups, a shadow set and train data
for frozen-feature classifiers. Candidate lists and groups are fixed before
any scoring (indices into the pool), so every checkpoint sees the same ones.

Images are float32 tensors ``[N, 3, H, W]`` in [0, 1] (before normalisation).
Each population has a ``name`` that is stable for the same content; the
embedding cache keys on it.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

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
    images: Any  # torch.Tensor [N,3,H,W] float in [0,1]
    labels: Any  # numpy int64 [N] (or None for unlabelled)
    classnames: tuple = attrs.field(converter=tuple)
    captions: Optional[tuple] = None  # optional natural captions, one per image

    def __len__(self) -> int:
        return int(self.images.shape[0])


@attrs.frozen(eq=False)
class CaptionedPool:
    """Retrieval pool: ``images[i]`` is described by ``captions[i]``.

    ``labels[i]`` is the class of item i; a caption mentions its class name,
    so *source* / *target* concepts are identified by keywords in captions.
    """

    name: str
    images: Any
    captions: tuple = attrs.field(converter=tuple)
    labels: Any  # numpy int64 [N]
    classnames: tuple = attrs.field(converter=tuple)

    def __len__(self) -> int:
        return len(self.captions)


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
