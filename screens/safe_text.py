"""What screens show of text from outside (notes, labels, units, operator names, deviation
text): Rich markup escaped, and no raw control or bidi-override character (an ESC sequence
in a note must not clear or recolour the operator's terminal; eln.text_safety)."""

from __future__ import annotations

from rich.markup import escape as _escape_markup

from bptwin.eln.text_safety import terminal_safe


def escape(text: str) -> str:
    """``text`` safe to put into a widget: markup escaped, control characters made visible."""
    return _escape_markup(terminal_safe(text))
