"""docs/models.md "Write a model loader" runs as written: the plain-torch dual
encoder is registered, loaded, branch-swapped, saved, reloaded and audited."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
PLUGIN_NAME = "tiny-torch-plugin"  # the name the doc registers its plugin object under


def section_blocks(path: Path, heading: str, lang: str) -> list:
    text = path.read_text()
    body = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", body, flags=re.S)


@pytest.fixture
def doc_loader(tmp_path, monkeypatch):
    """Run the section's Python blocks in one namespace (in a scratch folder),
    and unregister the plugin they register afterwards."""
    from dife_core.plugins import get_registry

    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "docs_models_example"}
    try:
        for i, code in enumerate(section_blocks(DOC, "## Write a model loader", "python")):
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), ns)
        yield ns
    finally:
        if get_registry().owner("model_loaders", "tiny-torch") == PLUGIN_NAME:
            get_registry().unregister_object(PLUGIN_NAME)


def test_the_section_has_the_loader_and_its_use():
    blocks = section_blocks(DOC, "## Write a model loader", "python")
    assert len(blocks) == 2
    assert "class TinyDualEncoder(DualEncoder)" in blocks[0] and "recombine(" in blocks[1]
    (toml,) = section_blocks(DOC, "## Write a model loader", "toml")
    assert 'loader = "tiny-torch"' in toml


def test_loader_example_loads_swaps_and_round_trips(doc_loader):
    from dife_core.errors import InvalidInputError
    from dife_core.loading import load_model

    clean, poisoned, again = doc_loader["clean"], doc_loader["poisoned"], doc_loader["again"]
    assert clean.loader == poisoned.loader == again.loader == "tiny-torch"
    assert clean.fingerprint() != poisoned.fingerprint()
    assert set(clean.visual_param_names) == {"visual.1.weight", "visual.1.bias"}
    assert set(clean.text_param_names) == {"text.weight"}
    # the manifest is untrusted: a huge dim is refused before anything is allocated
    import json

    manifest = Path("tiny-ckpt") / "dife.json"
    data = json.loads(manifest.read_text())
    data["architecture"]["dim"] = 10**9
    manifest.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="dim"):
        load_model("tiny-ckpt")
    with pytest.raises(InvalidInputError, match="unknown loader options"):
        load_model("tiny-torch:0", colour="red")


def test_loader_example_audits_on_the_hand_made_world(doc_loader, tmp_path, register_plugin):
    from dife_core.engine import run_audit

    from .engine import handmade

    register_plugin(handmade.HandPlugin(), "hand-docs")  # the world and its triggers
    spec = {
        "seed": 0, "batch_size": 8,
        "populations": {"dataset": "handworld", "options": {"n": 6, "seed": 0}},
        "clean": {"name": "clean", "source": "tiny-torch:0", "loader": "tiny-torch"},
        "checkpoints": [{"name": "tiny-1", "source": "tiny-torch:1", "loader": "tiny-torch",
                         "attack": handmade.TEXTUAL_CARD}],
    }
    res = run_audit(spec, tmp_path / "out", progress=False)
    loaders = {c["name"]: c["loader"] for c in res["checkpoints"]}
    assert loaders["clean"] == loaders["tiny-1"] == "tiny-torch"
    cells = [c for c in res["cells"] if c["checkpoint"] == "tiny-1"]
    assert cells and all(c["status"] in ("exposed", "weak", "negative", "n.e.") for c in cells), cells
    (fp,) = [f for f in res["footprints"] if f["checkpoint"] == "tiny-1"]
    assert all(isinstance(fp[k], float) for k in ("a00", "a10", "a01", "a11"))
    assert fp["footprint"] in ("visual", "textual", "coupled", "weak")
    # every measured cell got its own branch swap of the doc's encoder
    measured = {c["interface"] for c in cells if c["status"] != "n.e."}
    assert measured and measured <= set(fp["per_interface"]), (measured, fp["per_interface"])


# -- docs stand alone ---------------------------------------------------------------------------

ROOT = DOC.parents[1]
OUTSIDE = re.compile(r"DESIGN\.md|DESIGN order|REFERENCE\.md|NOTES-wave|\.\./shared")
#: files that still point outside the repository, owned by others at the time of writing:
#: delete each entry as its file is fixed (the test fails on any file not listed here)
PENDING: set = set()


def test_nothing_points_outside_the_repository():
    """Docs, code and examples explain DIFE in their own words: no design notes,
    reference files or sibling folders that a clone does not have."""
    offenders = set()
    for base in ("docs", "dife_core", "plugins", "contrib", "examples", "benchmarks", "tests"):
        for f in (ROOT / base).rglob("*"):
            if f.suffix not in (".md", ".py", ".toml") or ".egg-info" in str(f) or f == Path(__file__):
                continue
            if OUTSIDE.search(f.read_text(errors="replace")):
                offenders.add(str(f.relative_to(ROOT)))
    for f in ("README.md", "pyproject.toml", "Makefile"):
        if OUTSIDE.search((ROOT / f).read_text()):
            offenders.add(f)
    assert offenders <= PENDING, sorted(offenders - PENDING)
