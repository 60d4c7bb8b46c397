"""The dashboard's table of current values: a header and one line per channel, drawn directly.

A DataTable renders every visible cell again through Rich whenever any cell changes, and with
a new value in most rows every second that was most of the dashboard's refresh. This table keeps
each row as a finished line (a Strip) and draws again only the rows whose text changed; it has
no cursor, as nothing is chosen in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

CELL_PADDING = 1  # blank columns either side of a cell, as in a DataTable


@dataclass(frozen=True, slots=True)
class ValueColumn:
    key: str
    label: str
    width: int


class ValueTable(ScrollView, can_focus=False):
    """Rows of text cells under a bold header, every other row striped; a cell may carry a
    Rich style (e.g. ``yellow`` for a stale value)."""

    COMPONENT_CLASSES = {"value-table--header", "value-table--even-row"}
    DEFAULT_CSS = """
    ValueTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .value-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .value-table--even-row { background: $surface-lighten-1 50%; }
        &:dark > .value-table--even-row { background: $surface-darken-1 40%; }
    }
    """

    def __init__(self, columns: Sequence[ValueColumn], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._rows: dict[str, dict[str, tuple[str, str]]] = {}
        self._order: list[str] = []
        self._lines: dict[tuple[str, int, Style], Strip] = {}
        self._set_virtual_size()

    def _set_virtual_size(self) -> None:
        width = sum(column.width + 2 * CELL_PADDING for column in self.columns)
        self.virtual_size = Size(width, len(self._order) + 1)

    # ---- content -------------------------------------------------------------------------

    def add_row(self, key: str, cells: Sequence[str]) -> None:
        self._rows[key] = {
            column.key: (text, "") for column, text in zip(self.columns, cells, strict=True)
        }
        self._order.append(key)
        self._set_virtual_size()
        self.refresh()

    def set_cell(self, row: str, column: str, text: str, style: str = "") -> None:
        """Show ``text`` in a cell; a row is drawn again only when one of its cells changed."""
        cells = self._rows[row]
        if cells[column] == (text, style):
            return
        cells[column] = (text, style)
        self._forget(row)
        self.refresh_line(self._order.index(row) + 1)  # below the header

    def cell(self, row: str, column: str) -> str:
        """The text shown in a cell."""
        return self._rows[row][column][0]

    @property
    def row_count(self) -> int:
        return len(self._order)

    def _forget(self, row: str) -> None:
        for key in [key for key in self._lines if key[0] == row]:
            del self._lines[key]

    # ---- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header stays on top, the rows scroll under it."""
        width = self.size.width
        left = self.scroll_offset.x
        base = self.rich_style
        if y == 0:
            header = base + self.get_component_rich_style("value-table--header")
            cells = [(column.label, "") for column in self.columns]
            return self._draw(cells, header, width + left).crop(left, left + width)
        index = y - 1 + self.scroll_offset.y
        if index >= len(self._order):
            return Strip.blank(width, base)
        row = self._order[index]
        style = base
        if index % 2 == 0:
            style += self.get_component_rich_style("value-table--even-row")
        key = (row, width + left, style)
        line = self._lines.get(key)
        if line is None:
            cells = [self._rows[row][column.key] for column in self.columns]
            line = self._lines[key] = self._draw(cells, style, width + left)
        return line.crop(left, left + width)

    def _draw(self, cells: Sequence[tuple[str, str]], style: Style, width: int) -> Strip:
        pad = " " * CELL_PADDING
        segments = []
        for column, (text, cell_style) in zip(self.columns, cells, strict=True):
            shown = set_cell_size(text, column.width)
            segments.append(Segment(pad, style))
            segments.append(
                Segment(shown, style + Style.parse(cell_style) if cell_style else style)
            )
            segments.append(Segment(pad, style))
        total = sum(column.width + 2 * CELL_PADDING for column in self.columns)
        return Strip(segments, total).extend_cell_length(max(width, total), style)
