"""The one progress reporter: rich bars on stderr, or nothing.

Training, attack builds, the embedding service and the audit engine all
report through :class:`Progress`::

    with Progress(enabled) as p:
        with p.task("encode pool", total) as t:
            t.advance(n)

A Progress is also callable as ``progress(description, total)`` -- the form
an attack builder receives in ``BuildContext.progress``. The display starts
with the first task and stops when the last one ends, so a reporter works
with or without its own ``with`` block. Descriptions are plain text (never
rich markup): names from checkpoints cannot restyle the terminal.
"""

from __future__ import annotations

import contextlib
from typing import Optional


class Task:
    """One bar: ``advance(n)``, ``describe(text)``, ``update(completed, **fields)``."""

    def __init__(self, rich=None, tid=None):
        self._rich, self._tid = rich, tid

    def advance(self, n: int = 1) -> None:
        if self._rich is not None:
            self._rich.advance(self._tid, n)

    def describe(self, text: str) -> None:
        if self._rich is not None:
            self._rich.update(self._tid, description=_plain(text))

    def update(self, completed: Optional[int] = None, **fields) -> None:
        if self._rich is not None:
            kw = {"completed": completed} if completed is not None else {}
            self._rich.update(self._tid, **kw, **fields)


def _plain(text: str) -> str:
    from .safetext import terminal

    return terminal(str(text))


class Progress:
    """See the module docstring. ``Progress(False)`` shows nothing."""

    def __init__(self, enabled: bool = True, *, console=None, transient: bool = False):
        self.enabled = bool(enabled)
        self._console = console
        self._transient = transient
        self._rich = None
        self._depth = 0  # open `with` blocks and tasks keeping the display alive

    # -- display lifetime -----------------------------------------------------------
    def _start(self) -> None:
        if not self.enabled:
            return
        if self._rich is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[status]}", markup=False),
                                      TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=self._console or Console(stderr=True), transient=self._transient)
            self._rich.start()
        self._depth += 1

    def _stop(self) -> None:
        if self._rich is None:
            return
        self._depth -= 1
        if self._depth <= 0:
            self._rich.stop()
            self._rich = None
            self._depth = 0

    def __enter__(self):
        self._start()
        return self

    def __exit__(self, *exc):
        self._stop()
        return False

    # -- tasks --------------------------------------------------------------------------
    @contextlib.contextmanager
    def task(self, description: str, total: Optional[int] = None, *, keep: bool = False):
        if not self.enabled:
            yield Task()
            return
        self._start()
        rp = self._rich
        tid = rp.add_task(_plain(description), total=total, status="")
        try:
            yield Task(rp, tid)
        finally:
            if keep and total is not None:
                rp.update(tid, completed=total)
            elif not keep:
                rp.remove_task(tid)
            self._stop()

    def __call__(self, description: str, total: Optional[int] = None):
        """``progress(description, total)``: the builder-facing form of :meth:`task`."""
        return self.task(description, total)


#: a reporter that shows nothing (tests, quiet runs)
NULL = Progress(False)


def as_progress(progress) -> Progress:
    """A :class:`Progress` from a Progress, a bool or None."""
    if isinstance(progress, Progress):
        return progress
    return Progress(bool(progress))


__all__ = ["Progress", "Task", "NULL", "as_progress"]
