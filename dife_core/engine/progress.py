"""Progress bars for long steps (rich), or nothing when disabled."""

from __future__ import annotations

import contextlib


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class Progress:
    """``with Progress(enabled) as p: with p.task("encode", total) as t: t.advance(n)``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._rich = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn)

            self._rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False)
            self._rich.start()
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        return False

    @contextlib.contextmanager
    def task(self, description: str, total: int, *, keep: bool = False):
        if self._rich is None:
            yield _NullTask()
            return
        rp = self._rich
        tid = rp.add_task(description, total=total)

        class _Task:
            def advance(self, n: int = 1) -> None:
                rp.advance(tid, n)

            def describe(self, text: str) -> None:
                rp.update(tid, description=text)

        try:
            yield _Task()
        finally:
            if keep:
                rp.update(tid, completed=total)
            else:
                rp.remove_task(tid)
