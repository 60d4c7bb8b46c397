"""Channel ranges for the API: query times parsed, pages cut from the store, CSV written safely.

A page holds at most ``limit`` readings of ``start <= t < end``, oldest first. Its cursor is the
millisecond timestamp of the first reading not sent (the store's key), so the next page starts
exactly there: pages neither overlap nor skip a reading, whatever was written meanwhile behind
the cursor. The store is read in time slices sized from the channel's sample period, growing
when data is sparse, so a page costs about ``limit`` readings of work, not the whole range.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading
from bptwin.database.timeseries.base import TimeSeriesStore, timestamp_ms

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc).timestamp()
CSV_HEADER = ("reactor", "channel", "timestamp", "value", "unit", "quality")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SLICE_GROWTH = 4


class RangeError(ValueError):
    """A query parameter of a range that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    readings: list[Reading]
    next_cursor: int | None
    unit: str


def parse_time(parameter: str, raw: str) -> float:
    """Unix seconds from ISO 8601 with a zone (``2026-12-07T08:00:00Z``) or Unix seconds."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        value = _iso_seconds(parameter, raw, text)
    if not math.isfinite(value) or not EARLIEST <= value < LATEST:
        raise RangeError(parameter, f"{parameter} {raw[:64]!r} is not between 2000 and 2200")
    return value


def _iso_seconds(parameter: str, raw: str, text: str) -> float:
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise RangeError(
            parameter,
            f"{parameter} {raw[:64]!r} is not a time: give ISO 8601 with a zone "
            "(e.g. 2026-12-07T08:00:00Z) or Unix seconds",
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RangeError(parameter, f"{parameter} {raw[:64]!r} has no time zone (add Z for UTC)")
    return moment.timestamp()


def check_limit(raw: int | None, default: int, maximum: int) -> int:
    limit = default if raw is None else raw
    if not 1 <= limit <= maximum:
        raise RangeError("limit", f"limit {limit} must be between 1 and {maximum}")
    return limit


def check_cursor(raw: str | None, start_ms: int, end_ms: int) -> int | None:
    """The cursor of a previous page of this same range, or RangeError."""
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 16):
        raise RangeError("cursor", "cursor must be the next_cursor of a previous page")
    cursor = int(raw)
    if not start_ms <= cursor < end_ms:
        raise RangeError("cursor", "cursor does not lie in [start, end) of this range")
    return cursor


def read_page(
    store: TimeSeriesStore,
    reactor: str,
    channel: str,
    start_ms: int,
    end_ms: int,
    limit: int,
    cursor_ms: int | None = None,
) -> ReadingsPage:
    """Up to ``limit`` readings from ``cursor_ms`` (or ``start_ms``) up to ``end_ms``."""
    entry = CHANNELS_BY_NAME.get(channel)
    period_ms = max(1, round(1000 * (entry.period_s if entry else 1.0)))
    begin = start_ms if cursor_ms is None else cursor_ms
    span = period_ms * (limit + 1)
    collected: list[Reading] = []
    while begin < end_ms and len(collected) <= limit:
        upto = min(end_ms, begin + span)
        collected.extend(store.read_range(reactor, channel, begin / 1000.0, upto / 1000.0))
        begin = upto
        span *= SLICE_GROWTH
    unit = next((reading.unit for reading in collected if reading.unit), "")
    if len(collected) > limit:
        return ReadingsPage(collected[:limit], timestamp_ms(collected[limit].timestamp), unit)
    return ReadingsPage(collected, None, unit)


class TimestampText:
    """``format_timestamp`` for a run of readings in time order, about three times faster: the
    text up to the minute is made once per minute (a 24 h page spends most of its time here)."""

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, timestamp: float) -> str:
        minute, within = divmod(round(timestamp * 1000.0), 60_000)
        if minute != self._minute:
            self._minute = minute
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
        second, milli = divmod(within, 1000)
        return f"{self._prefix}{second:02d}.{milli:03d}Z"


def _number(value: float, missing: str) -> str:
    # repr of a finite float is valid JSON and CSV and reads back to the same float.
    return repr(value) if math.isfinite(value) else missing


def readings_json_array(readings: Sequence[Reading]) -> str:
    """The readings as a JSON array of ``{"ts", "value", "quality"}`` objects (value null for
    a reading without a usable value), written directly: no dict per reading."""
    stamp = TimestampText()
    quality_text = {quality: json.dumps(quality.value) for quality in Quality}
    parts = [
        f'{{"ts":"{stamp(reading.timestamp)}","value":{_number(reading.value, "null")},'
        f'"quality":{quality_text[reading.quality]}}}'
        for reading in readings
    ]
    return "[" + ",".join(parts) + "]"


def safe_cell(text: str) -> str:
    """``text`` that a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _CsvText:
    """Text cells neutralised and quoted (RFC 4180) once per distinct value."""

    def __init__(self) -> None:
        self._cells: dict[str, str] = {}
        self._out = io.StringIO()
        # The usual terminator, so that a cell holding CR or LF is quoted; it is cut off below.
        self._writer = csv.writer(self._out, lineterminator="\r\n")

    def __call__(self, text: str) -> str:
        cell = self._cells.get(text)
        if cell is None:
            self._out.seek(0)
            self._out.truncate()
            self._writer.writerow((safe_cell(text),))
            cell = self._cells[text] = self._out.getvalue()[:-2]
        return cell


def readings_csv(readings: Sequence[Reading], *, header: bool = True) -> str:
    """The readings as CSV rows (RFC 4180), text cells neutralised against formula injection."""
    stamp, text = TimestampText(), _CsvText()
    quality_text = {quality: text(quality.value) for quality in Quality}
    lines = [",".join(CSV_HEADER)] if header else []
    series = ("", "")
    prefix = ""
    for reading in readings:
        if (reading.reactor, reading.channel) != series:  # one series per page: made once
            series = (reading.reactor, reading.channel)
            prefix = f"{text(reading.reactor)},{text(reading.channel)},"
        lines.append(
            f"{prefix}{stamp(reading.timestamp)},{_number(reading.value, '')},"
            f"{text(reading.unit)},{quality_text[reading.quality]}"
        )
    return "\r\n".join(lines) + "\r\n" if lines else ""
