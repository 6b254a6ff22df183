"""The per-checkpoint attack card as typed data, with its one validator.

A checkpoint's attack card says what the audit needs to know about its
backdoor: which trigger (a registered trigger family and its parameters) enters
through which channel, the source and target classes, which branches the
attack modifies, how its footprint is probed, and the native result its
builder measured. It is written into the checkpoint manifest (``dife.json``,
key ``attack``), given inline in an audit spec, or recovered by a scan.

:meth:`AttackCard.from_dict` reads a card (cards written by older DIFE
releases included); :meth:`AttackCard.problems` is the only validator: the
spec checker, the builder and the engine all call it. Nothing here imports
torch.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import attrs

from .types import CHANNELS, READOUTS

#: Branch names an attack can modify. ``extra`` is a component outside both
#: towers that ships with the checkpoint (e.g. a learned prompt).
BRANCHES = ("visual", "text", "logit_scale", "extra")
PROBES = ("branch-swap", "component-repair")
#: Readouts each modified branch reaches. An extra component sits beside the
#: towers and can feed any readout, so it reaches all three.
BRANCH_READOUTS = {
    "visual": ("image-features", "score"),
    "text": ("text-features", "score"),
    "logit_scale": ("score",),
    "extra": READOUTS,
}
#: Keys with a meaning to the core; anything else is kept in ``extra`` and
#: written back unchanged.
KNOWN_KEYS = ("attack", "title", "route", "reference", "modifies", "trigger", "source", "target", "readouts",
              "probe", "native", "clean_utility", "config", "recovered")
TRIGGER_KEYS = ("channel", "name", "params")
NATIVE_KEYS = ("protocol", "metric", "value", "reference_value")

# Free-text ``modifies`` of cards written before branch sets (and of
# hand-written cards): the words each old value used, read once here.
_LEGACY_WORDS = (
    ("both", ("visual", "text")),
    ("visual", ("visual",)),
    ("image", ("visual",)),
    ("text", ("text",)),
    ("logit", ("logit_scale",)),
    ("prompt", ("extra",)),
    ("extra", ("extra",)),
)


def parse_modifies(value: Any) -> tuple:
    """``(branches, problem)``: a list of branch names, or a legacy string
    ("both towers", "visual", "text", "prompt learner") -> the branch set."""
    if value is None:
        return frozenset(), None
    if isinstance(value, (list, tuple, set, frozenset)):
        bad = [v for v in value if v not in BRANCHES]
        if bad:
            return frozenset(), f"unknown branch(es) {bad!r}; use a list of {', '.join(BRANCHES)}"
        return frozenset(value), None
    if isinstance(value, str):
        words = value.lower()
        found: set = set()
        for word, branches in _LEGACY_WORDS:
            if word in words:
                found.update(branches)
        if not found:
            return frozenset(), (f"{value!r} names no branch; use a list of {', '.join(BRANCHES)} "
                                 f"(e.g. [\"visual\", \"text\"])")
        return frozenset(found), None
    return frozenset(), f"must be a list of branch names ({', '.join(BRANCHES)}), got {value!r}"


@attrs.frozen
class TriggerRef:
    """The card's trigger: the channel it enters through and, unless the
    channel is ``none``, a registered trigger family with its parameters."""

    channel: str
    name: Optional[str] = None
    params: dict = attrs.field(factory=dict, eq=False)

    @property
    def key(self) -> str:
        """The trigger's content key (embedding caches, cell keys)."""
        from .engine.embeddings import trigger_key

        return trigger_key(self.spec)

    @property
    def spec(self) -> Optional[dict]:
        """``{"name", "params"}`` of the family, or None for channel ``none``."""
        if self.channel == "none" or not self.name:
            return None
        return {"name": self.name, "params": dict(self.params)}

    def to_dict(self) -> dict:
        d: dict = {"channel": self.channel}
        if self.name is not None:
            d["name"] = self.name
        d["params"] = dict(self.params)
        return d


