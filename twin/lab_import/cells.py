"""Numbers in a lab export's cells, read strictly: a cell is a number, a missing-value token
or an error that names its file, line and column. Never a silent NaN.

A lab's export writes numbers the way its locale does (``5,01`` in Germany, ``1'234.5`` in
Switzerland), marks missing readings with its own tokens (``-``, ``#N/A``, an empty cell) and
now and then holds a cell that is neither (``Err``, ``OVER``, ``12,5,1``). The first two are
read; the third is reported, because reading it as "missing" would hide a broken column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bptwin.twin.dataset import DatasetError

# Cells that mean "no reading" in the exports of common lab software and spreadsheets.
DEFAULT_MISSING: tuple[str, ...] = (
    "",
    "-",
    "--",
    "---",
    "nan",
    "na",
    "n/a",
    "#n/a",
    "null",
    "none",
    "n.d.",
    "n.b.",
)
DECIMALS = (".", ",")
THOUSANDS = ("", ".", ",", " ", "'", "\u202f", "\u00a0")
# Whitespace a cell may carry around its number (narrow/no-break spaces come from Excel).
_BLANKS = " \t\u00a0\u202f"
MAX_LISTED = 10


@dataclass(frozen=True, slots=True)
class BadCell:
    """One cell that is neither a number nor a missing-value token."""

    file: str
    line: int  # 1-based line of the file
    column: str  # header name
    text: str

    def describe(self) -> str:
        return f"{self.file} line {self.line}, column {self.column!r}: {self.text!r}"


class CellError(DatasetError):
    """Cells that cannot be read; ``cells`` lists them (the message names the first ones)."""

    def __init__(self, reason: str, cells: Sequence[BadCell], total: int | None = None) -> None:
        self.cells = list(cells)
        self.total = len(self.cells) if total is None else total
        shown = "\n  ".join(cell.describe() for cell in self.cells[:MAX_LISTED])
        more = self.total - min(len(self.cells), MAX_LISTED)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.total} cell(s) cannot be read ({reason}):\n  {shown}{tail}")


@dataclass(frozen=True)
class NumberFormat:
    """How numbers are written: decimal separator, optional thousands separator, missing tokens."""

    decimal: str = "."
    thousands: str = ""
    missing: tuple[str, ...] = DEFAULT_MISSING
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.decimal not in DECIMALS:
            raise DatasetError(f"decimal separator must be '.' or ',', got {self.decimal!r}")
        if self.thousands not in THOUSANDS:
            raise DatasetError(
                f"thousands separator must be one of {THOUSANDS[1:]!r} or empty, "
                f"got {self.thousands!r}"
            )
        if self.thousands == self.decimal:
            raise DatasetError("the thousands and the decimal separator must differ")
        object.__setattr__(self, "_pattern", number_pattern(self.decimal, self.thousands))

    @property
    def missing_tokens(self) -> frozenset[str]:
        return frozenset(token.strip(_BLANKS).casefold() for token in self.missing)

    @property
    def pattern(self) -> re.Pattern[str]:
        return self._pattern

    def describe(self) -> str:
        thousands = f", thousands {self.thousands!r}" if self.thousands else ""
        return f"decimal {self.decimal!r}{thousands}"


def number_pattern(decimal: str, thousands: str = "") -> re.Pattern[str]:
    """A full-match pattern for a number written with these separators (exponent allowed)."""
    d = re.escape(decimal)
    if thousands:
        t = re.escape(thousands)
        integer = rf"(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)"
    else:
        integer = r"\d+"
    mantissa = rf"(?:{integer}(?:{d}\d*)?|{d}\d+)"
    return re.compile(rf"[+-]?{mantissa}(?:[eE][+-]?\d+)?")


def parse_numbers(
    cells: Sequence[str] | pd.Series | np.ndarray,
    number_format: NumberFormat,
    *,
    file: str = "",
    column: str = "",
    lines: Sequence[int] | np.ndarray | None = None,
    on_bad_cell: str = "error",
) -> tuple[np.ndarray, list[BadCell]]:
    """The cells as float64: NaN exactly where a cell is a missing-value token.

    A cell that is neither raises :class:`CellError` naming file, line and column, or, with
    ``on_bad_cell="missing"``, becomes NaN and is returned in the list of bad cells (for the
    import report: never dropped without a word).
    """
    if on_bad_cell not in ("error", "missing"):
        raise DatasetError(f"on_bad_cell must be 'error' or 'missing', got {on_bad_cell!r}")
    text = _as_text(cells)
    stripped = text.str.strip(_BLANKS)
    matches = np.array(stripped.str.fullmatch(number_format.pattern).fillna(False), dtype=bool)
    values = np.full(len(text), np.nan)
    if matches.any():
        plain = stripped[matches]
        if number_format.thousands:
            plain = plain.str.replace(number_format.thousands, "", regex=False)
        if number_format.decimal != ".":
            plain = plain.str.replace(number_format.decimal, ".", regex=False)
        values[matches] = _to_float(plain)
        # 1e999 is written like a number but is no reading: report it, never store inf.
        overflow = matches & ~np.isfinite(values)
        matches &= ~overflow
        values[overflow] = np.nan
    # Only the few cells that are no number are looked up among the missing-value tokens.
    missing = np.zeros(len(text), dtype=bool)
    others = np.flatnonzero(~matches)
    if others.size:
        tokens = number_format.missing_tokens
        missing[others] = [
            str(cell).strip(_BLANKS).casefold() in tokens for cell in text.iloc[others]
        ]
    bad = ~(matches | missing)
    if not bad.any():
        return values, []
    positions = np.flatnonzero(bad)
    line_numbers = (
        np.asarray(lines, dtype=np.int64) if lines is not None else np.arange(1, len(text) + 1)
    )
    found = [
        BadCell(file, int(line_numbers[i]), column, str(text.iloc[i]))
        for i in positions[: MAX_LISTED * 10]
    ]
    if on_bad_cell == "error":
        raise CellError(
            f"not a number written with {number_format.describe()}", found, len(positions)
        )
    return values, found


def _to_float(plain: pd.Series) -> np.ndarray:
    """Number text (already checked against the pattern) as float64, correctly rounded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = pa.array(plain.to_numpy(dtype=object), type=pa.string())
        return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. out of float range: element by element
        return np.asarray([float(value) for value in plain], dtype=float)


