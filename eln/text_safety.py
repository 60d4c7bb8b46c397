"""Text from outside (notes, labels, units, operator names, deviation text) made safe for the
reader it is written to: a terminal, a spreadsheet, a Markdown or HTML report.

The notebook stores such text verbatim (it is data); the writers neutralise it on the way out:

* :func:`terminal_safe`: control characters (C0 except newline and tab, DEL, C1, so an ESC
  sequence that clears or recolours the screen) and the bidirectional overrides and isolates
  that make text display in another order than it is stored (U+202A-U+202E, U+2066-U+2069,
  U+200E, U+200F, U+061C) are replaced by a visible escape such as ``\\x1b`` or ``\\u202e``.
* :func:`spreadsheet_safe`: also a text cell that a spreadsheet would run as a formula
  (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, as OWASP advises for
  CSV injection) gets a leading single quote. Numbers are not text cells and are left alone.
* :func:`markdown_safe`: terminal-safe, and the characters that would end a table cell or
  start markup (``|``, a newline, ``<``) are escaped.

Nothing here imports beyond the standard library: screens, the CLI and the exporters use it.
"""

from __future__ import annotations

import re
from typing import Any

# Bidirectional controls: embeddings/overrides, isolates, marks, the Arabic letter mark.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_UNSAFE_KEEPING_NOTHING = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A cell that is just a number (a value the exporter formatted as text, "-0.5") is no formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def has_unsafe_characters(text: str) -> bool:
    """True when ``text`` holds a control or bidirectional-override character."""
    return _UNSAFE_KEEPING_NOTHING.search(text) is not None


def terminal_safe(text: Any, *, single_line: bool = False) -> str:
    """``text`` with control and bidi-override characters shown as escapes, never raw.

    Newlines and tabs stay unless ``single_line`` (a table cell, a status line).
    """
    text = "" if text is None else str(text)
    pattern = _UNSAFE_KEEPING_NOTHING if single_line else _UNSAFE
    return pattern.sub(_escape, text)


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula and no terminal obeys.

    Non-text values (numbers, booleans, None) are returned unchanged: ``-0.5`` written as a
    number stays a number.
    """
    if not isinstance(value, str):
        return value
    formula = value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value)
    quoted = "'" + value if formula else value
    return terminal_safe(quoted)


def markdown_safe(text: Any) -> str:
    """Text for a Markdown report line or table cell: no raw control characters, no cell
    breaks, no HTML tags."""
    flat = " ".join(("" if text is None else str(text)).splitlines())
    safe = terminal_safe(flat, single_line=True)
    return safe.replace("|", "\\|").replace("<", "&lt;")
