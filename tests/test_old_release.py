"""A checkpoint written by an earlier release (before typed attack cards and the
one cell API) loads and audits to identical cell values.

The fixture (tests/fixtures/old-release) was made by
tests/fixtures/make_old_release.py running release b0c2803's code: a clean and
a ContrastivePoisoning tiny CLIP on the easy test world, plus the cell values
and footprint that release measured. Its manifest carries the old free-text
card (``modifies = "both towers"``, no native interface).
"""

import json
import shutil
from pathlib import Path

from dife_core.checkpoint import read_manifest

FIXTURE = Path(__file__).parent / "fixtures" / "old-release"


def test_old_manifest_reads_as_a_typed_card():
    from dife_core.cards import AttackCard

    raw = read_manifest(FIXTURE / "contrastive-poisoning")["attack"]
    assert raw["modifies"] == "both towers" and "interface" not in raw["native"]
    card = AttackCard.from_dict(raw)
    assert card.problems() == [] and card.modifies == {"visual", "text"}


def test_old_checkpoints_audit_to_identical_values(tmp_path, register_plugin):
    import sys

    sys.path.insert(0, str(FIXTURE.parent))
    try:
        from make_old_release import EasyWorld, spec
    finally:
        sys.path.pop(0)
    from dife_core.engine import run_audit

    register_plugin(EasyWorld(), "easy-fixture")
    folder = tmp_path / "fixture"
    shutil.copytree(FIXTURE, folder)
    expected = json.loads((FIXTURE / "expected.json").read_text())
    res = run_audit(spec(folder), tmp_path / "audit", progress=False, show_matrix=False)
    got = {f"{c['checkpoint']}|{c['interface']}": c for c in res["cells"]}
    for key, old in expected["cells"].items():
        assert got[key]["status"] == old["status"], key
        assert got[key]["value"] == old["value"], key  # identical, not approximately
    fp = next(f for f in res["footprints"] if f["checkpoint"] == "contrastive-poisoning")
    old = expected["footprints"]["contrastive-poisoning"]
    assert {k: fp[k] for k in old} == old
