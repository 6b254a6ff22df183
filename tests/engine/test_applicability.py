"""The four-question rule, each N.E. with its reason."""

import pytest

from dife_core.engine.applicability import AttackProfile, decide, readouts_for
from dife_core.populations import World
from dife_core.types import InterfaceCard, Trigger


def card(readout="score", channels=("image",), population="classification", relative=False):
    return InterfaceCard(name="x", title="x", readout=readout, trigger_channels=channels, target_event="t",
                         population=population, reference="clean query" if relative else None, metric="m",
                         relative=relative)


WORLD = World(name="w", classnames=("airplane", "automobile"), templates=("a photo of a {}",), source="automobile",
              target="airplane", classification=object(), pool=None)
FAMS = {"patch": Trigger(name="patch", channel="image", description="", make=lambda: None),
        "prefix": Trigger(name="prefix", channel="text", description="", make=lambda: None)}


def profile(channel="image", name="patch", modifies="both towers", target="airplane", **kw):
    c = {"attack": "a", "modifies": modifies, "trigger": {"channel": channel, "name": name, "params": {}},
         "source": "automobile", "target": target, **kw}
    return AttackProfile.from_card(c, trigger_families=FAMS)


@pytest.mark.parametrize("modifies,expect", [
    ("visual", ("image-features", "score")), ("visual only", ("image-features", "score")),
    ("text", ("text-features", "score")), ("text tower", ("text-features", "score")),
    ("both towers", ("image-features", "text-features", "score")),
    ("prompt learner", ("image-features", "text-features", "score")),
])
def test_readouts_from_what_the_attack_modifies(modifies, expect):
    assert readouts_for(modifies) == expect


def test_readout_question_gives_bypassed_footprint():
    a = decide(card(readout="image-features"), profile("text", "prefix", modifies="text"), WORLD,
               has_clean=True, has_scorer=False)
    assert not a.ok and a.question == "readout" and a.reason.startswith("bypassed footprint")


def test_channel_question_names_the_missing_channel():
    a = decide(card(channels=("text",)), profile(), WORLD, has_clean=True, has_scorer=False)
    assert not a.ok and a.question == "trigger channel"
    assert a.reason.startswith("no text trigger channel")
    b = decide(card(channels=("image",)), profile("text", "prefix"), WORLD, has_clean=True, has_scorer=False)
    assert b.reason.startswith("no image trigger channel")


def test_mechanism_channel_needs_a_scorer_else_falls_back_to_its_component():
    mech = profile("mechanism", "patch", modifies="prompt learner")
    assert mech.channels == ("mechanism", "image")
    c = card(readout="image-features", channels=("image", "mechanism"))
    assert decide(c, mech, WORLD, has_clean=True, has_scorer=True).channel == "mechanism"
    assert decide(c, mech, WORLD, has_clean=True, has_scorer=False).channel == "image"
    r = decide(card(channels=("text",)), mech, WORLD, has_clean=True, has_scorer=True)
    assert not r.ok and "mechanism this interface does not instantiate" in r.reason


def test_target_event_question():
    a = decide(card(population="pool"), profile(), WORLD, has_clean=True, has_scorer=False)
    assert not a.ok and a.question == "target event" and "no pool population" in a.reason
    b = decide(card(), profile(target="ship"), WORLD, has_clean=True, has_scorer=False)
    assert not b.ok and "'ship' is not a class" in b.reason


def test_reference_question_for_an_attack_without_trigger():
    p = AttackProfile.from_card({"attack": "mm", "modifies": "both", "trigger": {"channel": "none"},
                                 "source": "automobile", "target": "airplane"})
    c = card(channels=("text",), relative=True)
    a = decide(c, p, WORLD, has_clean=False, has_scorer=False)
    assert not a.ok and a.question == "reference"
    assert decide(c, p, WORLD, has_clean=True, has_scorer=False).channel == "none"


def test_no_attack_card_is_not_applicable():
    a = decide(card(), None, WORLD, has_clean=True, has_scorer=False)
    assert not a.ok and "no attack card" in a.reason
