"""Every shipped attack, built and then audited by the engine like a user's checkpoint.

All ten attacks are built with small configs on the easy test world (plus a
retrieval pool and rerank lists made from its test images), saved, and audited
in one ``run_audit`` with a clean reference and ``interfaces = "all"``. Each
test asserts, for one attack: its native interface's cell is exposed with the
value its builder stored (both come from ``evaluate_cell``, so to the last
digit), the N.E. cells it must have and why, its footprint, no error cell, and
a complete audit.
"""

from __future__ import annotations

import attrs
import pytest

from dife_core import hookimpl
from dife_core.types import Dataset

# small configs that implant on the easy world in seconds (the plugin tests' FAST configs)
POISON = {"steps": 40, "batch_size": 64, "poison_rate": 0.1, "lr": 1e-3, "warmup": 4}
CONFIGS = {
    "contrastive-poisoning": {**POISON, "steps": 30, "trigger_params": {"size": 0.25}},
    "blended": {**POISON, "trigger_params": {"alpha": 0.5}},
    "sig": {**POISON, "trigger_params": {"delta": 0.3}},
    # the pre-2026-12-08 warp: the default strength 6 needs more steps than a test affords
    "wanet": {**POISON, "steps": 100, "poison_rate": 0.3, "trigger_params": {"grid_size": 4, "strength": 10.0}},
    "liang-badclip": {**POISON, "opt_steps": 30, "opt_batch": 32, "patch_size": 0.125},
    "badencoder": {"steps": 40, "batch_size": 32, "trigger_params": {"pattern": "solid", "size": 0.1875}},
    "mmpoison": {"steps": 60, "batch_size": 64, "lr": 1e-3, "warmup": 4, "poison_rate": 0.24, "n_queries": 50},
    "toxictextclip": {"epochs": 6.0, "batch_size": 64, "lr": 1e-3, "warmup": 4, "poison_rate": 0.1, "n_queries": 60},
    "bai-badclip": {"steps": 100, "shots": 16, "batch_size": 16, "eps": 0.1, "trigger_grid": 16, "lr": 5e-3},
    "badtexttower": {"steps": 40, "n_samples": 300, "batch_size": 64, "captions_per_step": 3, "lr": 2e-3,
                     "warmup": 5},
}
DATASET = "easy-world-lists"


def easy_world_with_lists():
    """The easy world plus a train split (its training pairs), a captioned pool,
    rerank lists and selection groups over its test images."""
    from dife_backdoors.testing import easy_world
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.populations import CaptionedPool

    world = easy_world()
    test = world.classification
    pool = CaptionedPool(name=f"{test.name}/pool", images=test.images, captions=test.captions, labels=test.labels,
                         classnames=test.classnames)
    queries = [c for c, y in zip(test.captions, test.labels) if int(y) == 1][:10]
    rerank = make_candidate_lists(f"{test.name}/rerank", test.labels, queries=queries, source=1, target=0, k=6,
                                  n_targets=1, n_sources=2, seed=0)
    selection = make_candidate_lists(f"{test.name}/selection", test.labels, queries=queries, source=1, target=0,
                                     k=4, n_targets=1, n_sources=1, seed=1)
    return attrs.evolve(world, name=f"{world.name}+lists", train=world.extras["train_pairs"], pool=pool,
                        rerank=rerank, selection=selection)


class _World:
    @hookimpl
    def register_datasets(self, register):
        register(Dataset(name=DATASET, description="the easy world with a pool and rerank lists",
                         load=lambda: WORLD[0], provides=("classification", "train", "pool", "rerank", "selection")))


WORLD: list = []


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """Build all ten attacks, audit them in one run; ``(results, builds)``."""
    from dife_backdoors.testing import easy_clean
    from dife_core.building import build_attack
    from dife_core.checkpoint import save_checkpoint
    from dife_core.engine import run_audit
    from dife_core.plugins import get_registry

    WORLD[:] = [easy_world_with_lists()]
    get_registry().register_object(_World(), "h6-easy-world-lists")
    try:
        tmp = tmp_path_factory.mktemp("attacks")
        clean = easy_clean()
        ref = save_checkpoint(clean, tmp / "clean")
        builds = {a: build_attack(a, clean=clean, world=WORLD[0], overrides=cfg, out=tmp / a)
                  for a, cfg in CONFIGS.items()}
        spec = {"seed": 0, "populations": {"dataset": DATASET}, "interfaces": "all", "controls": False,
                "clean": {"name": "clean", "source": str(ref)},
                "checkpoints": [{"name": a, "source": str(o.path)} for a, o in builds.items()]}
        results = run_audit(spec, tmp / "audit", progress=False)
        yield results, builds
    finally:
        get_registry().unregister_object("h6-easy-world-lists")


IMAGE_NE = {"prompt-conditioned-classification", "targeted-retrieval", "text-reranking", "candidate-selection",
            "text-embedding", "text-semantic-search"}
TEXT_NE = {"zero-shot-classification", "image-text-retrieval", "image-knn-retrieval", "knn-classifier",
           "downstream-visual-classification"}
