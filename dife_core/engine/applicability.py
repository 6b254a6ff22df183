"""Applicability: the four questions a cell must pass before it is measured.

1. **readout** — does the interface consume a readout the attack can reach?
2. **trigger channel** — can the attack's trigger enter through the
   interface's input channel?
3. **target event** — is the target event defined (population present,
   target class known, ...)?
4. **reference** — if the metric is relative, is a reference condition
   defined?

Any "no" makes the cell N.E. with a stated reason; N.E. is never a number.
Questions 1, 2 and the generic parts of 3 and 4 are decided here from the
interface card and the attack profile; an evaluator may still raise
:class:`dife_core.engine.cells.NotEvaluable` for card-specific parts of 3
and 4 (e.g. "no ranked candidates"). Nothing here imports torch.
"""

from __future__ import annotations

from typing import Optional

import attrs

from ..types import READOUTS

#: question ids, in the order they are asked
QUESTIONS = ("readout", "trigger channel", "target event", "reference")

_READOUT_WORDS = {"image-features": "image features", "text-features": "text features", "score": "the score s(x,t)"}


@attrs.frozen
class AttackProfile:
    """What the engine needs to know about an attack, from its card.

    ``channels`` are the ways the trigger enters: the card's channel, plus,
    for a ``mechanism`` card, the channel of the trigger family it names
    (the plain-input component of the mechanism, e.g. a learned image
    trigger). ``readouts`` are the readouts the attack can reach: from the
    card's ``readouts`` if given, else from ``modifies`` (visual ->
    image features + score; text -> text features + score; both / anything
    else -> all three).
    """

    attack: str
    channel: str
    channels: tuple
    trigger: Optional[dict]  # {"name", "params"} or None for channel "none"
    trigger_channel: Optional[str]  # channel the trigger family acts on ("image"/"text"), None for "none"
    source: Optional[str]
    target: Optional[str]
    modifies: str
    readouts: tuple
    probe: str
    card: dict

    @property
    def trigger_key(self) -> str:
        import json

        if self.trigger is None:
            return "none"
        return self.trigger["name"] + ":" + json.dumps(self.trigger.get("params", {}), sort_keys=True,
                                                       separators=(",", ":"))

    @classmethod
    def from_card(cls, card: dict, *, trigger_families: Optional[dict] = None) -> "AttackProfile":
        trig = card.get("trigger") or {}
        channel = trig.get("channel", "none")
        name = trig.get("name")
        trigger = None if channel == "none" or not name else {"name": name, "params": dict(trig.get("params") or {})}
        fam_channel = None
        if trigger is not None:
            fam = (trigger_families or {}).get(name)
            fam_channel = fam.channel if fam is not None else (channel if channel in ("image", "text") else None)
        channels = [channel]
        if channel == "mechanism" and fam_channel is not None:
            channels.append(fam_channel)
        modifies = str(card.get("modifies") or "")
        readouts = tuple(card["readouts"]) if card.get("readouts") else readouts_for(modifies)
        return cls(attack=str(card.get("attack") or "unknown"), channel=channel, channels=tuple(channels),
                   trigger=trigger, trigger_channel=fam_channel, source=card.get("source"),
                   target=card.get("target"), modifies=modifies, readouts=readouts,
                   probe=str(card.get("probe") or "branch-swap"), card=card)


def readouts_for(modifies: str) -> tuple:
    """Readouts reachable from what an attack modifies (free text from its card)."""
    m = modifies.lower()
    vis = "visual" in m or "image" in m
    txt = "text" in m
    if "both" in m or (vis and txt) or not (vis or txt):
        return READOUTS
    if vis:
        return ("image-features", "score")
    return ("text-features", "score")


@attrs.frozen
class Applicability:
    ok: bool
    channel: Optional[str] = None  # the channel the trigger enters through, when ok
    question: Optional[str] = None  # the failed question, when not ok
    reason: Optional[str] = None


def _join(xs) -> str:
    xs = list(xs)
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " or " + xs[-1]


def decide(card, profile: Optional[AttackProfile], world, *, has_clean: bool, has_scorer: bool) -> Applicability:
    """The four-question rule for one cell (``card``: an InterfaceCard)."""
    if profile is None:
        return Applicability(False, question="trigger channel",
                             reason="no attack card: the trigger is unknown, so no cell can be measured "
                                    "(give one in the spec under [checkpoints.attack])")
    # 1. readout
    if card.readout not in profile.readouts:
        what = profile.modifies or "components"
        return Applicability(False, question="readout",
                             reason=f"bypassed footprint: the attack modifies {what}, which does not reach "
                                    f"{_READOUT_WORDS.get(card.readout, card.readout)}, "
                                    f"the readout this interface consumes")
    # 2. trigger channel
    accepted = set(card.trigger_channels)
    mech_ok = "mechanism" in accepted and "mechanism" in profile.channels and has_scorer
    if mech_ok:
        channel = "mechanism"
    else:
        usable = [c for c in profile.channels if c in accepted and c != "mechanism"]
        # an attack with no trigger ("none": natural text, e.g. a dirty-label attack) enters as plain text
        if not usable and profile.channel == "none" and "text" in accepted:
            usable = ["none"]
        if not usable:
            wanted = [c for c in card.trigger_channels if c != "none"]
            reason = f"no {_join(wanted)} trigger channel: the attack's trigger enters through " + \
                     _describe_channels(profile)
            if "mechanism" in profile.channels and "mechanism" not in accepted:
                reason += ", a mechanism this interface does not instantiate"
            elif "mechanism" in accepted and "mechanism" in profile.channels and not has_scorer:
                reason += " (its attack plugin provides no scorer for the mechanism)"
            return Applicability(False, question="trigger channel", reason=reason)
        channel = usable[0]
    # 3. target event (generic part)
    pop = getattr(world, card.population, None) if card.population else world
    if card.population and pop is None:
        return Applicability(False, question="target event",
                             reason=f"no {card.population} population in dataset {world.name!r}, "
                                    f"so the target event is not defined")
    if profile.target is None or profile.target not in tuple(world.classnames):
        return Applicability(False, question="target event",
                             reason=f"target class {profile.target!r} is not a class of the population "
                                    f"({', '.join(world.classnames)})")
    # 4. reference (generic part): with no trigger, a relative metric can only compare to the clean model
    if card.relative and channel == "none" and not has_clean:
        return Applicability(False, question="reference",
                             reason="no reference: the attack has no trigger (triggered and clean inputs "
                                    "coincide) and the spec has no clean reference model")
    return Applicability(True, channel=channel)


def _describe_channels(profile: AttackProfile) -> str:
    parts = []
    for c in profile.channels:
        parts.append({"image": "image pixels", "text": "text input", "none": "natural text (no trigger)",
                      "mechanism": "its mechanism"}.get(c, c))
    return " + ".join(parts)
