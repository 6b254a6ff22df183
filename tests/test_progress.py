"""One progress reporter for training, builds, the embedding service and the engine."""

import io

from rich.console import Console

from dife_core.progress import NULL, Progress, as_progress


def test_tasks_draw_and_names_are_never_markup():
    buf = io.StringIO()
    p = Progress(True, console=Console(file=buf, force_terminal=False, width=100))
    with p:
        with p.task("encode [bold]x[/bold] \x1b]8;;evil", 4, keep=True) as t:
            t.advance(2)
            t.describe("a name with [/x] markup")
            t.advance(2)
    out = buf.getvalue()
    assert "[/x]" in out  # printed as text, not parsed (a MarkupError would have raised)
    assert "\x1b]8" not in out  # the escape is shown escaped, never sent to the terminal


def test_callable_form_is_what_builders_receive():
    p = Progress(True, console=Console(file=io.StringIO()))
    with p("build", 3) as t:  # no outer `with`: the display starts and stops with the task
        t.advance(3)
    assert p._rich is None


def test_disabled_reporter_is_silent_and_shared():
    with NULL.task("x", 2) as t:
        t.advance()
        t.update(1, status="s")
    assert as_progress(False).enabled is False and as_progress(p := Progress(True)) is p


def test_training_and_building_use_it():
    from dife_core import building, training
    from dife_core.engine import runner

    assert isinstance(building.rich_progress(), Progress)
    assert runner.Progress is Progress
    assert training._progress(False, "x", 3) is None
