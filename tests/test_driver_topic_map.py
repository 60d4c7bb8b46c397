"""TopicMap: lab topic trees to channels, payload decoding, and clear refusals."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptwin.database.reading import Quality
from bptwin.drivers.topic_map import (
    PayloadError,
    TopicMap,
    TopicMapError,
    TopicRule,
    filter_covers,
)

NOW = 1_790_000_000.0  # 2026-09-21, a fixed arrival time


def lab_map() -> TopicMap:
    return TopicMap.from_settings(
        [
            {"topic": "bioprocess/pichia/{reactor}/sensors/offgas/co2", "channel": "offgas_co2"},
            {
                "topic": "bioprocess/pichia/{reactor}/sensors/offgas/o2_ppm",
                "channel": "offgas_o2",
                "value_path": "data.reading",
                "timestamp_path": "data.at",
                "scale": 1e-4,
                "unit": "%v/v",
            },
            {"topic": "plant/f3/ph", "channel": "ph", "reactor": "F3"},
        ]
    )


def decode(topic_map: TopicMap, topic: str, payload: bytes | str):
    raw = payload.encode() if isinstance(payload, str) else payload
    return topic_map.decode(topic, raw, arrived_at=NOW, default_reactor="R1")


def test_a_plain_number_on_a_lab_topic_becomes_a_reading_at_arrival_time() -> None:
    (reading,) = decode(lab_map(), "bioprocess/pichia/vessel1/sensors/offgas/co2", "1.25")
    assert (reading.reactor, reading.channel, reading.value) == ("vessel1", "offgas_co2", 1.25)
    assert reading.timestamp == NOW
    assert reading.unit == "%v/v"  # from the channel catalogue
    assert reading.quality is Quality.GOOD


def test_value_path_timestamp_path_and_scale() -> None:
    payload = json.dumps({"data": {"reading": 209000, "at": "2026-09-21T10:00:00Z"}})
    (reading,) = decode(lab_map(), "bioprocess/pichia/v2/sensors/offgas/o2_ppm", payload)
    assert reading.channel == "offgas_o2"
    assert reading.value == pytest.approx(20.9)
    assert reading.timestamp == 1_790_000_000.0 - 1_790_000_000.0 % 86400 + 36000


def test_fixed_reactor_rule() -> None:
    (reading,) = decode(lab_map(), "plant/f3/ph", '{"value": 5.02, "ts": 1789999990}')
    assert (reading.reactor, reading.channel, reading.timestamp) == ("F3", "ph", 1789999990.0)


def test_bptwin_contract_is_the_default_including_snapshots() -> None:
    default = TopicMap.default()
    payload = '{"ts": "2026-09-21T00:00:00Z", "value": 30.1, "unit": "°C", "quality": "uncertain"}'
    (reading,) = decode(default, "bptwin/v1/R2/sensors/temp_broth", payload)
    assert (reading.reactor, reading.channel, reading.value) == ("R2", "temp_broth", 30.1)
    assert reading.quality is Quality.UNCERTAIN
    snapshot = {"ts": 1789999000, "values": {"ph": 5.0, "do": {"value": 88.0, "quality": "good"}}}
    readings = decode(default, "bptwin/v1/R2/sensors", json.dumps(snapshot))
    assert [(r.channel, r.value, r.timestamp) for r in readings] == [
        ("ph", 5.0, 1789999000.0),
        ("do", 88.0, 1789999000.0),
    ]


def test_null_value_is_a_bad_reading_and_impossible_values_are_flagged_bad() -> None:
    default = TopicMap.default()
    (missing,) = decode(default, "bptwin/v1/R1/sensors/ph", '{"ts": 1789999000, "value": null}')
    assert math.isnan(missing.value) and missing.quality is Quality.BAD
    (impossible,) = decode(default, "bptwin/v1/R1/sensors/do", '{"ts": 1789999000, "value": 170}')
    assert impossible.value == 170 and impossible.quality is Quality.BAD


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("bptwin/v1/R1/sensors/ph", "{not json", "malformed"),
        ("bptwin/v1/R1/sensors/ph", '{"value": NaN}', "malformed"),
        ("bptwin/v1/R1/sensors/ph", "1e999", "wrong_type"),
        ("bptwin/v1/R1/sensors/ph", '{"value": "5.0"}', "wrong_type"),
        ("bptwin/v1/R1/sensors/ph", '{"value": true}', "wrong_type"),
        ("bptwin/v1/R1/sensors/ph", "[1, 2]", "wrong_type"),
        ("bptwin/v1/R1/sensors/ph", "true", "wrong_type"),
        ("bptwin/v1/R1/sensors/ph", '{"value": 5, "ts": 12}', "timestamp"),
        ("bptwin/v1/R1/sensors/ph", '{"value": 5, "ts": "9999-01-01T00:00:00Z"}', "timestamp"),
        ("bptwin/v1/R1/sensors/ph", '{"value": 5, "ts": "yesterday"}', "timestamp"),
        ("bptwin/v1/R1/sensors/ph", '{"reading": 5}', "missing_field"),
        ("bptwin/v1/R1/sensors/ph", b"\xff\xfe", "malformed"),
        ("bptwin/v1/R1/sensors/ph", b"1" * 70_000, "too_large"),
        ("bptwin/v1/R1/sensors/not_a_channel", "5", "unmapped"),
        ("bptwin/v1/R1/sensors", '{"ts": 1789999000, "values": {"xyz": 1}}', "unmapped"),
        ("bptwin/v1/R1/sensors", '{"ts": 1789999000, "values": {}}', "wrong_type"),
        ("elsewhere/ph", "5", "unmapped"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(topic: str, payload: str | bytes, reason: str):
    with pytest.raises(PayloadError) as refused:
        decode(TopicMap.default(), topic, payload)
    assert refused.value.reason == reason
    assert str(refused.value)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_arbitrary_payloads_never_raise_anything_but_a_payload_error(payload: bytes) -> None:
    for topic in ("bptwin/v1/R1/sensors/ph", "bptwin/v1/R1/sensors"):
        try:
            readings = TopicMap.default().decode(
                topic, payload, arrived_at=NOW, default_reactor="R1"
            )
        except PayloadError as exc:
            assert exc.reason
        else:
            assert all(math.isfinite(r.value) or r.quality is Quality.BAD for r in readings)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"topic": "a/b"}], "needs a channel"),
        ([{"topic": "a/b", "channel": "co2"}], "unknown channel 'co2'"),
        ([{"topic": "a/#/b", "channel": "ph"}], "'#' may only be the last level"),
        ([{"topic": "a/x+/b", "channel": "ph"}], "mixes text and a wildcard"),
        ([{"topic": "a//b", "channel": "ph"}], "empty topic level"),
        ([{"topic": "a/b", "channel": "ph", "colour": "red"}], "unknown keys ['colour']"),
        ([{"topic": "a/b", "channel": "ph", "scale": 0}], "scale must be finite and non-zero"),
        ([{"channel": "ph"}], "needs a table with a 'topic' key"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(rules: list[dict], message: str) -> None:
    with pytest.raises(TopicMapError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TopicMap.from_settings(rules)


def test_simple_table_form_and_empty_setting() -> None:
    simple = TopicMap.from_settings({"lab/v1/co2": "offgas_co2", "lab/v2/o2": "vessel2/offgas_o2"})
    assert simple.subscriptions() == ["lab/v1/co2", "lab/v2/o2"]
    (co2,) = decode(simple, "lab/v1/co2", "0.5")
    (o2,) = decode(simple, "lab/v2/o2", "20.1")
    assert (co2.reactor, co2.channel) == ("R1", "offgas_co2")  # the driver's default reactor
    assert (o2.reactor, o2.channel) == ("vessel2", "offgas_o2")
    with pytest.raises(TopicMapError, match="'channel' or 'reactor/channel'"):
        TopicMap.from_settings({"lab/x": "a/b/ph"})
    assert TopicMap.from_settings({}).subscriptions() == [
        "bptwin/v1/+/sensors/+",
        "bptwin/v1/+/sensors",
    ]


def test_overlapping_filters_are_subscribed_once() -> None:
    topic_map = TopicMap([TopicRule("lab/+/ph", channel="ph"), TopicRule("lab/#", channel="do")])
    assert topic_map.subscriptions() == ["lab/#"]
    assert filter_covers("a/+/c", "a/b/c") and not filter_covers("a/b/c", "a/+/c")
    assert not filter_covers("a/+", "a/+/c")


def test_loop_guard_sees_the_own_contract() -> None:
    assert TopicMap.default().overlaps_prefix("bptwin")
    assert not lab_map().overlaps_prefix("bptwin")
