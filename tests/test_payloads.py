"""MQTT payload decoder: bad input is a ReadingError with a reason; valid input round-trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptwin.database.bus.payloads import (
    MAX_PAYLOAD_BYTES,
    decode_any,
    decode_reading,
    decode_snapshot,
    encode_reading,
    encode_snapshot,
    iso_timestamp,
)
from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Quality, Reading, ReadingError, format_timestamp

NOW = 1_795_000_000.0  # fixed "now" (2026-11) so the tests do not depend on the clock


def decode(payload: bytes | str) -> Reading:
    return decode_reading(payload, reactor="r1", channel="ph", now=NOW)


def test_single_reading_with_iso_timestamp() -> None:
    reading = decode(b'{"ts": "2026-11-18T10:00:00.250+01:00", "value": 5.01, "unit": "pH"}')
    assert reading.reactor == "r1" and reading.channel == "ph"
    assert reading.value == 5.01 and reading.unit == "pH"
    assert reading.quality is Quality.GOOD
    assert reading.timestamp == pytest.approx(1_794_992_400.25)


@pytest.mark.parametrize("ts", [1_794_992_400, 1_794_992_400_000, 1_794_992_400.5])
def test_epoch_seconds_and_milliseconds(ts: float) -> None:
    reading = decode(json.dumps({"ts": ts, "value": 5}))
    assert reading.timestamp == pytest.approx(1_794_992_400, abs=1)


def test_unit_defaults_from_catalogue_and_null_value_is_bad() -> None:
    reading = decode_reading(
        b'{"ts": 1794992400, "value": null}', reactor="r1", channel="do", now=NOW
    )
    assert reading.unit == "%sat"
    assert math.isnan(reading.value) and reading.quality is Quality.BAD


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"ts": 1794992400, "value": NaN}', "NaN"),
        (b'{"ts": 1794992400, "value": Infinity}', "Infinity"),
        (b'{"ts": 1794992400, "value": 1e400}', "finite"),
        (b'{"ts": 1794992400, "value": "5.0"}', "value must be a number"),
        (b'{"ts": 1794992400, "value": true}', "value must be a number"),
        (b'{"ts": 1794992400}', "'value' is missing"),
        (b'{"value": 5}', "missing"),
        (b'{"ts": 12, "value": 5}', "before 2000"),
        (b'{"ts": "1970-01-01T00:00:00Z", "value": 5}', "before 2000"),
        (b'{"ts": "2999-01-01T00:00:00Z", "value": 5}', "future"),
        (b'{"ts": "2026-11-18 10:00", "value": 5}', "time zone"),
        (b'{"ts": "yesterday", "value": 5}', "ISO 8601"),
        (b'{"ts": [1], "value": 5}', "timestamp must be"),
        (b'{"ts": 1e400, "value": 5}', "before 2000"),
        (b'{"ts": 1794992400, "value": 5, "quality": "great"}', "quality"),
        (b'{"ts": 1794992400, "value": 5, "unit": 7}', "unit"),
        (b'{"ts": 1794992400, "value": 1' + b"0" * 5000 + b"}", "acceptable JSON"),
        (b'{"ts": 1' + b"0" * 400 + b', "value": 5}', "absurdly large"),
        (b"[" * 20000 + b"]" * 20000, "nested too deeply"),
        (b'{"ts": 1794992400, "value": ' + b" " * MAX_PAYLOAD_BYTES + b"5}", "byte limit"),
    ],
)
def test_malformed_single_reading_names_the_problem(payload: bytes, reason: str) -> None:
    with pytest.raises(ReadingError, match=reason):
        decode(payload)


def test_bad_reactor_from_topic_is_refused() -> None:
    with pytest.raises(ReadingError, match="reactor"):
        decode_reading(b'{"ts": 1794992400, "value": 5}', reactor="r 1", channel="ph", now=NOW)


def test_snapshot_mixes_bare_numbers_and_objects() -> None:
    payload = {
        "ts": "2026-11-18T09:00:00Z",
        "values": {
            "ph": 5.01,
            "do": {"value": 42.0, "quality": "uncertain"},
            "offgas_co2": {"value": 1.2, "unit": "%", "ts": "2026-11-18T09:00:01Z"},
            "temp_broth": None,
        },
    }
    readings = {r.channel: r for r in decode_snapshot(json.dumps(payload), reactor="r2", now=NOW)}
    assert set(readings) == {"ph", "do", "offgas_co2", "temp_broth"}
    assert readings["ph"].unit == "pH" and readings["ph"].quality is Quality.GOOD
    assert readings["do"].quality is Quality.UNCERTAIN and readings["do"].unit == "%sat"
    assert readings["offgas_co2"].unit == "%"
    assert readings["offgas_co2"].timestamp - readings["ph"].timestamp == pytest.approx(1.0)
    assert readings["temp_broth"].quality is Quality.BAD
    assert all(r.reactor == "r2" for r in readings.values())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"ts": 1794992400}, "needs 'values'"),
        ({"ts": 1794992400, "values": []}, "needs 'values'"),
        ({"ts": 1794992400, "values": {}}, "empty"),
        ({"values": {"ph": 5}}, "'ph'.*missing"),
        ({"ts": 1794992400, "values": {"ph": 5, "do": "high"}}, "'do'.*value must be"),
        ({"ts": 1794992400, "values": {"bad channel": 5}}, "channel"),
        ({"ts": 1794992400, "values": {f"c{i}": 1 for i in range(300)}}, "more than"),
    ],
)
def test_malformed_snapshot_is_refused_whole(payload: dict, reason: str) -> None:
    with pytest.raises(ReadingError, match=reason):
        decode_snapshot(json.dumps(payload), reactor="r1", now=NOW)


def test_decode_any_chooses_by_topic_kind() -> None:
    single = decode_any(b'{"ts": 1794992400, "value": 5}', reactor="r1", channel="ph", now=NOW)
    snapshot = decode_any(b'{"ts": 1794992400, "values": {"ph": 5}}', reactor="r1", channel=None)
    assert [r.channel for r in single] == ["ph"] and [r.channel for r in snapshot] == ["ph"]


@given(st.floats(min_value=946_684_800, max_value=4_000_000_000, allow_nan=False))
def test_fast_timestamp_text_equals_format_timestamp(timestamp: float) -> None:
    assert iso_timestamp(timestamp) == format_timestamp(timestamp)


def test_encode_snapshot_refuses_mixed_reactors() -> None:
    with pytest.raises(ValueError, match="one reactor"):
        encode_snapshot([Reading(NOW, "r1", "ph", 5.0), Reading(NOW, "r2", "ph", 5.0)])


# --- properties --------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
near_timestamps = st.integers(900_000_000, 2_000_000_000_000) | st.floats() | st.text(max_size=30)
payload_objects = st.fixed_dictionaries(
    {},
    optional={
        "ts": near_timestamps | json_values,
        "value": st.floats() | json_values,
        "unit": st.text(max_size=40) | json_values,
        "quality": st.sampled_from(["good", "BAD", "uncertain", "great"]) | json_values,
        "values": st.dictionaries(st.text(max_size=8), st.floats() | json_values, max_size=4),
        "x": json_values,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_reading_error(payload: bytes) -> None:
    for channel in ("ph", None):
        try:
            readings = decode_any(payload, reactor="r1", channel=channel, now=NOW)
        except ReadingError:
            continue
        assert all(isinstance(r, Reading) for r in readings)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(payload_objects)
def test_arbitrary_json_objects_raise_only_reading_error(data: dict) -> None:
    text = json.dumps(data)  # may hold NaN/Infinity: the decoder must refuse them
    for channel in ("ph", None):
        try:
            readings = decode_any(text, reactor="r1", channel=channel, now=NOW)
        except ReadingError:
            continue
        for reading in readings:
            assert math.isfinite(reading.timestamp)
            assert math.isfinite(reading.value) or reading.quality is Quality.BAD


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
timestamps = st.integers(int(1e12), int(NOW * 1000)).map(lambda ms: ms / 1000)
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=20)
readings = st.builds(
    Reading,
    timestamp=timestamps,
    reactor=names,
    channel=st.sampled_from([c.name for c in CHANNELS]) | names,
    value=finite,
    unit=st.text(max_size=10),
    quality=st.sampled_from(list(Quality)),
)


def assert_same(decoded: Reading, original: Reading) -> None:
    assert decoded.reactor == original.reactor and decoded.channel == original.channel
    assert decoded.value == original.value and decoded.unit == original.unit
    assert decoded.quality is original.quality
    assert decoded.timestamp == pytest.approx(original.timestamp, abs=1e-3)


@given(readings)
def test_single_reading_round_trips(reading: Reading) -> None:
    payload = encode_reading(reading)
    assert json.loads(payload) == reading.to_payload()  # the fast encoder writes the contract
    decoded = decode_reading(payload, reactor=reading.reactor, channel=reading.channel, now=NOW)
    assert_same(decoded, reading)


@given(st.lists(readings, min_size=1, max_size=19, unique_by=lambda r: r.channel))
def test_snapshot_round_trips(batch: list[Reading]) -> None:
    batch = [Reading(r.timestamp, "r1", r.channel, r.value, r.unit, r.quality) for r in batch]
    decoded = decode_snapshot(encode_snapshot(batch), reactor="r1", now=NOW)
    assert len(decoded) == len(batch)
    for got, original in zip(decoded, batch, strict=True):
        assert_same(got, original)
