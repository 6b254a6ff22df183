"""The specs under examples/ stay valid (the README and docs point at them)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from dife_core.cli import build_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


SUITES = ["default", "default-test", "paper"]


def test_demo_suites_are_the_example_folders():
    from dife_core.demo import suites

    assert set(SUITES) <= set(suites(EXAMPLES))


@pytest.mark.parametrize("suite", SUITES)
def test_build_spec_checks(suite):
    r = CliRunner().invoke(build_cli(), ["build", str(EXAMPLES / suite / "build.toml"), "--check"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("suite", SUITES)
def test_audit_spec_names_the_built_checkpoints(suite):
    import tomllib

    from dife_core.engine.spec import load_spec

    spec = load_spec(EXAMPLES / suite / "audit.toml")
    built = [a.get("name", a["attack"])
             for a in tomllib.loads((EXAMPLES / suite / "build.toml").read_text())["attacks"]]
    assert [c.name for c in spec.checkpoints] == built
    assert spec.clean is not None and spec.populations.dataset == "shapes"
