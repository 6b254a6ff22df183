"""The four-question rule, each N.E. with its reason."""

import pytest

from dife_core.cards import AttackCard, parse_modifies
from dife_core.engine.applicability import AttackProfile, decide
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


@pytest.mark.parametrize("modifies,branches,expect", [
    ("visual", {"visual"}, ("image-features", "score")), ("visual only", {"visual"}, ("image-features", "score")),
    ("text", {"text"}, ("text-features", "score")), ("text tower", {"text"}, ("text-features", "score")),
    ("both towers", {"visual", "text"}, ("image-features", "text-features", "score")),
    # an extra component (a learned prompt) sits beside the towers and can feed every readout
    ("prompt learner", {"extra"}, ("image-features", "text-features", "score")),
    (["visual"], {"visual"}, ("image-features", "score")),
    (["text", "logit_scale"], {"text", "logit_scale"}, ("text-features", "score")),
])
def test_readouts_from_the_modified_branches(modifies, branches, expect):
    """Legacy free-text ``modifies`` (old manifests) and branch lists read to the same branch set."""
    assert parse_modifies(modifies) == (frozenset(branches), None)
    card = AttackCard.from_dict({"attack": "a", "modifies": modifies, "target": "airplane",
                                 "trigger": {"channel": "image", "name": "patch", "params": {}}})
    assert card.reachable_readouts == expect


@pytest.mark.parametrize("modifies", ["the weights", ["vision"], 3])
def test_modifies_that_names_no_branch_is_a_card_problem(modifies):
    """Free text no longer silently means "all readouts"."""
    card = AttackCard.from_dict({"attack": "a", "modifies": modifies, "target": "airplane",
                                 "trigger": {"channel": "image", "name": "patch", "params": {}}})
    assert [k for k, _ in card.problems(registry=False)] == ["modifies"]


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
