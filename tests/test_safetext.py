"""Hostile strings: no markup parsed, no escape sequence or bidi control
reaches a terminal or a report unmarked, a lone surrogate aborts nothing."""

import csv
import io
import json

import pytest

from dife_core.safetext import html_text, json_dumps, md_text, rich_text, terminal, visible

from .handmade_results import make_results

ANSI = "\x1b[31mred\x1b[0m"
OSC = "\x1b]0;owned\x07"
BIDI = "abc\u202edcba\u2066x\u2069\u200f\u061c"
SURROGATE = "bad\ud800name"
MARKUP = "[/x][bold]b[/bold] :smile:"
HOSTILE = [ANSI, OSC, BIDI, SURROGATE, MARKUP, "line\nbreak\r", "a|b`c*d_e[f]g<h>", "\x9b31m", "del\x7f"]
INVISIBLE = [chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0), 0x202a, 0x202b, 0x202c, 0x202d, 0x202e,
                              0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c, 0xd800, 0xdfff, 0x2028)]


def test_terminal_escapes_controls_bidi_and_surrogates():
    assert terminal("plain name-1.0") == "plain name-1.0"
    assert terminal(ANSI) == "\\x1b[31mred\\x1b[0m"
    assert terminal(OSC) == "\\x1b]0;owned\\x07"
    assert terminal("a\u202eb") == "a<U+202E>b"
    assert terminal(SURROGATE) == "bad<U+D800>name"
    assert terminal("é ü 日本 Δ") == "é ü 日本 Δ"  # ordinary text is left alone
    for ch in INVISIBLE:
        assert ch not in visible(f"x{ch}y"), repr(ch)


def test_rich_text_never_parses_markup():
    from rich.console import Console

    c = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    for s in HOSTILE:
        c.print(rich_text(s))  # `[/x]` raised MarkupError when parsed as markup
    out = c.export_text()
    assert "[/x][bold]b[/bold] :smile:" in out and "\x1b" not in out and "\u202e" not in out


def test_html_text_escapes_and_shows_bidi():
    assert html_text('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert html_text("a\u202eb") == "a&lt;U+202E&gt;b"
    for ch in INVISIBLE:
        assert ch not in html_text(f"x{ch}y")


def _unescaped_pipes(row: str) -> int:
    n, i = 0, 0
    while i < len(row):
        if row[i] == "\\":
            i += 2  # a backslash escapes the next character
            continue
        n += row[i] == "|"
        i += 1
    return n


def test_md_text_cannot_break_a_table():
    for s in HOSTILE + ["|||", "\\|", "x\\"]:
        cell = md_text(s)
        assert _unescaped_pipes(f"| {cell} | next |") == 3, (s, cell)  # the row's own three
        assert "\n" not in cell and "\r" not in cell and "<" not in cell and ">" not in cell
        assert "\u202e" not in cell and "\ud800" not in cell
    assert md_text("*a* _b_ `c` [d](e)") == "\\*a\\* \\_b\\_ \\`c\\` \\[d\\](e)"


def test_json_dumps_survives_lone_surrogates():
    obj = {"name": SURROGATE, "nested": [{"k\udfff": "v"}]}
    text = json_dumps(obj)
    text.encode("utf-8")  # the write that used to abort
    assert json.loads(text) == obj


def _hostile_results():
    r = make_results({"visual-ckpt": "visual", "textual-ckpt": "textual"})
    names = {"visual-ckpt": ANSI + OSC + MARKUP, "textual-ckpt": BIDI + SURROGATE}
    for ck in r["checkpoints"]:
        for old, new in names.items():
            ck["name"] = ck["name"].replace(old, new)
            ck["control_of"] = ck["control_of"].replace(old, new) if ck["control_of"] else None
    for group in (r["cells"], r["footprints"], r["controls"]):
        for x in group:
            for old, new in names.items():
                x["checkpoint"] = x["checkpoint"].replace(old, new)
                if x.get("control_of"):
                    x["control_of"] = x["control_of"].replace(old, new)
    r["cells"][0]["reason"] = "reason " + OSC + "\u202e"
    r["interfaces"][0]["short_title"] = "[/x] " + ANSI
    r["metrics"]["ts"]["label"] = "T\u202eS"
    return r


@pytest.mark.parametrize("width", [80, 200])
def test_terminal_report_of_hostile_names(width):
    from rich.console import Console

    from dife_core.report import print_matrix

    c = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    print_matrix(_hostile_results(), console=c)
    out = c.export_text()
    for bad in ("\x1b", "\x07", "\u202e", "\u2066", "\ud800"):
        assert bad not in out
    assert "\\x1b" in out and "<U+202E>" in out


def test_markdown_and_html_reports_of_hostile_names():
    from dife_core.report.html import render_html
    from dife_core.report.markdown import render_markdown

    r = _hostile_results()
    for text in (render_markdown(r), render_html(r, plots=False)):
        text.encode("utf-8")
        for bad in ("\x1b", "\x07", "\u202e", "\u2066", "\ud800", "[/x] \x1b"):
            assert bad not in text
        assert "U+202E" in text


def test_exports_of_hostile_names():
    from dife_core.report.export import to_csv, to_jsonl

    r = _hostile_results()
    r["checkpoints"][0]["name"] = "=HYPERLINK(1)"
    for c in r["cells"]:
        if c["checkpoint"] == r["cells"][0]["checkpoint"]:
            c["checkpoint"] = "=HYPERLINK(1)"
    text = to_csv(r)
    text.encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["checkpoint"] == "'=HYPERLINK(1)"  # a spreadsheet does not run it
    for line in to_jsonl(r).splitlines():
        json.loads(line.encode("utf-8"))


def test_listings_show_plugin_strings_literally(register_plugin, capsys, monkeypatch):
    from dife_core import hookimpl
    from dife_core.cli import main
    from dife_core.types import Trigger

    class Hostile:
        @hookimpl
        def register_triggers(self, register):
            register(Trigger(name="hostile-trigger", channel="image", description=MARKUP + OSC + BIDI,
                             make=lambda **k: (lambda x, **kw: x)))

    register_plugin(Hostile(), "hostile")
    for width in ("80", "200"):
        monkeypatch.setenv("COLUMNS", width)
        main(["triggers"])
        out = capsys.readouterr().out
        assert "[/x][bold]b[/bold]" in out and "\x1b" not in out and "\u202e" not in out
        assert "\\x1b]0;owned\\x07" in out
