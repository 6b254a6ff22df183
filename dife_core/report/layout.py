"""Fitting tables into the terminal's width without cutting anything.

Rich shrinks a table that is too wide by wrapping and ellipsising its cells
(``0.0…``, ``zero-…``). Instead each report offers several layouts, widest
first; :func:`first_fitting` measures each one's natural width and prints
the first that fits, so a number or a name is never cut. Every string
shown is a :class:`rich.text.Text` (no markup parsed).
"""

from __future__ import annotations

import io
from typing import Callable, Iterable, Sequence


def natural_width(renderable) -> int:
    """Columns ``renderable`` takes when nothing constrains it."""
    from rich.cells import cell_len
    from rich.console import Console

    c = Console(file=io.StringIO(), width=100_000, color_system=None, force_terminal=False, legacy_windows=False)
    with c.capture() as cap:
        c.print(renderable)
    return max((cell_len(line.rstrip()) for line in cap.get().splitlines()), default=0)


def fits(renderables: Sequence, width: int) -> bool:
    """Every table (not plain text, which wraps at words) fits ``width``."""
    from rich.text import Text

    return all(natural_width(r) <= width for r in renderables if not isinstance(r, Text))


def first_fitting(width: int, layouts: Iterable[Callable[[], list]]) -> list:
    """The renderables of the first layout (a thunk returning a list) that
    fits ``width``; the last layout is used when none does."""
    chosen = []
    for make in layouts:
        chosen = make()
        if fits(chosen, width):
            return chosen
    return chosen


def wrap_words(s: str, width: int) -> str:
    """Greedy word wrap (lines joined with newlines); a word longer than
    ``width`` stays whole on its own line."""
    lines, cur = [], ""
    for w in s.split():
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return "\n".join(lines)


def table(title, columns: Sequence, rows: Sequence, *, box_style=None, justify: Sequence = ()):
    """A rich table of Text cells; ``columns``/``rows`` hold Text or plain
    strings (plain strings become Text, never markup)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def T(x):
        return x if isinstance(x, Text) else Text("" if x is None else str(x))

    t = Table(title=T(title) if title is not None else None, box=box_style or box.SIMPLE_HEAD, show_lines=False)
    for n, c in enumerate(columns):
        t.add_column(T(c), justify=(justify[n] if n < len(justify) else "left"), overflow="fold")
    for r in rows:
        if r is None:
            t.add_section()
        else:
            t.add_row(*[T(x) for x in r])
    return t


def keys(prefix: str, n: int) -> list:
    return [f"{prefix}{i + 1}" for i in range(n)]


def card_blocks(title: str, records: list, columns: Sequence, fmt: Callable) -> list:
    """One block per record: its first column as a heading, then one
    ``field: value`` line per other column (values wrap at word boundaries)."""
    from rich.padding import Padding
    from rich.text import Text

    out = [Text(title, style="bold")]
    for r in records:
        out.append(Text(""))
        out.append(Text(str(fmt(r.get(columns[0]))), style="bold"))
        for c in columns[1:]:
            v = fmt(r.get(c))
            if v in (None, ""):
                continue
            line = Text(c.replace("_", " ") + ": ", style="dim")
            line.append(str(v))
            out.append(Padding(line, (0, 0, 0, 2), expand=False))
    return out
