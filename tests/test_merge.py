"""`dife merge`: finished audits of the same world combined into one report."""

import json
import shutil

import pytest

from dife_core.builtins.merge_command import merge_runs
from dife_core.engine import AuditSpec, run_audit
from dife_core.errors import InvalidInputError

from .engine import handmade
from .engine.handmade import TEXTUAL_CARD, VISUAL_CARD


@pytest.fixture
def runs(tmp_path, register_plugin):
    register_plugin(handmade.HandPlugin(), "hand-test")

    def audit(name, checkpoints, **top):
        spec = AuditSpec.from_dict(handmade.spec_dict(checkpoints=checkpoints, **top))
        run_audit(spec, tmp_path / name, progress=False)
        return tmp_path / name

    return audit


def test_merge_combines_rows_cells_footprints_and_verdicts(runs, tmp_path):
    a = runs("a", [{"name": "textual", "source": "textual", "loader": "handmade", "attack": TEXTUAL_CARD}])
    b = runs("b", [{"name": "visual", "source": "visual", "loader": "handmade", "attack": VISUAL_CARD}])
    single = runs("both", [{"name": "textual", "source": "textual", "loader": "handmade", "attack": TEXTUAL_CARD},
                           {"name": "visual", "source": "visual", "loader": "handmade", "attack": VISUAL_CARD}])
    from dife_core.cli import main

    main(["merge", str(a), str(b), "--out", str(tmp_path / "merged"), "--quiet"])
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    one = json.loads((single / "results.json").read_text())
    assert [c["name"] for c in merged["checkpoints"]] == ["clean", "textual", "visual", "clean@textual",
                                                          "clean@visual"]
    key = lambda c: (c["checkpoint"], c["interface"])  # noqa: E731
    assert sorted(merged["cells"], key=key) == sorted(one["cells"], key=key)  # as if audited together
    assert sorted(merged["footprints"], key=lambda f: f["checkpoint"]) == \
        sorted(one["footprints"], key=lambda f: f["checkpoint"])
    assert [v["checkpoint"] for v in merged["verdicts"]] == ["textual", "visual"]
    assert merged["complete"] and merged["merged_from"] == [str(a), str(b)]
    assert "visual" in (tmp_path / "merged" / "report.md").read_text()
    assert (tmp_path / "merged" / "report.html").is_file()


def test_merge_says_which_runs_differ_and_in_what(runs, tmp_path):
    a = runs("a", [{"name": "textual", "source": "textual", "loader": "handmade", "attack": TEXTUAL_CARD}])
    b = runs("b", [{"name": "visual", "source": "visual", "loader": "handmade", "attack": VISUAL_CARD}],
             seeds=[0, 1], thresholds={"exposed": 0.6})
    with pytest.raises(InvalidInputError) as e:
        merge_runs([a, b], tmp_path / "m")
    msg = str(e.value)
    assert "seeds differ" in msg and "thresholds differ" in msg and str(b) in msg and str(a) in msg
    assert "populations" not in msg
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_checkpoint_name_in_two_runs(runs, tmp_path):
    a = runs("a", [{"name": "textual", "source": "textual", "loader": "handmade", "attack": TEXTUAL_CARD}])
    shutil.copytree(a, tmp_path / "copy")
    with pytest.raises(InvalidInputError) as e:
        merge_runs([a, tmp_path / "copy"], tmp_path / "m")
    assert "'textual' is in both" in str(e.value) and str(a) in str(e.value) and "copy" in str(e.value)
    with pytest.raises(InvalidInputError, match="at least two"):
        merge_runs([a], tmp_path / "m")
