"""A plugin interface with its own metric: its column title and metric label
(from its card and its registered metric) appear in the terminal table,
report.md and report.html, and so do its extra metrics and notes."""

import io
from html import unescape

from dife_core import hookimpl
from dife_core.engine import run_audit
from dife_core.types import Interface, InterfaceCard, Metric

from .handmade import BUILTIN_IDS, spec_dict


class _Plugin:
    @hookimpl
    def register_metrics(self, register):
        register(Metric(name="wobble_rate", label="Wobble↑", formula="share of wobbling items",
                        compute=lambda x: float(x)))
        register(Metric(name="wobble_extra", label="Extra wobble", formula="another figure", compute=lambda x: x))

    @hookimpl
    def register_interfaces(self, register):
        def evaluate(ctx):
            from dife_core.engine.cells import CellResult

            return CellResult(value=0.75, baseline=0.1, metrics={"wobble_rate": 0.75, "wobble_extra": 0.4321},
                              notes="wobbled through the plugin's own head")

        register(Interface(card=InterfaceCard(
            name="wobble-check", title="wobble check (plugin)", short_title="wobble col", readout="score",
            trigger_channels=("image", "text"), target_event="the target wobbles", population="classification",
            reference=None, metric="wobble_rate", extra_metrics=("wobble_extra",), order=500), evaluate=evaluate))


def test_plugin_metric_label_and_title_in_every_format(tmp_path, hand, register_plugin):
    from rich.console import Console

    from dife_core.report import print_matrix

    register_plugin(_Plugin(), "wobble")
    res = run_audit(spec_dict(interfaces=[*BUILTIN_IDS, "wobble-check"]), tmp_path, progress=False)
    assert res["metrics"]["wobble_rate"]["label"] == "Wobble↑"
    buf = io.StringIO()
    print_matrix(res, console=Console(file=buf, width=200, record=True))
    term = buf.getvalue()
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    html = unescape((tmp_path / "report.html").read_text(encoding="utf-8"))
    # the terminal wraps column titles at words ("wobble" over "col")
    assert "wobble " in term and " col " in term and "Wobble↑" in term
    for text, where in ((md, "report.md"), (html, "report.html")):
        assert "wobble col" in text, where
        assert "Wobble↑" in text, where
    for text, where in ((md, "report.md"), (html, "report.html")):
        assert "Extra wobble" in text and "0.4321" in text, where
        assert "wobbled through the plugin's own head" in text, where
