"""Times in a lab export as Unix seconds (UTC): local date-times with a time zone, ISO 8601,
Unix and Excel serial times, and time elapsed since a start.

Local wall-clock times are placed in their zone DST-safe: in the autumn hour that happens
twice, the rows' order tells the first pass from the second (the clock steps back); a time
that cannot be placed (the skipped spring hour, or a repeated hour whose order does not tell)
is an error naming the line, never a silent one-hour shift.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from bptwin.twin.dataset import DatasetError
from bptwin.twin.lab_import.cells import BadCell, CellError, NumberFormat, parse_numbers

ELAPSED_UNITS = {"elapsed_s": 1.0, "elapsed_min": 60.0, "elapsed_h": 3600.0}
NAMED_FORMATS = ("iso", "unix_s", "unix_ms", "excel", *ELAPSED_UNITS, "elapsed_hms")
EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$")
_HAS_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_HMS = re.compile(r"([+-]?)(\d+):(\d{1,2})(?::(\d{1,2}(?:[.,]\d*)?))?")


def time_zone(name: str) -> tzinfo:
    """An IANA zone ('Europe/Berlin'), 'UTC', or a fixed offset ('+01:00', 'UTC+1')."""
    text = name.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    match = _OFFSET.match(text)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise DatasetError(f"time zone offset {name!r} is out of range")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise DatasetError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin', 'UTC' or "
            "a fixed offset such as '+01:00'"
        ) from None


def is_known_format(time_format: str) -> bool:
    return time_format in NAMED_FORMATS or "%" in time_format


def describe_formats() -> str:
    return ", ".join(NAMED_FORMATS) + " or a strftime pattern such as '%d.%m.%Y %H:%M:%S'"


def _seconds(moments: pd.DatetimeIndex) -> np.ndarray:
    utc = moments.tz_convert("UTC")
    return np.asarray((utc - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1), dtype=float)


def localize(
    naive: pd.DatetimeIndex,
    zone: tzinfo,
    *,
    file: str,
    column: str,
    lines: np.ndarray,
    text: pd.Series,
) -> np.ndarray:
    """Wall-clock times in ``zone`` as Unix seconds (DST-safe, see the module docstring)."""
    try:
        return _seconds(naive.tz_localize(zone, ambiguous="infer", nonexistent="raise"))
    except ValueError:
        pass
    skipped = naive.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").isna() & ~naive.isna()
    cells = [
        BadCell(file, int(lines[i]), column, str(text.iloc[i])) for i in np.flatnonzero(skipped)
    ]
    raise CellError(
        f"local times that do not exist or occur twice in {zone} and whose order does not "
        "tell which is meant (state a fixed offset such as '+01:00' if the logger ignores "
        "daylight saving time)",
        cells[:100],
        len(cells),
    )


def parse_times(
    cells: pd.Series,
    time_format: str,
    zone: tzinfo,
    *,
    number_format: NumberFormat,
    file: str,
    column: str,
    lines: np.ndarray,
    start: float | None = None,
) -> np.ndarray:
    """Unix seconds of every cell; any cell that is not a time raises a CellError naming it.

    ``start`` (Unix s) is required for the ``elapsed_*`` formats.
    """
    text = cells.reset_index(drop=True).astype(str).str.strip()
    if time_format in ELAPSED_UNITS or time_format == "elapsed_hms":
        if start is None:
            raise DatasetError(
                f"{file}: column {column!r} holds elapsed time ({time_format}); the import "
                "map must give its start (start = 'inoculation' or a date-time)"
            )
        if time_format == "elapsed_hms":
            elapsed = _hours_minutes_seconds(text, file, column, lines)
        else:
            values, _ = parse_numbers(
                text, _no_missing(number_format), file=file, column=column, lines=lines
            )
            elapsed = values * ELAPSED_UNITS[time_format]
        return start + elapsed
    if time_format in ("unix_s", "unix_ms"):
        values, _ = parse_numbers(
            text, _no_missing(number_format), file=file, column=column, lines=lines
        )
        return values / (1000.0 if time_format == "unix_ms" else 1.0)
    if time_format == "excel":
        days, _ = parse_numbers(
            text, _no_missing(number_format), file=file, column=column, lines=lines
        )
        naive = pd.DatetimeIndex(EXCEL_EPOCH + pd.to_timedelta(days, unit="D"))
        return localize(naive, zone, file=file, column=column, lines=lines, text=text)
    if time_format == "iso":
        return _iso(text, zone, file, column, lines)
    if "%" not in time_format:
        raise DatasetError(f"{file}: time format {time_format!r} unknown; use {describe_formats()}")
    parsed = pd.to_datetime(text, format=time_format, errors="coerce")
    _refuse_unparsed(parsed, text, f"time written as {time_format!r}", file, column, lines)
    moments = pd.DatetimeIndex(parsed)
    if moments.tz is not None:  # the pattern had %z
        return _seconds(moments)
    return localize(moments, zone, file=file, column=column, lines=lines, text=text)


def _no_missing(number_format: NumberFormat) -> NumberFormat:
    """Times may not be missing: an empty time cell cannot be placed on the time axis."""
    return NumberFormat(number_format.decimal, number_format.thousands, missing=())


def _refuse_unparsed(
    parsed: pd.Series, text: pd.Series, what: str, file: str, column: str, lines: np.ndarray
) -> None:
    bad = np.flatnonzero(np.asarray(parsed.isna()))
    if bad.size:
        cells = [BadCell(file, int(lines[i]), column, str(text.iloc[i])) for i in bad[:100]]
        raise CellError(f"not a {what}", cells, int(bad.size))


def _iso(text: pd.Series, zone: tzinfo, file: str, column: str, lines: np.ndarray) -> np.ndarray:
    aware = np.asarray(text.str.contains(_HAS_OFFSET), dtype=bool)
    if aware.all():
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        _refuse_unparsed(parsed, text, "ISO 8601 time", file, column, lines)
        return _seconds(pd.DatetimeIndex(parsed))
    if aware.any():
        odd = np.flatnonzero(aware if aware.sum() < (~aware).sum() else ~aware)
        cells = [BadCell(file, int(lines[i]), column, str(text.iloc[i])) for i in odd[:100]]
        raise CellError("ISO times with and without a UTC offset in one column", cells, odd.size)
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    _refuse_unparsed(parsed, text, "ISO 8601 time", file, column, lines)
    return localize(
        pd.DatetimeIndex(parsed), zone, file=file, column=column, lines=lines, text=text
    )


def _hours_minutes_seconds(
    text: pd.Series, file: str, column: str, lines: np.ndarray
) -> np.ndarray:
    parts = text.str.fullmatch(_HMS)
    matched = np.asarray(parts.fillna(False), dtype=bool)
    if not matched.all():
        bad = np.flatnonzero(~matched)
        cells = [BadCell(file, int(lines[i]), column, str(text.iloc[i])) for i in bad[:100]]
        raise CellError("not an elapsed time written as h:mm:ss", cells, int(bad.size))
    fields = text.str.extract(_HMS)
    sign = np.where(fields[0] == "-", -1.0, 1.0)
    hours = fields[1].astype(float).to_numpy()
    minutes = fields[2].astype(float).to_numpy()
    seconds = fields[3].fillna("0").str.replace(",", ".").astype(float).to_numpy()
    return np.asarray(sign * (hours * 3600.0 + minutes * 60.0 + seconds), dtype=float)


def parse_stated_time(text: str, time_format: str, zone: tzinfo, key: str) -> float:
    """A date-time written in the import map (inoculation, depletion, a file's start).

    ISO 8601 with an offset is always understood; otherwise ``time_format`` (a pattern or
    ``iso``) in ``zone``. A local time in the repeated autumn hour needs an explicit offset.
    """
    raw = text.strip()
    if _HAS_OFFSET.search(raw):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    try:
        if "%" in time_format:
            naive = datetime.strptime(raw, time_format)
        else:
            naive = datetime.fromisoformat(raw)
    except ValueError:
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            expected = time_format if "%" in time_format else "ISO 8601"
            raise DatasetError(f"{key}: {text!r} is not a date-time ({expected})") from None
    if naive.tzinfo is not None:
        return naive.timestamp()
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise DatasetError(
            f"{key}: {text!r} happens twice in {zone} (the clock goes back); write it with "
            "its UTC offset, e.g. '2020-10-25T02:30:00+01:00'"
        )
    round_trip = datetime.fromtimestamp(first.timestamp(), tz=zone).replace(tzinfo=None)
    if round_trip != naive:
        raise DatasetError(f"{key}: {text!r} does not exist in {zone} (the clock skips it)")
    return first.timestamp()
