"""The small attrs types plugins register.

Each type is data plus callables. Heavy work (torch, model libraries) happens
inside the callables, so building these objects is cheap and import-safe.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import attrs

#: Readouts a deployment interface can consume (docs/design.md).
READOUTS = ("image-features", "text-features", "score")
#: Trigger channels. ``mechanism`` = an attack-specific route (e.g. a learned prompt).
CHANNELS = ("image", "text", "mechanism", "none")
#: how an interface decides its target event (InterfaceCard.decision)
DECISIONS = ("comparison", "cut")
#: Cell statuses (docs/engine.md).
STATUSES = ("exposed", "weak", "negative", "n.e.", "error")
#: Footprints (docs/engine.md).
FOOTPRINTS = ("visual", "textual", "coupled", "weak")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: metric names may carry ``@`` (``h@1``, ``delta_sel@1``)
_METRIC_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]*$")


def _valid_name(instance, attribute, value):
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a lower-case id "
            f"(letters, digits, '.', '_' or '-'), got {value!r}"
        )


def _metric_name(instance, attribute, value):
    if not isinstance(value, str) or not _METRIC_RE.match(value) or len(value) > 64:
        raise ValueError(f"Metric.name must be a lower-case id (letters, digits, '.', '_', '-', '@'), got {value!r}")


def _one_of(choices):
    def check(instance, attribute, value):
        if value not in choices:
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name} must be one of "
                f"{', '.join(choices)}; got {value!r}"
            )

    return check


def _channels(instance, attribute, value):
    for v in value:
        _one_of(CHANNELS)(instance, attribute, v)


def _is_callable(instance, attribute, value):
    if not callable(value):
        raise TypeError(f"{type(instance).__name__}.{attribute.name} must be callable")


def _opt_callable(instance, attribute, value):
    if value is not None:
        _is_callable(instance, attribute, value)


@attrs.frozen
class ModelLoader:
    """Turns a source string into a :class:`dife_core.model.DualEncoder`.

    ``load(source, *, trust=False, device="cpu", **options)`` returns the
    encoder. ``sniff(source) -> bool`` (optional) says whether this loader
    recognises a path or name, so ``loader = "auto"`` can pick one.
    ``from_manifest(manifest, weights_path, *, trust, device)`` (optional)
    rebuilds an encoder from a DIFE checkpoint manifest written by this loader.
    ``describe`` (optional) lets ``dife inspect`` name the format and branches
    without knowing the loader's key names; ``priority`` orders ``auto``.
    """

    name: str = attrs.field(validator=_valid_name)
    description: str
    load: Callable[..., Any] = attrs.field(validator=_is_callable)
    sniff: Optional[Callable[[str], bool]] = attrs.field(default=None, validator=_opt_callable)
    from_manifest: Optional[Callable[..., Any]] = attrs.field(default=None, validator=_opt_callable)
    #: ``describe(source, keys=None) -> dict | None`` (optional): what this loader
    #: knows about ``source`` without building it -- ``{"format": str,
    #: "visual_prefixes": tuple, "text_prefixes": tuple, "exclude_suffixes": tuple}``
    #: (``keys``: tensor names of a bare weight file); None when not its kind
    describe: Optional[Callable[..., Any]] = attrs.field(default=None, validator=_opt_callable)
    #: ``loader = "auto"`` picks the accepting loader with the highest priority;
    #: a tie at the top is an error naming the candidates
    priority: int = 0


@attrs.frozen
class TriggerSpec:
    """A concrete trigger: a registered trigger family plus its parameters.

    Serialisable (``to_dict``/``from_dict``) and hashable; ``key`` is used in
    embedding-cache keys.
    """

    name: str
    params: dict = attrs.field(factory=dict, hash=False)

    @property
    def key(self) -> str:
        import json

        return self.name + ":" + json.dumps(self.params, sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict:
        return {"name": self.name, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict) -> "TriggerSpec":
        return cls(name=d["name"], params=dict(d.get("params") or {}))


@attrs.frozen
class Trigger:
    """A trigger family acting on one input channel.

    ``make(**params)`` returns the applying function: for the ``image``
    channel ``fn(pixels, *, seed=0) -> pixels`` on float tensors ``[N,3,H,W]``
    in [0, 1] (before normalisation); for the ``text`` channel
    ``fn(list[str]) -> list[str]`` on raw strings (before tokenisation).

    ``scan_points``: parameter overrides a scanner tries besides the defaults
    when it looks for this family without knowing its parameters (the
    family's intensity range, e.g. a blend's ``alpha``); each point is
    merged over ``defaults``.
    """

    name: str = attrs.field(validator=_valid_name)
    channel: str = attrs.field(validator=_one_of(("image", "text")))
    description: str
    make: Callable[..., Callable] = attrs.field(validator=_is_callable)
    defaults: dict = attrs.field(factory=dict)
    scan_points: tuple = attrs.field(default=(), converter=tuple)


@attrs.frozen
class AttackCard:
    """What an attack recipe is: route, what it modifies, its trigger channel
