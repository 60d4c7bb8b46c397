"""The shared Reading type and its JSON form."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptwin.database.reading import (
    Quality,
    Reading,
    ReadingError,
    format_timestamp,
    parse_timestamp,
)

NOW = 1_795_000_000.0


def test_json_round_trip_keeps_every_field() -> None:
    reading = Reading(NOW + 0.123, "R1", "do", 42.5, "%sat", Quality.UNCERTAIN)
    back = Reading.from_json(reading.to_json(), now=NOW)
    assert back == reading


def test_payload_is_the_documented_shape() -> None:
    payload = Reading(NOW, "R1", "ph", 5.01, "pH").to_payload()
    assert payload == {"ts": format_timestamp(NOW), "value": 5.01, "unit": "pH", "quality": "good"}
    assert payload["ts"].endswith("Z") and "T" in payload["ts"]


def test_nan_travels_as_null_and_comes_back_bad() -> None:
    reading = Reading(NOW, "R1", "ph", math.nan, "pH", Quality.BAD)
    data = json.loads(reading.to_json())
    assert data["value"] is None
    back = Reading.from_dict(data, now=NOW)
    assert math.isnan(back.value) and back.quality is Quality.BAD


def test_readings_are_immutable() -> None:
    reading = Reading(NOW, "R1", "ph", 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.value = 6.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NOW, NOW),
        (NOW * 1000, NOW),  # epoch milliseconds from a PLC gateway
        ("2026-11-18T10:00:00Z", 1_794_996_000.0),
        ("2026-11-18T11:00:00+01:00", 1_794_996_000.0),
    ],
)
def test_timestamps_in_every_accepted_form(raw: object, expected: float) -> None:
    assert parse_timestamp(raw, now=NOW + 86_400) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"ts": "2026-11-18T10:00:00", "value": 1}', "no time zone"),
        ('{"ts": 12, "value": 1}', "before 2000"),
        ('{"ts": 1999999999, "value": 1}', "in the future"),
        ('{"ts": 1795000000, "value": "7"}', "must be a number"),
        ('{"ts": 1795000000, "value": NaN}', "NaN"),
        ('{"ts": 1795000000, "value": 1, "quality": "great"}', "quality"),
        ("[1, 2]", "JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_payloads_are_refused_with_the_reason(payload: str, reason: str) -> None:
    with pytest.raises(ReadingError, match=reason):
        Reading.from_json(payload, reactor="R1", channel="ph", now=NOW)


@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=64),
    offset_ms=st.integers(min_value=0, max_value=10**9),
    channel=st.sampled_from(["ph", "do", "offgas_co2"]),
    quality=st.sampled_from(list(Quality)),
)
def test_any_finite_reading_round_trips(
    value: float, offset_ms: int, channel: str, quality: Quality
) -> None:
    reading = Reading(1_700_000_000 + offset_ms / 1000, "R1", channel, value, "u", quality)
    back = Reading.from_json(reading.to_json(), now=NOW)
    assert back.value == value
    assert back.quality is quality
    assert back.timestamp == pytest.approx(reading.timestamp, abs=1e-3)
