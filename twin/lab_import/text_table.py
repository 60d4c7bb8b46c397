"""Delimited text exports as a lab's software writes them, read without guessing wrong.

The layout of an export — encoding, delimiter, lines before the header, unit rows under it —
is taken from the import map where stated and detected otherwise, each detection with a note
saying what was found and why. Detection only ever chooses among candidates that make sense
(the delimiter is one of ``; TAB , |`` or blanks, never a letter), and a layout that cannot be
told apart is an error asking the map to state it, never a guess.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bptwin.twin.dataset import DatasetError
from bptwin.twin.lab_import.cells import (
    DEFAULT_MISSING,
    BadCell,
    NumberFormat,
    guess_decimal,
    parse_numbers,
)

AUTO = "auto"
# Most specific first: a file split evenly by ';' or TAB is split by it, even when its
# decimal commas would split every line evenly as well.
DELIMITERS = (";", "\t", ",", "|")
WHITESPACE = "whitespace"
DELIMITER_NAMES = {";": "';'", "\t": "TAB", ",": "','", "|": "'|'", WHITESPACE: "blanks"}
SAMPLE_LINES = 400  # lines looked at from the top and from the bottom when detecting
MIN_SUPPORT = 0.8  # share of the looked-at lines a delimiter must split alike
MAX_UNIT_ROWS = 3
_DATE_LIKE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,3}:\d{2}")
_NUMBER_LIKE = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class TextLayout:
    """How a text export is laid out; ``None`` or ``"auto"`` fields are detected."""

    encoding: str = AUTO
    delimiter: str = AUTO  # ";", ",", "\t", "|", "whitespace" or "auto"
    decimal: str = AUTO  # ".", "," or "auto"
    thousands: str = ""
    skip_rows: int | None = None  # lines before the header row (None: detect)
    unit_rows: int | None = None  # rows under the header that hold units (None: detect)
    header: bool = True
    names: tuple[str, ...] = ()  # column names when the file has no header row
    missing: tuple[str, ...] = DEFAULT_MISSING


@dataclass
class TextTable:
    """The cells of an export as text, with the line each row came from."""

    file: str
    encoding: str
    delimiter: str
    header: list[str]
    units: dict[str, str]
    data: pd.DataFrame
    lines: np.ndarray
    layout: TextLayout
    notes: list[str] = field(default_factory=list)
    _number_format: NumberFormat | None = None

    def __len__(self) -> int:
        return len(self.data)

    def has(self, column: str) -> bool:
        return column in self.data.columns

    def column(self, name: str) -> pd.Series:
        if name not in self.data.columns:
            raise DatasetError(missing_column_message(self.file, name, self.header))
        return self.data[name]

    def number_format(self, numeric_columns: list[str]) -> NumberFormat:
        """The file's number format; the decimal separator detected from ``numeric_columns``
        when the layout does not state it."""
        if self._number_format is not None:
            return self._number_format
        decimal = self.layout.decimal
        if decimal == AUTO:
            if self.delimiter == ",":
                decimal = "."  # a comma-split file cannot hold unquoted decimal commas
                self.notes.append(f"{self.file}: decimal point (the delimiter is ',')")
            else:
                found, evidence = guess_decimal(
                    self.column(name) for name in numeric_columns if self.has(name)
                )
                if found is None and evidence.startswith("both"):
                    raise DatasetError(
                        f"{self.file}: cannot tell the decimal separator: {evidence}; "
                        "state decimal = ',' or '.' (and thousands, if one of them "
                        "separates thousands) for this file in the import map"
                    )
                decimal = found or "."
                self.notes.append(f"{self.file}: decimal {decimal!r} ({evidence})")
        self._number_format = NumberFormat(decimal, self.layout.thousands, self.layout.missing)
        return self._number_format

    def numbers(
        self, name: str, numeric_columns: list[str], on_bad_cell: str = "error"
    ) -> tuple[np.ndarray, list[BadCell]]:
        """Column ``name`` as float64, read strictly (see :func:`parse_numbers`)."""
        return parse_numbers(
            self.column(name),
            self.number_format(numeric_columns),
            file=self.file,
            column=name,
            lines=self.lines,
            on_bad_cell=on_bad_cell,
        )


def missing_column_message(file: str, name: str, header: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, header, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = ", ".join(repr(h) for h in header[:40])
    return f"{file}: no column {name!r}{hint} (the columns are: {listed})"


# -- encoding ---------------------------------------------------------------------------------
def decode(raw: bytes, encoding: str, file: str) -> tuple[str, str, str | None]:
    """(text, encoding used, note): stated, or UTF-8 when valid, else Windows-1252/Latin-1.

    A byte sequence that is valid UTF-8 is almost never anything else, so UTF-8 is tried
    first; lab PCs in Europe write Windows-1252 (a superset of Latin-1's printable letters).
    """
    if encoding != AUTO:
        try:
            return raw.decode(encoding), encoding, None
        except LookupError:
            raise DatasetError(f"{file}: unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DatasetError(
                f"{file} line {line}: bytes {raw[exc.start : exc.end]!r} are not {encoding}; "
                "state the file's encoding (e.g. 'latin-1', 'cp1252', 'utf-8') or 'auto'"
            ) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "utf-8", f"{file}: UTF-8 (byte-order mark)"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16", f"{file}: UTF-16 (byte-order mark)"
    try:
        return raw.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252", f"{file}: not UTF-8; read as Windows-1252/Latin-1"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1", f"{file}: not UTF-8; read as Latin-1"


# -- delimiter --------------------------------------------------------------------------------
def split_line(line: str, delimiter: str) -> list[str]:
    if delimiter == WHITESPACE:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter), [])


def _sample(lines: list[str]) -> list[str]:
    """The lines that decide the layout: the file's second half, at most SAMPLE_LINES of it
    (readings sit at the end of an export; title lines and notes sit at the top)."""
    filled = [line for line in lines if line.strip()]
    tail = filled[len(filled) // 2 :]
    return tail[-SAMPLE_LINES:]


def detect_delimiter(lines: list[str], file: str) -> tuple[str, str]:
    """(delimiter, note): the first candidate that splits most lines into the same number
    of fields (at least two); blanks when none does."""
    sample = _sample(lines)
    if not sample:
        raise DatasetError(f"{file} is empty")
    scores: list[tuple[str, float, int]] = []
    for candidate in DELIMITERS:
        counts = Counter(len(split_line(line, candidate)) for line in sample)
        fields, seen = max(counts.items(), key=lambda item: (item[1], item[0]))
        support = seen / len(sample) if fields >= 2 else 0.0
        scores.append((candidate, support, fields))
    for candidate, support, fields in scores:
        if support >= MIN_SUPPORT:
            share = f"{support:.0%}"
            return candidate, (
                f"{file}: delimiter {DELIMITER_NAMES[candidate]} "
                f"({fields} fields on {share} of the lines looked at)"
            )
    counts = Counter(len(line.split()) for line in sample)
    fields, seen = max(counts.items(), key=lambda item: (item[1], item[0]))
    if fields >= 2 and seen / len(sample) >= MIN_SUPPORT:
        return WHITESPACE, f"{file}: columns separated by blanks ({fields} fields)"
    best = max(scores, key=lambda item: item[1])
    raise DatasetError(
        f"{file}: cannot tell the delimiter (best: {DELIMITER_NAMES[best[0]]} splits only "
        f"{best[1]:.0%} of the lines alike); state delimiter = ';', ',', '\\t', '|' "
        "or 'whitespace' in the import map"
    )


# -- header and unit rows ---------------------------------------------------------------------
def is_data_like(cells: list[str]) -> bool:
    """A row of readings: some cell is a number or a date/time (a unit row has neither)."""
    for cell in cells:
        text = cell.strip()
        if _NUMBER_LIKE.fullmatch(text) or _DATE_LIKE.search(text):
            return True
    return False


def _modal_fields(lines: list[str], delimiter: str) -> int:
    counts = Counter(len(split_line(line, delimiter)) for line in _sample(lines))
    return max(counts.items(), key=lambda item: (item[1], item[0]))[0]


def detect_rows(
    lines: list[str], delimiter: str, layout: TextLayout, file: str
) -> tuple[int, int, list[str]]:
    """(header line index or -1 without header, first data line index, notes)."""
    notes: list[str] = []
    fields = _modal_fields(lines, delimiter)
    if layout.skip_rows is not None:
        header_at = layout.skip_rows
        if header_at >= len(lines):
            raise DatasetError(f"{file}: skip_rows = {header_at}, but the file has {len(lines)}")
    else:
        header_at = -1
        for index, line in enumerate(lines):
            cells = split_line(line, delimiter)
            if len(cells) != fields or not line.strip():
                continue
            named = sum(1 for cell in cells if cell.strip())
            if layout.header and named < max(2, len(cells) // 2):
                continue  # a title padded with delimiters ("Export;;;;"), not column names
            if not layout.header or not is_data_like(cells):
                header_at = index
                break
            raise DatasetError(
                f"{file} line {index + 1}: the first row with {fields} fields holds readings, "
                "not column names; give header = false and names = [...], or skip_rows"
            )
        if header_at < 0:
            raise DatasetError(f"{file}: no row with {fields} fields found for the header")
        if header_at:
            notes.append(f"{file}: {header_at} line(s) before the header skipped")
    if not layout.header:
        return -1, header_at, notes
    first_data = header_at + 1
    if layout.unit_rows is not None:
        first_data += layout.unit_rows
    else:
        units = 0
        while (
            first_data < len(lines)
            and units < MAX_UNIT_ROWS
            and (
                not lines[first_data].strip()
                or not is_data_like(split_line(lines[first_data], delimiter))
            )
        ):
            units += 1 if lines[first_data].strip() else 0
            first_data += 1
        if units:
            notes.append(f"{file}: {units} unit row(s) under the header")
    return header_at, first_data, notes


def _unique(names: list[str], file: str, notes: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    result = []
    for index, raw in enumerate(names):
        name = raw.strip() or f"column {index + 1}"
        seen[name] += 1
        if seen[name] > 1:
            notes.append(f"{file}: column {name!r} appears twice; the second is {name}#2")
            name = f"{name}#{seen[name]}"
        result.append(name)
    return result


# -- reading ----------------------------------------------------------------------------------
def read_text_table(path: Path, layout: TextLayout, display: str | None = None) -> TextTable:
    """Read one export; every detection is noted, every inconsistency an error naming the line."""
    file = display or path.name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read {path}: {exc.strerror}") from None
    text, encoding, encoding_note = decode(raw, layout.encoding, file)
    notes = [encoding_note] if encoding_note else []
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DatasetError(f"{file} is empty")
    if layout.delimiter == AUTO:
        delimiter, note = detect_delimiter(lines, file)
        notes.append(note)
    else:
        delimiter = layout.delimiter
        if delimiter not in (*DELIMITERS, WHITESPACE):
            raise DatasetError(
                f"{file}: delimiter {delimiter!r} unknown; use ';', ',', '\\t', '|', "
                "'whitespace' or 'auto'"
            )
    header_at, first_data, row_notes = detect_rows(lines, delimiter, layout, file)
    notes += row_notes
    if header_at >= 0:
        header = _unique(split_line(lines[header_at], delimiter), file, notes)
    else:
        if not layout.names:
            raise DatasetError(f"{file}: header = false needs names = [...] for the columns")
        header = _unique(list(layout.names), file, notes)
    units = _units(lines[header_at + 1 : first_data], delimiter, header) if header_at >= 0 else {}
    data, line_numbers = _read_rows(lines, first_data, delimiter, header, file, notes)
    return TextTable(file, encoding, delimiter, header, units, data, line_numbers, layout, notes)


def _units(rows: list[str], delimiter: str, header: list[str]) -> dict[str, str]:
    units: dict[str, list[str]] = {name: [] for name in header}
    for row in rows:
        for name, cell in zip(header, split_line(row, delimiter), strict=False):
            if cell.strip():
                units[name].append(cell.strip())
    return {name: " ".join(parts) for name, parts in units.items() if parts}


def _read_rows(
    lines: list[str],
    first_data: int,
    delimiter: str,
    header: list[str],
    file: str,
    notes: list[str],
) -> tuple[pd.DataFrame, np.ndarray]:
    block = lines[first_data:]
    filled = np.fromiter((bool(line.strip()) for line in block), dtype=bool, count=len(block))
    line_numbers = np.flatnonzero(filled).astype(np.int64) + first_data + 1
    body = "\n".join(block if filled.all() else [line for line in block if line.strip()])
    width = len(header)
    if not body:
        frame = pd.DataFrame({name: pd.Series(dtype="object") for name in header})
        return frame, line_numbers
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            sep=r"\s+" if delimiter == WHITESPACE else delimiter,
            header=None,
            names=range(width),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            index_col=False,
            engine="c" if delimiter != WHITESPACE else "python",
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+), saw (\d+)", str(exc))
        if match:
            where = int(line_numbers[int(match.group(1)) - 1])
            raise DatasetError(
                f"{file} line {where}: {match.group(2)} fields, but the header has {width}"
            ) from None
        raise DatasetError(f"{file}: cannot split the rows: {exc}") from None
    if len(frame) != len(line_numbers):
        # Quoted fields spanning lines: count lines row by row with the csv module.
        frame, line_numbers = _read_rows_exactly(body, delimiter, width, line_numbers)
    frame.columns = header
    short = _short_rows(body, delimiter, width) if delimiter != WHITESPACE else 0
    if short:
        notes.append(f"{file}: {short} row(s) with fewer fields than the header (cells empty)")
    return frame.fillna(""), line_numbers


def _short_rows(body: str, delimiter: str, width: int) -> int:
    separators = np.fromiter((line.count(delimiter) for line in body.split("\n")), dtype=np.int64)
    return int((separators < width - 1).sum()) if '"' not in body else 0


def _read_rows_exactly(
    body: str, delimiter: str, width: int, physical: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    reader = csv.reader(io.StringIO(body), delimiter=delimiter)
    rows: list[list[str]] = []
    starts: list[int] = []
    previous_end = 0
    for row in reader:
        starts.append(int(physical[min(previous_end, len(physical) - 1)]))
        previous_end = reader.line_num
        rows.append((row + [""] * width)[:width])
    return pd.DataFrame(rows, dtype="object"), np.asarray(starts, dtype=np.int64)