@attrs.frozen
class AttackCard:
    """A checkpoint's attack card (see the module docstring)."""

    attack: str
    trigger: TriggerRef
    target: Optional[str]
    source: Optional[str] = None
    modifies: frozenset = attrs.field(default=frozenset(), converter=frozenset)
    probe: str = "branch-swap"
    readouts: Optional[tuple] = None  # override of the readouts ``modifies`` reaches
    native: Optional[dict] = None  # {protocol, metric, value, reference_value[, interface]}
    clean_utility: Optional[dict] = None
    config: Optional[dict] = None
    title: str = ""
    route: str = ""
    reference: str = ""
    #: set on cards a scan recovered: the statistic that found it, etc.
    recovered: Optional[dict] = None
    #: keys the core does not read, kept for the round trip
    extra: dict = attrs.field(factory=dict)
    #: problems found while reading (see :meth:`problems`)
    read_problems: tuple = attrs.field(default=(), eq=False, repr=False)

    # -- reading ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "AttackCard":
        """Read a card; never raises on content -- call :meth:`problems`."""
        probs: list = []
        if not isinstance(data, dict):
            return cls(attack="unknown", trigger=TriggerRef("none"), target=None,
                       read_problems=(("", f"must be a table (an attack card), got {type(data).__name__}"),))
        attack = data.get("attack")
        if not isinstance(attack, str) or not attack:
            probs.append(("attack", "missing: the attack id (a non-empty string)"))
            attack = "unknown"
        trig = data.get("trigger")
        trigger = TriggerRef("none")
        if trig is None:
            probs.append(("trigger", "missing: {channel, name, params}"))
        elif not isinstance(trig, dict):
            probs.append(("trigger", f"must be a table {{channel, name, params}}, got {trig!r}"))
        else:
            for k in trig:
                if k not in TRIGGER_KEYS:
                    probs.append((f"trigger.{k}", f"unknown key; allowed: {', '.join(TRIGGER_KEYS)}"))
            ch = trig.get("channel")
            if ch not in CHANNELS:
                probs.append(("trigger.channel", f"must be one of {', '.join(CHANNELS)}; got {ch!r}"))
                ch = "none"
            name = trig.get("name")
            params = trig.get("params", {})
            if params is None:
                params = {}
            if not isinstance(params, dict):
                probs.append(("trigger.params", f"must be a table, got {params!r}"))
                params = {}
            if ch != "none" and (not isinstance(name, str) or not name):
                probs.append(("trigger.name", "missing: the trigger family id (see `dife triggers`)"))
                name = None
            trigger = TriggerRef(ch, name if isinstance(name, str) else None, dict(params))
        roles = {}
        for role in ("source", "target"):
            v = data.get(role)
            if v is not None and (not isinstance(v, str) or not v):
                probs.append((role, f"must be a class name (string), got {v!r}"))
                v = None
            roles[role] = v
        if roles["target"] is None and "target" not in [p[0] for p in probs]:
            probs.append(("target", "missing: the attack's target class name"))
        modifies, why = parse_modifies(data.get("modifies"))
        if why:
            probs.append(("modifies", why))
        probe = data.get("probe", "branch-swap")
        if probe not in PROBES:
            probs.append(("probe", f"must be one of {', '.join(PROBES)}; got {probe!r}"))
            probe = "branch-swap"
        ro = data.get("readouts")
        readouts = None
        if ro is not None:
            if not isinstance(ro, (list, tuple)) or not ro or any(r not in READOUTS for r in ro):
                probs.append(("readouts", f"must be a list of {', '.join(READOUTS)}; got {ro!r}"))
            else:
                readouts = tuple(ro)
        native = data.get("native")
        if native is not None and not isinstance(native, dict):
            probs.append(("native", f"must be a table, got {native!r}"))
            native = None
        cu = data.get("clean_utility")
        if cu is not None and not isinstance(cu, dict):
            probs.append(("clean_utility", f"must be a table, got {cu!r}"))
            cu = None
        config = data.get("config")
        if config is not None and not isinstance(config, dict):
            probs.append(("config", f"must be a table, got {config!r}"))
            config = None
        recovered = data.get("recovered")
        if recovered is not None and not isinstance(recovered, dict):
            probs.append(("recovered", f"must be a table, got {recovered!r}"))
            recovered = None
        texts = {}
        for k in ("title", "route", "reference"):
            v = data.get(k, "")
            if v is None:
                v = ""
            if not isinstance(v, str):
                probs.append((k, f"must be a string, got {v!r}"))
                v = ""
            texts[k] = v
        probs.extend(_non_finite(data, ""))
        extra = {k: v for k, v in data.items() if k not in KNOWN_KEYS}
        return cls(attack=attack, trigger=trigger, target=roles["target"], source=roles["source"],
                   modifies=modifies, probe=probe, readouts=readouts, native=native, clean_utility=cu,
                   config=config, recovered=recovered, extra=extra, read_problems=tuple(probs), **texts)

    # -- validation --------------------------------------------------------------------
    def problems(self, *, registry: bool = True) -> list:
        """``[(key, message)]``: everything wrong with the card.

        With ``registry`` the trigger family must be registered, act on the
        card's channel (a ``mechanism`` card may name a family of any channel:
        its plain-input component) and accept its parameters.
        """
        probs = list(self.read_problems)
        t = self.trigger
        if registry and t.channel != "none" and t.name:
            from .plugins import get_registry

            fams = get_registry().all("triggers")
            fam = fams.get(t.name)
            if fam is None:
                from .errors import available

                probs.append(("trigger.name", f"unknown trigger family {t.name!r}; {available(fams)}"))
            elif t.channel in ("image", "text") and fam.channel != t.channel:
                probs.append(("trigger.channel",
                              f"trigger family {t.name!r} acts on the {fam.channel} channel, not {t.channel}"))
            else:
                try:
                    fam.make(**t.params)
                except Exception as e:  # the family rejects its parameters
                    probs.append(("trigger.params", f"rejected by trigger family {t.name!r}: {e}"))
        return probs

    def require_valid(self, where: str, *, registry: bool = True) -> "AttackCard":
        """Raise one InvalidInputError naming ``where`` and every problem."""
        probs = self.problems(registry=registry)
        if probs:
            from .errors import InvalidInputError

            body = "; ".join(f"{where}.{k}: {m}" if k else f"{where}: {m}" for k, m in probs)
            raise InvalidInputError(f"attack card problem{'s' if len(probs) > 1 else ''}: {body}.")
        return self

    # -- what the engine reads -----------------------------------------------------------
    @property
    def reachable_readouts(self) -> tuple:
        """Readouts the attack can reach: the card's ``readouts`` if given, else
        from the modified branches (every readout when nothing is declared)."""
        if self.readouts:
            return tuple(self.readouts)
        if not self.modifies:
            return READOUTS
        out: list = []
        for b in sorted(self.modifies):
            for r in BRANCH_READOUTS[b]:
                if r not in out:
                    out.append(r)
        return tuple(r for r in READOUTS if r in out)

    @property
    def native_interface(self) -> Optional[str]:
        n = self.native or {}
        v = n.get("interface")
        return v if isinstance(v, str) and v else None

    def to_dict(self) -> dict:
        d: dict = dict(self.extra)
        d.update({"attack": self.attack, "trigger": self.trigger.to_dict(), "source": self.source,
                  "target": self.target, "modifies": sorted(self.modifies), "probe": self.probe})
        for k in ("title", "route", "reference"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        for k in ("readouts",):
            if self.readouts is not None:
                d[k] = list(self.readouts)
        for k in ("native", "clean_utility", "config", "recovered"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


def _non_finite(x, key: str, depth: int = 0) -> list:
    """NaN / Inf anywhere in a card are input errors (a card's numbers are data)."""
    if depth > 32:
        return [(key, "nested too deeply")]
    if isinstance(x, float) and not math.isfinite(x):
        return [(key or "(card)", f"{x!r} is not a finite number")]
    if isinstance(x, dict):
        out = []
        for k, v in x.items():
            out.extend(_non_finite(v, f"{key}.{k}" if key else str(k), depth + 1))
        return out
    if isinstance(x, (list, tuple)):
        out = []
        for i, v in enumerate(x):
            out.extend(_non_finite(v, f"{key}[{i}]", depth + 1))
        return out
    return []


def as_card(card: Any) -> Optional[AttackCard]:
    """An :class:`AttackCard` from a card, a dict, or None."""
    if card is None or isinstance(card, AttackCard):
        return card
    return AttackCard.from_dict(card)


__all__ = ["AttackCard", "TriggerRef", "BRANCHES", "parse_modifies", "as_card"]