and native protocol. (Each checkpoint it builds carries a per-checkpoint
:class:`dife_core.cards.AttackCard`.)"""

    name: str = attrs.field(validator=_valid_name)
    title: str
    route: str  # e.g. "data poisoning", "weight tampering", "text-tower fine-tuning"
    modifies: str  # e.g. "both towers", "visual", "text", "prompt learner"
    trigger_channel: str = attrs.field(validator=_one_of(CHANNELS))
    native_protocol: str  # e.g. "zero-shot TS"
    reference: str = ""  # citation
    #: "branch-swap" or "component-repair" (mechanism attacks)
    probe: str = attrs.field(default="branch-swap", validator=_one_of(("branch-swap", "component-repair")))
    #: the interface id whose cell measures the attack's native protocol (its
    #: builders validate through it, and the footprint is decided on it first)
    native_interface: Optional[str] = None
    #: the metric of that cell the native result reports (default: its primary metric)
    native_metric: Optional[str] = None


@attrs.frozen
class Attack:
    """An attack recipe: its card, its attrs config class and its builder.

    ``build(ctx) -> dife_core.attacks.BuildResult`` where ``ctx`` is a
    :class:`dife_core.attacks.BuildContext`. ``repair_probe`` (optional,
    mechanism attacks) is ``repair_probe(ctx) -> dict[str, float]`` with keys
    ``full``, ``prompt_only``, ``trigger_only``, ``both_clean``. ``scorer``
    (optional, mechanism attacks) is ``scorer(ctx) -> fn(pixels) -> logits
    [N, C]`` over the world's class names: the classifier the attack ships
    (e.g. a prompt-tuned classifier); interfaces whose card accepts the
    ``mechanism`` channel score it (a ``description`` attribute on the
    returned function, if any, names that classifier in the cell's notes). Both receive a
    :class:`dife_core.engine.context.MechanismContext`.
    """

    card: AttackCard
    config: type  # an attrs class; its defaults are the documented defaults
    build: Callable[..., Any] = attrs.field(validator=_is_callable)
    repair_probe: Optional[Callable[..., Any]] = attrs.field(default=None, validator=_opt_callable)
    scorer: Optional[Callable[..., Any]] = attrs.field(default=None, validator=_opt_callable)

    @property
    def name(self) -> str:
        return self.card.name


@attrs.frozen
class InterfaceCard:
    """The five fields of an interface card (docs/design.md) plus metrics."""

    name: str = attrs.field(validator=_valid_name)
    title: str
    readout: str = attrs.field(validator=_one_of(READOUTS))
    trigger_channels: tuple = attrs.field(converter=tuple, validator=_channels)
    target_event: str
    population: str  # population kind consumed, e.g. "classification"
    reference: Optional[str]  # reference condition for relative metrics, or None
    metric: str  # primary metric name
    extra_metrics: tuple = attrs.field(default=(), converter=tuple)
    #: True when the primary metric is a signed delta against ``reference``
    relative: bool = False
    description: str = ""
    #: column title in reports (a few words); defaults to ``title``
    short_title: str = ""
    #: report order: lower first; ties by id
    order: int = 1000
    #: documented options ``{name: default}``; ``[interface_options.<id>]`` of a
    #: spec may set only these
    options: dict = attrs.field(factory=dict)
    #: one-line doc per option ``{name: text}``
    option_docs: dict = attrs.field(factory=dict)
    #: how the target event is decided: ``"comparison"`` -- the target beats
    #: the alternatives for the same input (a class wins, an item ranks in the
    #: top K, a candidate is selected, a head predicts it) -- or ``"cut"`` -- a
    #: score clears a fixed cut set by true pairs (a data filter). A footprint
    #: says which tower moves the target's score, not how far, so it predicts
    #: only comparison events (docs/engine.md, "Prediction").
    decision: str = attrs.field(default="comparison", validator=_one_of(DECISIONS))

    @property
    def column_title(self) -> str:
        return self.short_title or self.title

    def to_dict(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class Interface:
    """A deployment interface: card + ``evaluate(ctx) -> CellResult``."""

    card: InterfaceCard
    evaluate: Callable[..., Any] = attrs.field(validator=_is_callable)

    @property
    def name(self) -> str:
        return self.card.name


@attrs.frozen
class Metric:
    """A named metric with its formula, for docs and reports.

    ``compute(*args, **kwargs) -> float``; ``higher_is_better`` drives the
    sign convention of deltas.
    """

    name: str = attrs.field(validator=_metric_name)
    formula: str
    compute: Callable[..., float] = attrs.field(validator=_is_callable)
    higher_is_better: bool = True
    #: how reports label the metric (e.g. "H@1", "ΔSel@1"); defaults to ``name``
    label: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label or self.name, "formula": self.formula,
                "direction": "higher" if self.higher_is_better else "lower"}


@attrs.frozen
class Dataset:
    """A source of audit populations.

    ``load(**options) -> dife_core.populations.World`` (or a subset of its
    populations). ``provides`` names the population kinds it can fill.
    """

    name: str = attrs.field(validator=_valid_name)
    description: str
    load: Callable[..., Any] = attrs.field(validator=_is_callable)
    provides: tuple = attrs.field(default=(), converter=tuple)
    options: dict = attrs.field(factory=dict)  # documented options -> defaults


#: what a scanner searches: an input channel, or the weights themselves
SCAN_CHANNELS = ("image", "text", "none", "weights")


@attrs.frozen
class Scanner:
    """A backdoor search run by ``dife scan`` on a checkpoint without an attack card.

    ``run(ctx) -> list[dict]`` receives a :class:`dife_core.scan.ScanContext`
    (the suspect, the clean reference, the world, the embedding service, the
    scanner's options) and returns its *findings*: each ``{"statistic",
    "value", "reference_value", "score", "threshold", "card", "details"}``
    where ``card`` is a recovered attack card (dict) or None, ``score`` is the
    statistic calibrated against the reference (docs/scan.md).
    """

    name: str = attrs.field(validator=_valid_name)
    channel: str = attrs.field(validator=_one_of(SCAN_CHANNELS))
    description: str
    run: Callable[..., Any] = attrs.field(validator=_is_callable)
    #: documented options ``{name: default}`` (``--option NAME.KEY=VALUE`` sets them)
    options: dict = attrs.field(factory=dict)
    #: run order: lower first (cheap passes before searches); ties by name
    order: int = 100


#: registry kind -> (attrs type, hook name)
KINDS = {
    "model_loaders": (ModelLoader, "register_model_loaders"),
    "attacks": (Attack, "register_attacks"),
    "triggers": (Trigger, "register_triggers"),
    "interfaces": (Interface, "register_interfaces"),
    "metrics": (Metric, "register_metrics"),
    "datasets": (Dataset, "register_datasets"),
    "scanners": (Scanner, "register_scanners"),
}
