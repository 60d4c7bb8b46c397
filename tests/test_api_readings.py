"""Channel pages of the API without a server: times, limits, cursors, JSON and CSV text."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptwin.database.reading import Quality, Reading, format_timestamp
from bptwin.tui.api.readings import (
    RangeError,
    TimestampText,
    check_cursor,
    check_limit,
    parse_time,
    readings_csv,
    readings_json_array,
    safe_cell,
)

MILLIS = st.integers(min_value=946_684_800_000, max_value=7_258_118_400_000)


@given(st.lists(MILLIS, min_size=1, max_size=50))
def test_fast_timestamps_match_the_store_contracts_format(millis: list[int]) -> None:
    stamp = TimestampText()
    for ms in sorted(millis):
        assert stamp(ms / 1000.0) == format_timestamp(ms / 1000.0)


@given(
    st.lists(
        st.tuples(MILLIS, st.floats(allow_nan=True, allow_infinity=False, width=64)),
        max_size=30,
    )
)
def test_the_json_array_reads_back_as_the_readings(points: list[tuple[int, float]]) -> None:
    readings = [
        Reading(
            ms / 1000.0, "R1", "ph", value, "pH", Quality.BAD if math.isnan(value) else Quality.GOOD
        )
        for ms, value in sorted(points)
    ]
    decoded = json.loads(readings_json_array(readings))
    assert decoded == [
        {
            "ts": format_timestamp(r.timestamp),
            "value": None if math.isnan(r.value) else r.value,
            "quality": r.quality.value,
        }
        for r in readings
    ]


@given(st.text(max_size=20))
def test_csv_text_cells_read_back_neutralised(unit: str) -> None:
    reading = Reading(1_795_000_000.0, "R1", "ph", 7.25, unit)
    rows = list(csv.reader(io.StringIO(readings_csv([reading]), newline="")))
    assert rows[1] == ["R1", "ph", "2026-11-18T11:06:40.000Z", "7.25", safe_cell(unit), "good"]
    assert not rows[1][4].startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("2026-11-18T11:06:40Z", 1_795_000_000.0),
        ("2026-11-18T12:06:40+01:00", 1_795_000_000.0),
        ("1795000000", 1_795_000_000.0),
        (" 1795000000.5 ", 1_795_000_000.5),
    ],
)
def test_times_are_iso_with_a_zone_or_unix_seconds(raw: str, seconds: float) -> None:
    assert parse_time("start", raw) == seconds


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("2026-11-18T11:06:40", "no time zone"),
        ("tomorrow", "not a time"),
        ("inf", "between 2000 and 2200"),
        ("-5", "between 2000 and 2200"),
        ("99999999999999", "between 2000 and 2200"),
    ],
)
def test_bad_times_name_the_parameter(raw: str, words: str) -> None:
    with pytest.raises(RangeError, match=words) as refused:
        parse_time("end", raw)
    assert refused.value.parameter == "end"


def test_limits_and_cursors_are_checked_against_the_range() -> None:
    assert check_limit(None, 1000, 5000) == 1000
    for bad in (0, -1, 5001):
        with pytest.raises(RangeError, match="limit"):
            check_limit(bad, 1000, 5000)
    assert check_cursor(None, 0, 10) is None
    assert check_cursor("5", 0, 10) == 5
    for bad in ("10", "-1", "1e3", "٣", "9" * 20):
        with pytest.raises(RangeError) as refused:
            check_cursor(bad, 0, 10)
        assert refused.value.parameter == "cursor"
