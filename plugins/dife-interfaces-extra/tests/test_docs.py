"""docs/interfaces.md documents every extra card: its metric, each option with its default."""

from pathlib import Path

import pytest

from dife_core.plugins import get_registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "interfaces.md"
EXTRA = ("clip-score-filtering", "clipscore-caption-eval", "image-knn-retrieval", "text-semantic-search",
         "knn-classifier")


@pytest.mark.skipif(not DOC.is_file(), reason="run from the repository (docs/ not installed with the plugin)")
@pytest.mark.parametrize("name", EXTRA)
def test_every_extra_card_is_documented(name):
    text = DOC.read_text()
    assert f"## {name}\n" in text
    section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    card = get_registry().get("interfaces", name).card
    assert f"`{card.metric}`" in section
    for m in card.extra_metrics:
        assert f"`{m}`" in section, m
    for opt, default in card.options.items():
        shown = f'"{default}"' if isinstance(default, str) else f"{default}"
        assert f"`{opt} = {shown}`" in section, (opt, shown)
    for word in ("**N.E.**", "**prediction**", "**readout**"):
        assert word in section
