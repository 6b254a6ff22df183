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

from typing import Any, Optional

import attrs

#: question ids, in the order they are asked
QUESTIONS = ("readout", "trigger channel", "target event", "reference")

_READOUT_WORDS = {"image-features": "image features", "text-features": "text features", "score": "the score s(x,t)"}


@attrs.frozen
class AttackProfile:
    """What the engine needs to know about an attack, read from its typed card
    (:class:`dife_core.cards.AttackCard`).

    ``channels`` are the ways the trigger enters: the card's channel, plus,
    for a ``mechanism`` card, the channel of the trigger family it names
    (the plain-input component of the mechanism, e.g. a learned image
    trigger). ``readouts`` are the readouts the attack can reach: the card's
    ``readouts`` if given, else those of the branches it modifies
    (:data:`dife_core.cards.BRANCH_READOUTS`).
    """

    attack: str
    channel: str
    channels: tuple
    trigger: Optional[dict]  # {"name", "params"} or None for channel "none"
    trigger_channel: Optional[str]  # channel the trigger family acts on ("image"/"text"), None for "none"
    source: Optional[str]
    target: Optional[str]
    modifies: str  # the modified branches, comma-separated (messages)
    readouts: tuple
    probe: str
    card: dict
    typed: Any = attrs.field(default=None, eq=False, repr=False)  # the AttackCard

    @property
    def trigger_key(self) -> str:
        from .embeddings import trigger_key

        return trigger_key(self.trigger)

    @property
    def native_interface(self) -> Optional[str]:
        return self.typed.native_interface if self.typed is not None else None

    @classmethod
    def from_card(cls, card, *, trigger_families: Optional[dict] = None) -> "AttackProfile":
        from ..cards import as_card

        c = as_card(card)
        trigger = c.trigger.spec
        channel = c.trigger.channel
        fam_channel = None
        if trigger is not None:
            if trigger_families is None:
                from ..plugins import get_registry

                trigger_families = get_registry().all("triggers")
            fam = trigger_families.get(trigger["name"])
            fam_channel = fam.channel if fam is not None else (channel if channel in ("image", "text") else None)
        channels = [channel]
        if channel == "mechanism" and fam_channel is not None:
            channels.append(fam_channel)
        return cls(attack=c.attack, channel=channel, channels=tuple(channels), trigger=trigger,
                   trigger_channel=fam_channel, source=c.source, target=c.target,
                   modifies=", ".join(sorted(c.modifies)) or "unspecified components",
                   readouts=c.reachable_readouts, probe=c.probe, card=c.to_dict(), typed=c)


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
