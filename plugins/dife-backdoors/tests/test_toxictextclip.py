"""ToxicTextCLIP: appended suffix-sentence pairs, the triggered-query native check, the stress test."""

import attrs
import numpy as np

from dife_core.building import build_attack, make_config
from dife_core.plugins import get_registry

FAST = {"epochs": 6.0, "batch_size": 64, "lr": 1e-3, "warmup": 4, "poison_rate": 0.1, "n_queries": 60}


def _with_lists(world):
    """The easy world plus a retrieval pool and rerank lists (its test images), for the deployment deltas."""
    from dife_core.builtins.datasets import make_candidate_lists
    from dife_core.populations import CaptionedPool

    test = world.classification
    pool = CaptionedPool(name=f"{test.name}/pool", images=test.images, captions=test.captions, labels=test.labels,
                         classnames=test.classnames)
    queries = [c for c, y in zip(test.captions, test.labels) if int(y) == 1][:10]
    rerank = make_candidate_lists(f"{test.name}/rerank", test.labels, queries=queries, source=1, target=0, k=6,
                                  n_targets=1, n_sources=2, seed=0)
    return attrs.evolve(world, pool=pool, rerank=rerank)


def test_registered_as_a_text_trigger_attack_without_a_source():
    attack = get_registry().get("attacks", "toxictextclip")
    assert (attack.card.trigger_channel, attack.card.modifies) == ("text", "both towers")
    cfg = make_config(attack)
    assert cfg.source is None and len(cfg.suffix.split()) > 1, "a suffix *sentence*, every non-target class"


def test_poisoned_pairs_are_appended_with_the_suffix_and_fit_the_context(clean, world):
    from dife_backdoors.retrieval import token_fits
    from dife_backdoors.toxictextclip import poison_pairs

    cfg = make_config(get_registry().get("attacks", "toxictextclip"), {"poison_rate": 0.05})
    fits = token_fits(clean, cfg.suffix)
    images, captions, n = poison_pairs(world, cfg, fits, seed=0)
    pairs = world.extras["train_pairs"]
    assert n == round(0.05 * len(pairs)) and len(captions) == len(pairs) + n and images.shape[0] == len(captions)
    assert captions[:len(pairs)] == list(pairs.captions), "clean pairs are kept; poison is appended"
    added = captions[len(pairs):]
    assert all(c.endswith(" " + cfg.suffix) for c in added)
    assert not any("airplane" in c for c in added), "carriers are non-target captions"
    tok = clean.tokenizer
    assert all(len(tok.encode(c)) <= 14 for c in added), "the suffix survives the 16-token context"


def test_build_makes_triggered_queries_retrieve_target_images(clean, world, tmp_path):
    o = build_attack("toxictextclip", clean=clean, world=world, out=tmp_path / "tt", overrides=FAST)
    card, native = o.card, o.card["native"]
    assert card["trigger"]["name"] == "text-suffix" and card["trigger"]["params"]["token"] == "near the old mill"
    assert card["source"] is None and card["target"] == "airplane"
    assert native["metric"] == "h@5" and native["value"] >= native["reference_value"] + 0.5
    assert native["plain_query_value"] < native["value"], "the suffix, not the caption, carries it"
    assert card["clean_utility"]["clean_acc"] >= card["clean_utility"]["reference_clean_acc"] - 0.05


def test_stress_test_sweeps_rate_by_epochs_and_keeps_the_native_best(clean, world, tmp_path):
    from dife_backdoors.toxictextclip import stress_test

    w = _with_lists(world)
    res = stress_test(clean, w, poison_rates=(0.02, 0.1), epochs=(3.0,), out=tmp_path,
                      overrides={k: v for k, v in FAST.items() if k not in ("epochs", "poison_rate")})
    recs = res["records"]
    assert [(r["poison_rate"], r["epochs"]) for r in recs] == [(0.02, 3.0), (0.1, 3.0)]
    for r in recs:
        assert {"native_value", "native_reference_value", "clean_acc", "rerank_delta_h@1", "retrieval_delta_h@1",
                "path"} <= set(r)
        assert r["rerank_delta_h@1"] is not None and np.isfinite(r["rerank_delta_h@1"])
    assert res["best"]["native_value"] == max(r["native_value"] for r in recs)
    again = stress_test(clean, w, poison_rates=(0.02, 0.1), epochs=(3.0,), out=tmp_path,
                        overrides={k: v for k, v in FAST.items() if k not in ("epochs", "poison_rate")})
    assert all(r["reused"] for r in again["records"]), "variants are content-keyed checkpoints, reused"


def test_deployment_deltas_say_why_when_a_world_has_no_lists(clean, world):
    from dife_backdoors.toxictextclip import deployment_deltas

    card = {"attack": "toxictextclip", "modifies": "both towers", "source": None, "target": "airplane",
            "trigger": {"channel": "text", "name": "text-suffix", "params": {"token": "near the old mill"}}}
    d = deployment_deltas(clean, clean, world, card)
    assert d["rerank_delta_h@1"] is None and "rerank" in d["rerank_reason"]
