"""Reports: untrusted strings are escaped; report.html renders in headless Chromium."""

import html.parser
import io
import os
import shutil
import subprocess

import pytest

from dife_core.engine import run_audit

from .handmade import TEXTUAL_CARD, VISUAL_CARD, spec_dict

EVIL = "<script>alert('pwned')</script>"
EVIL_ROUTE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def evil_audit(tmp_path, hand):
    d = spec_dict(interfaces=["zero-shot-classification", "prompt-conditioned-classification", "text-reranking"])
    d["checkpoints"] = [
        {"name": EVIL, "source": "textual", "loader": "handmade", "attack": dict(TEXTUAL_CARD, route=EVIL_ROUTE)},
        {"name": "[bold]markup[/bold] $x^2$", "source": "visual", "loader": "handmade", "attack": VISUAL_CARD},
    ]
    res = run_audit(d, tmp_path, progress=False)
    return tmp_path, res


def test_html_and_markdown_escape_untrusted_strings(evil_audit):
    out, res = evil_audit
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;img src=x onerror=" in page  # the card's route, shown as text
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src &#x27;none&#x27;" not in page  # CSP is a literal
    assert 'src="data:image/png;base64,' in page  # plots inline: self-contained
    assert "http://" not in page and "https://" not in page
    md = (out / "report.md").read_text()
    assert "<script" not in md and "&lt;script&gt;" in md


def test_reports_start_with_verdicts(evil_audit):
    import json

    out, res = evil_audit
    stored = json.loads((out / "results.json").read_text())
    assert [v["checkpoint"] for v in stored["verdicts"]] == [EVIL, "[bold]markup[/bold] $x^2$"]
    assert {v["decision"] for v in stored["verdicts"]} <= {"image-tower-only", "text-tower-only", "do-not-deploy"}
    md = (out / "report.md").read_text()
    assert md.index("## Verdicts") < md.index("## Exposure matrix")
    page = (out / "report.html").read_text()
    assert page.index("<h2>Verdicts</h2>") < page.index("<h2>Exposure matrix</h2>")


def test_terminal_table_prints_names_literally(evil_audit):
    from rich.console import Console

    from dife_core.report import print_matrix

    _, res = evil_audit
    console = Console(file=io.StringIO(), width=250, record=True)
    print_matrix(res, console=console)
    text = console.export_text()
    assert "[bold]markup[/bold]" in text and EVIL in text
    assert "N.E." in text and "textual" in text
    narrow = Console(file=io.StringIO(), width=80, record=True)
    print_matrix(res, console=narrow)  # the transposed layout: names as column headers or keys
    small = narrow.export_text()
    assert "…" not in small and "[bold]markup[/bold]" in small


class _Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.in_matrix, self.first_cells, self._row, self._cell = [], False, [], None, None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "table" and a.get("class") == "matrix":
            self.in_matrix = True
        elif tag == "tr" and self.in_matrix:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_matrix = False
        elif tag == "td" and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row:
            self.first_cells.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def require_chromium():
    """Skip without Chromium on a developer machine; fail loudly on CI (``CI`` set),
    where .ci/run installs it: a CI run must not pass by skipping the browser check."""
    if CHROMIUM is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("CI is set but no headless Chromium is installed (chromium, chromium-browser or google-chrome "
                    "on PATH): the report's browser check cannot run. .ci/run installs it with apt-get install -y "
                    "chromium.")
    pytest.skip("no headless Chromium installed (apt-get install chromium); on CI this is a failure")


def test_missing_chromium_fails_on_ci(monkeypatch):
    monkeypatch.setitem(globals(), "CHROMIUM", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but no headless Chromium"):
        require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_chromium()


def test_report_html_opens_in_headless_chromium(evil_audit, tmp_path):
    require_chromium()
    out, res = evil_audit
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"--user-data-dir={tmp_path / 'profile'}", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    p = _Dom()
    p.feed(dom)
    assert "script" not in p.tags  # the evil name never became an element
    rows = p.first_cells
    assert len(rows) == len(res["checkpoints"]) - 1  # audited + control rows (the reference has none)
    assert rows[0][0] == EVIL  # shown as text, exactly
    assert rows[0][1] == "N.E." and rows[0][2].startswith("1.000")  # value, then its interval