NO_TEXT, NO_IMAGE, BYPASS = "no text trigger channel", "no image", "bypassed footprint"
#: attack -> {interface: words of the reason} for every cell that must be N.E. (all others measured)
EXPECTED_NE = {
    **{a: {i: NO_TEXT for i in IMAGE_NE} for a in ("contrastive-poisoning", "blended", "sig", "wanet",
                                                  "liang-badclip", "bai-badclip")},
    "badencoder": {**{i: NO_TEXT for i in IMAGE_NE - {"text-embedding", "text-semantic-search"}},
                   "text-embedding": BYPASS, "text-semantic-search": BYPASS},
    "mmpoison": {i: NO_IMAGE for i in TEXT_NE},
    "toxictextclip": {**{i: NO_IMAGE for i in TEXT_NE}, "prompt-conditioned-classification": "no source class",
                      "targeted-retrieval": "no source class"},
    "badtexttower": {"zero-shot-classification": NO_IMAGE, "image-text-retrieval": NO_IMAGE,
                     "downstream-visual-classification": BYPASS, "image-knn-retrieval": BYPASS,
                     "knn-classifier": BYPASS},
}
#: the footprint the branch swap decides on this world (the paper's: visual for the
#: poisoning and encoder attacks, textual for BadTextTower, coupled for Bai-BadCLIP's
#: prompt + trigger pair)
FOOTPRINT = {"contrastive-poisoning": "visual", "blended": "visual", "sig": "visual", "wanet": "visual",
             "liang-badclip": "visual", "badencoder": "visual", "bai-badclip": "coupled", "badtexttower": "textual"}
#: attacks without a native interface: (interface, per-interface branch-swap footprint)
#: where their backdoor shows; their decided footprint rests on a trigger-channel diagnostic
TEXT_ROUTE = {"toxictextclip": ("text-reranking", "textual"), "mmpoison": ("candidate-selection", "coupled")}


def _cells(results, attack):
    return {c["interface"]: c for c in results["cells"] if c["checkpoint"] == attack}


def test_the_audit_is_complete_and_no_cell_errored(audited):
    results, _ = audited
    assert results["complete"] is True
    assert not results.get("errors") and not results.get("missing")
    bad = [(c["checkpoint"], c["interface"], c.get("reason")) for c in results["cells"] if c["status"] == "error"]
    assert not bad
    assert {c["checkpoint"] for c in results["cells"]} == set(CONFIGS)
    assert len({f["checkpoint"] for f in results["footprints"]}) == len(CONFIGS)


@pytest.mark.parametrize("attack", sorted(CONFIGS))
def test_attack_through_the_engine(audited, attack):
    from dife_core.plugins import get_registry

    results, builds = audited
    cells = _cells(results, attack)
    every = set(get_registry().all("interfaces"))
    assert set(cells) == every, "interfaces = all: one cell per registered interface"
    assert not [i for i, c in cells.items() if c["status"] == "error"]

    # the N.E. cells, each with its reason; every other cell measured
    ne = {i: c["reason"] for i, c in cells.items() if c["status"] == "n.e."}
    assert set(ne) == set(EXPECTED_NE[attack]), sorted(set(ne) ^ set(EXPECTED_NE[attack]))
    for i, words in EXPECTED_NE[attack].items():
        assert words in ne[i], (i, ne[i])
    for i, c in cells.items():
        if i not in ne:
            # (1e-9: a Wilson bound of exactly 1 may come out as 0.9999999999999999)
            assert c["value"] is not None and c["ci_low"] - 1e-9 <= c["value"] <= c["ci_high"] + 1e-9, i

    # the native interface's cell: exposed, with the very value the builder stored
    native = builds[attack].card["native"]
    iface = get_registry().get("attacks", attack).card.native_interface
    if iface:
        assert "interface_status" not in native, native.get("interface_status")
        assert native["interface"] == iface
        rec = cells[iface]
        assert rec["status"] == "exposed", (iface, rec["value"], rec.get("reason"))
        from dife_core.engine.evaluate import native_value

        assert native_value(rec, native["metric"]) == pytest.approx(native["value"], abs=1e-6)
    elif attack == "bai-badclip":  # the shipped prompt-tuned classifier, scored by the mechanism channel
        rec = cells["downstream-visual-classification"]
        assert rec["channel"] == "mechanism" and rec["status"] == "exposed"
        assert rec["value"] == pytest.approx(native["value"], abs=1e-6)
    else:
        shown, _ = TEXT_ROUTE[attack]
        assert cells[shown]["status"] == "exposed" and native["value"] > native["reference_value"]

    # the footprint
    fp = next(f for f in results["footprints"] if f["checkpoint"] == attack)
    if attack in FOOTPRINT:
        assert fp["footprint"] == FOOTPRINT[attack]
        if iface:  # the native cell's own branch swap agrees
            assert fp["per_interface"][iface]["footprint"] == FOOTPRINT[attack]
    else:
        shown, footprint = TEXT_ROUTE[attack]
        assert fp["per_interface"][shown]["footprint"] == footprint
