"""The terminal report fits any width from 80 columns up: every checkpoint,
interface and footprint shown whole, never an ellipsis, no line too long."""

import io

import pytest

from dife_core.report import print_matrix
from dife_core.report.terminal import split_name

from .handmade_results import IFACES, make_results, set_cell


def _render(results, width):
    from rich.console import Console

    c = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_matrix(results, console=c)
    return c.export_text()


def _shown(name, text):
    """Whole, or broken after '-'/'@' into header lines that are each whole."""
    if name in text:
        return True
    lines = split_name(name)
    return lines is not None and all(p in text for p in lines)


@pytest.mark.parametrize("width", [80, 100, 132, 200])
def test_every_checkpoint_interface_and_footprint_fits(width):
    r = make_results()
    text = _render(r, width)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    for ck in r["checkpoints"]:
        assert _shown(ck["name"], text), ck["name"]
    for i in IFACES:
        # the short title comes from the interface record (short_title), whole or broken at spaces
        assert i[2] in text or all(w in text for w in i[2].split()), i[2]
    for f in r["footprints"]:
        assert f["footprint"] in text
    # every figure appears whole: 0.980 exposed, +0.900 relative, N.E.
    for v in ("0.980", "+0.900", "N.E.", "1.000", "0.990"):
        assert v in text
    assert text.index("Verdicts") < text.index("DIFE exposure matrix")  # verdicts first


def test_wide_terminal_keeps_the_classic_matrix():
    text = _render(make_results(), 200)
    assert "clean@contrastive-poisoning  (control)" in text
    assert "a00" in text and "prediction" in text


def test_unbreakable_long_names_become_keys_with_a_legend():
    r = make_results({"a" * 30: "visual", "short": "textual"})
    text = _render(r, 80)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "C1 = " + "a" * 30 in text and "short" in text


def test_straddling_cells_are_marked_with_a_legend():
    r = set_cell(make_results({"v": "visual"}), "v", "zero-shot-classification", value=0.55, ci_low=0.45,
                 ci_high=0.65, straddles=True, status="weak")
    for width in (80, 200):
        text = _render(r, width)
        assert "0.550~" in text and "~ = the cell's confidence interval straddles a threshold" in text


def test_old_records_without_intervals_or_titles_render():
    r = make_results({"v": "visual"}, with_ci=False)
    for i in r["interfaces"]:
        del i["short_title"], i["order"]
    del r["metrics"]
    text = _render(r, 80)
    assert "zero-shot visual classification" in text and "(ts)" in text and "~ =" not in text


def test_titles_and_labels_come_from_the_records():
    r = make_results({"v": "visual"})
    r["interfaces"][0]["short_title"] = "plugin title"
    r["metrics"]["ts"]["label"] = "Target-Success"
    text = _render(r, 200)
    assert "plugin" in text and "Target-Success" in text


def test_report_md_and_html_carry_intervals_and_verdicts_first():
    from dife_core.report.html import render_html
    from dife_core.report.markdown import render_markdown

    r = set_cell(make_results({"v": "visual"}), "v", "zero-shot-classification", value=0.52, ci_low=0.37,
                 ci_high=0.67, straddles=True, n=40, ci_method="wilson")
    md = render_markdown(r)
    assert md.index("## Verdicts") < md.index("## Exposure matrix")
    assert "0.520 [0.370, 0.670] (exposed, straddles)" in md
    assert "## Cell details" in md and "wilson, n = 40" in md
    page = render_html(r, plots=False)
    assert page.index("<h2>Verdicts</h2>") < page.index("<h2>Exposure matrix</h2>")
    assert "[0.370, 0.670]" in page and "straddles" in page and "wilson, n = 40" in page
    # old records: no interval column content, no crash
    old = make_results({"v": "visual"}, with_ci=False)
    assert "[" not in render_markdown(old).split("## Exposure matrix")[1].split("## ")[0].replace("\\[", "")


def test_interfaces_listing_is_one_card_per_block_when_narrow(capsys, monkeypatch):
    from dife_core.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    main(["interfaces"])
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line.rstrip()) for line in out.splitlines()) <= 80
    lines = out.splitlines()
    assert "zero-shot-classification" in lines and "  readout: score" in [ln.rstrip() for ln in lines]
    monkeypatch.setenv("COLUMNS", "200")
    main(["interfaces"])
    wide = capsys.readouterr().out
    assert "…" not in wide and "target event" in wide
