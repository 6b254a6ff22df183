"""Several seeds: every population and trigger draw per seed, mean ± std in the results."""

import pytest

from dife_core.engine import run_audit
from dife_core.errors import InvalidInputError

from .handmade import BUILTIN_IDS, spec_dict


def test_seeds_give_mean_std_and_per_seed_values(tmp_path, hand):
    res = run_audit(spec_dict(seeds=[0, 1, 2], interfaces=list(BUILTIN_IDS)), tmp_path, progress=False)
    assert res["seeds"] == [0, 1, 2] and res["complete"]
    measured = [c for c in res["cells"] if c["status"] not in ("n.e.", "error")]
    assert measured
    for c in measured:
        per = c["per_seed"]
        assert sorted(per) == ["0", "1", "2"]
        assert c["value"] == pytest.approx(sum(per.values()) / 3)
        assert c["std"] is not None and c["std"] >= 0
    # one cell per (checkpoint, interface), not one per seed
    keys = [(c["checkpoint"], c["interface"]) for c in res["cells"]]
    assert len(keys) == len(set(keys))
    assert all("per_seed" in f for f in res["footprints"])


def test_seeds_are_checked(hand):
    from dife_core.engine.spec import AuditSpec

    for bad in ([], [1, 1], ["a"], [-1]):
        with pytest.raises(InvalidInputError, match="seeds"):
            AuditSpec.from_dict(spec_dict(seeds=bad))
    d = spec_dict(seeds=[3, 4])
    with pytest.raises(InvalidInputError, match="either seed or seeds"):
        AuditSpec.from_dict(d)  # seed = 0 and seeds = [3, 4] disagree
    del d["seed"]
    spec = AuditSpec.from_dict(d)
    assert spec.seed_list == (3, 4) and AuditSpec.from_dict(spec.to_dict()).seed_list == (3, 4)
