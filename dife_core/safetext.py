"""Untrusted strings, rendered safely for each output.

Checkpoint, attack, caption and plugin strings are data. On their way to an
output they pass through exactly one of these functions:

* :func:`terminal` (or :func:`rich_text`) for the terminal: no rich markup
  is ever parsed (build :class:`rich.text.Text` objects, never f-string
  markup), and control characters, ANSI/OSC escapes, bidi overrides and
  lone surrogates are shown escaped (``\\x1b``, ``<U+202E>``) so a name
  cannot move the cursor, retitle the window or reorder what is shown.
* :func:`html_text` for HTML: escaped, with the same invisible characters
  made visible.
* :func:`md_text` for Markdown: escaped so a name cannot break a table,
  start emphasis or a link, or smuggle HTML.
* :func:`json_dumps` for JSON files: a lone surrogate (which UTF-8 cannot
  encode) is written as its ``\\udXXX`` escape instead of aborting the write.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata

# bidi embedding/override/isolate controls and marks: they reorder text on screen
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _needs_escape(ch: str) -> bool:
    if ch in BIDI:
        return True
    # Cc: C0/C1 controls and DEL (ESC starts ANSI/OSC sequences); Cs: lone
    # surrogates; Cf: invisible format characters; Zl/Zp: line breaks
    return unicodedata.category(ch) in ("Cc", "Cs", "Cf", "Zl", "Zp")


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    return f"<U+{o:04X}>"


def visible(s) -> str:
    """``s`` with every control, escape, bidi, invisible-format character and
    lone surrogate replaced by a visible escape; everything else unchanged."""
    s = "" if s is None else str(s)
    if s.isascii() and s.isprintable():  # the common case
        return s
    return "".join(_escape_char(ch) if _needs_escape(ch) else ch for ch in s)


def terminal(s) -> str:
    """A plain string safe to print to a terminal (pair with :func:`rich_text`
    or ``click.echo``; never pass it to rich as markup)."""
    return visible(s)


def rich_text(s, style: str = "") -> "object":
    """A :class:`rich.text.Text` of the untrusted ``s``: markup is never parsed."""
    from rich.text import Text

    return Text(visible(s), style=style)


def html_text(s) -> str:
    """HTML-escaped text (quotes too, so it is safe in attributes), invisible
    characters shown as ``<U+XXXX>`` / ``\\xNN``."""
    return html.escape(visible(s), quote=True)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>#~])")


def md_text(s) -> str:
    """Markdown-escaped text for a table cell or a line: ``|`` cannot end a
    cell, ``*_`[]`` cannot start emphasis, code or links, ``<>`` cannot open
    HTML, newlines cannot end a row; invisible characters made visible."""
    s = visible("" if s is None else str(s).replace("\r\n", "\n").replace("\n", " ").replace("\r", " "))
    s = s.replace("&", "&amp;")
    s = _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m.group(1), "\\" + m.group(1)), s)
    return s


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def json_dumps(obj, **kw) -> str:
    """``json.dumps`` (``ensure_ascii=False``, ``allow_nan=False`` by default)
    whose output always encodes as UTF-8: a lone surrogate in a string is
    written as its ``\\udXXX`` escape, which JSON readers turn back into the
    same string."""
    kw.setdefault("ensure_ascii", False)
    kw.setdefault("allow_nan", False)
    text = json.dumps(obj, **kw)
    # in json.dumps output a raw surrogate can only stand inside a string literal
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


__all__ = ["BIDI", "visible", "terminal", "rich_text", "html_text", "md_text", "json_dumps"]