def _as_text(cells: Sequence[str] | pd.Series | np.ndarray) -> pd.Series:
    series = cells if isinstance(cells, pd.Series) else pd.Series(list(cells), dtype="object")
    series = series.reset_index(drop=True)
    if not (pd.api.types.is_string_dtype(series) or pd.api.types.is_object_dtype(series)):
        # Already numeric (e.g. a Parquet column): NaN is a missing reading, the rest is a number.
        numeric = series.astype("float64")
        return numeric.map(lambda v: "" if v != v else repr(float(v))).astype("object")
    return series.fillna("").astype(str)


def guess_decimal(columns: Iterable[Sequence[str] | pd.Series]) -> tuple[str | None, str]:
    """The decimal separator the cells use: ("," | "." | None, evidence).

    Counts cells that can only be read one way ("5,01" is decimal comma, "5.01" decimal point;
    "1.234,5" and dates are left aside). None when no cell tells, or when both kinds occur:
    then the map must say which, since guessing could turn thousands into decimals.
    """
    comma = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")
    point = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
    n_comma = n_point = 0
    example_comma = example_point = ""
    for cells in columns:
        text = _as_text(cells).str.strip(_BLANKS)
        is_comma = text.str.fullmatch(comma).fillna(False)
        is_point = text.str.fullmatch(point).fillna(False)
        n_comma += int(is_comma.sum())
        n_point += int(is_point.sum())
        if not example_comma and is_comma.any():
            example_comma = str(text[is_comma].iloc[0])
        if not example_point and is_point.any():
            example_point = str(text[is_point].iloc[0])
    if n_comma and not n_point:
        return ",", f"{n_comma} cells like {example_comma!r}"
    if n_point and not n_comma:
        return ".", f"{n_point} cells like {example_point!r}"
    if n_comma and n_point:
        return None, (
            f"both decimal commas ({n_comma} cells like {example_comma!r}) and decimal "
            f"points ({n_point} cells like {example_point!r})"
        )
    return None, "no cell with a decimal part"
