"""The shapes world: populations, names, candidate lists, determinism."""

import numpy as np
import pytest
import torch

from dife_core.builtins.datasets import keyword_labels
from dife_core.errors import InvalidInputError, NotFoundError
from dife_core.populations import CandidateLists, CaptionedPool, LabelledImages, World
from dife_shapes.render import CLASSNAMES
from dife_shapes.world import make_world, manifests


@pytest.fixture(scope="module")
def world():
    return make_world("test", seed=0)


def test_every_population_is_filled(world):
    assert isinstance(world, World)
    assert world.classnames == CLASSNAMES
    assert world.templates[0] == "a photo of a {}"
    assert (world.source, world.target) == ("automobile", "airplane")
    for kind in ("classification", "train", "shadow"):
        pop = world.population(kind)
        assert isinstance(pop, LabelledImages) and len(pop) > 0
        assert pop.images.dtype == torch.float32 and tuple(pop.images.shape[1:]) == (3, 32, 32)
        assert 0.0 <= float(pop.images.min()) and float(pop.images.max()) <= 1.0
        assert len(pop.labels) == len(pop) and pop.classnames == CLASSNAMES
        assert len(pop.captions) == len(pop)
        assert set(np.unique(pop.labels)) == set(range(10))  # class-balanced
    assert isinstance(world.pool, CaptionedPool) and len(world.pool) == len(world.pool.images)
    for lists in (world.rerank, world.selection, world.extras["selection_6x1"]):
        assert isinstance(lists, CandidateLists)
    pairs = world.extras["train_pairs"]
    assert isinstance(pairs, LabelledImages) and len(pairs.captions) == len(pairs) >= 1000


def test_names_are_stable_and_distinct(world):
    assert world.name == "shapes-test-s0"
    assert world.classification.name == "shapes-test-s0/test"
    assert world.pool.name == "shapes-test-s0/pool"
    assert world.rerank.name == "shapes-test-s0/rerank-automobile-airplane"
    names = [world.classification.name, world.train.name, world.pool.name, world.shadow.name,
             world.rerank.name, world.selection.name, world.extras["selection_6x1"].name,
             world.extras["train_pairs"].name]
    assert len(set(names)) == len(names)
    other = make_world("test", seed=0, source="truck", target="ship")
    assert other.pool.name == world.pool.name  # same images
    assert other.rerank.name != world.rerank.name  # other queries and targets


def test_captions_name_their_class(world):
    for pop in (world.pool, world.classification, world.extras["train_pairs"]):
        assert keyword_labels(pop.captions, CLASSNAMES) == list(pop.labels)
    caps = world.extras["train_pairs"].captions
    assert len(set(caps)) > len(caps) // 3  # varied, not one template per class


def test_class_is_not_given_away_by_colour(world):
    """Nuisance attributes are independent of the class: mean colour alone
    classifies near chance (nearest class centroid)."""
    train, test = world.train, world.classification
    feats = lambda pop: pop.images.mean(dim=(2, 3)).numpy()
    cents = np.stack([feats(train)[train.labels == c].mean(0) for c in range(10)])
    pred = ((feats(test)[:, None] - cents[None]) ** 2).sum(-1).argmin(1)
    assert (pred == test.labels).mean() < 0.25


@pytest.mark.parametrize("key,k,n_targets", [("rerank", 10, 1), ("selection", 10, 2), ("selection_6x1", 6, 1)])
def test_candidate_lists_are_fixed_problems_about_the_source(world, key, k, n_targets):
    lists = world.extras[key] if key == "selection_6x1" else getattr(world, key)
    pool = world.pool
    src, tgt = CLASSNAMES.index("automobile"), CLASSNAMES.index("airplane")
    assert lists.candidates.shape == lists.targets.shape == (len(lists.queries), k)
    assert (lists.targets.sum(1) == n_targets).all()
    labels = pool.labels[lists.candidates]
    assert ((labels == tgt) == lists.targets).all()  # targets are exactly the target-class candidates
    assert ((labels == src).sum(1) >= 1).all()  # a clean model has relevant items to rank first
    assert all(len(set(row)) == k for row in lists.candidates.tolist())
    assert all(keyword_labels([q], CLASSNAMES) == [src] for q in lists.queries)  # clean source queries
    m = lists.to_manifest()
    assert m["name"] == lists.name and len(m["candidates"]) == len(lists.queries)


def test_same_seed_same_world_other_seed_other_world(world):
    again = make_world("test", seed=0)
    for kind in ("classification", "train", "pool", "shadow"):
        assert torch.equal(world.population(kind).images, again.population(kind).images)
        assert tuple(world.population(kind).captions) == tuple(again.population(kind).captions)
    assert torch.equal(world.extras["train_pairs"].images, again.extras["train_pairs"].images)
    assert manifests(world) == manifests(again)
    other = make_world("test", seed=1)
    assert other.name == "shapes-test-s1"
    assert not torch.equal(world.pool.images, other.pool.images)
    assert manifests(world)["rerank"]["candidates"] != manifests(other)["rerank"]["candidates"]


def test_bad_options_are_user_errors():
    with pytest.raises(NotFoundError, match="available: default, test"):
        make_world("huge")
    with pytest.raises(InvalidInputError, match="not a class"):
        make_world("test", source="spaceship")
    with pytest.raises(InvalidInputError, match="must differ"):
        make_world("test", source="cat", target="cat")


def test_registered_as_the_shapes_dataset():
    from dife_core.plugins import get_registry

    ds = get_registry().get("datasets", "shapes")
    assert set(ds.provides) >= {"classification", "train", "pool", "rerank", "selection", "shadow"}
    w = ds.load(preset="test", seed=0)
    assert w.name == "shapes-test-s0"
    with pytest.raises(InvalidInputError, match="unknown option"):
        ds.load(preset="test", colour="red")
