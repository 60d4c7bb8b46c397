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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading, format_timestamp
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


def reading_json(reading: Reading) -> dict[str, object]:
    value = reading.value
    return {
        "ts": format_timestamp(reading.timestamp),
        "value": None if math.isnan(value) else value,
        "quality": reading.quality.value,
    }


def safe_cell(text: str) -> str:
    """``text`` that a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def readings_csv(readings: Sequence[Reading], *, header: bool = True) -> str:
    """The readings as CSV rows (RFC 4180), text cells neutralised against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_HEADER)
    for reading in readings:
        value = reading.value
        writer.writerow(
            (
                safe_cell(reading.reactor),
                safe_cell(reading.channel),
                format_timestamp(reading.timestamp),
                "" if math.isnan(value) else repr(value),
                safe_cell(reading.unit),
                safe_cell(reading.quality.value),
            )
        )
    return out.getvalue()
