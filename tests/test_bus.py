"""The bus contract, run on every implementation: LocalBus and MqttBus on a real Mosquitto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from bptwin.database.bus import Bus, topics
from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Quality, Reading

TIMEOUT_S = 10.0  # generous upper bound for a message to arrive; never a speed assertion


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Inbox:
    """Thread-safe collector used as a handler."""

    def __init__(self) -> None:
        self.items: list = []
        self._lock = threading.Lock()

    def __call__(self, *args: object) -> None:
        with self._lock:
            self.items.append(args[0] if len(args) == 1 else args)

    def topics(self) -> list[str]:
        with self._lock:
            return [item[0] for item in self.items]

    def wait_count(self, count: int) -> bool:
        return wait_for(lambda: len(self.items) >= count)


def now_ms() -> float:
    return round(time.time(), 3)


def test_start_and_stop_are_idempotent(bus: Bus) -> None:
    bus.start()
    assert bus.connected
    bus.stop()
    bus.stop()
    assert not bus.connected
    bus.start()
    assert bus.connected


def test_publish_reaches_an_exact_subscription(bus: Bus, mqtt_prefix: str) -> None:
    inbox = Inbox()
    bus.subscribe(f"{mqtt_prefix}/a", inbox)
    bus.publish(f"{mqtt_prefix}/a", b"\x00\x01bytes", qos=1)
    bus.publish(f"{mqtt_prefix}/a", "text é", qos=1)
    assert inbox.wait_count(2)
    assert inbox.items == [
        (f"{mqtt_prefix}/a", b"\x00\x01bytes"),
        (f"{mqtt_prefix}/a", "text é".encode()),
    ]
    assert bus.stats.published >= 2


def test_wildcards(bus: Bus, mqtt_prefix: str) -> None:
    plus, hash_, exact = Inbox(), Inbox(), Inbox()
    bus.subscribe(f"{mqtt_prefix}/+/x", plus)
    bus.subscribe(f"{mqtt_prefix}/a/#", hash_)
    bus.subscribe(f"{mqtt_prefix}/b/x", exact)
    for suffix in ("a/x", "a/y", "b/x", "a/x/deep", "c/x"):
        bus.publish(f"{mqtt_prefix}/{suffix}", suffix, qos=1)
    bus.publish(f"{mqtt_prefix}/a/end", b"end", qos=1)
    assert hash_.wait_count(4)
    assert wait_for(lambda: len(plus.items) >= 3 and len(exact.items) >= 1)
    strip = len(mqtt_prefix) + 1
    assert sorted(t[strip:] for t in plus.topics()) == ["a/x", "b/x", "c/x"]
    assert sorted(t[strip:] for t in hash_.topics()) == ["a/end", "a/x", "a/x/deep", "a/y"]
    assert [t[strip:] for t in exact.topics()] == ["b/x"]


def test_cancel_stops_delivery_and_other_subscriptions_continue(bus: Bus, mqtt_prefix: str) -> None:
    cancelled, kept = Inbox(), Inbox()
    subscription = bus.subscribe(f"{mqtt_prefix}/#", cancelled)
    bus.subscribe(f"{mqtt_prefix}/sentinel", kept)
    bus.publish(f"{mqtt_prefix}/before", b"1", qos=1)
    assert cancelled.wait_count(1)
    subscription.cancel()
    subscription.cancel()  # idempotent
    assert not subscription.active
    bus.publish(f"{mqtt_prefix}/after", b"2", qos=1)
    bus.publish(f"{mqtt_prefix}/sentinel", b"3", qos=1)
    assert kept.wait_count(1)
    assert cancelled.topics() == [f"{mqtt_prefix}/before"]


def test_reading_round_trip(bus: Bus, mqtt_prefix: str) -> None:
    inbox = Inbox()
    bus.subscribe_readings(inbox, prefix=mqtt_prefix)
    sent = [
        Reading(now_ms(), "r1", "ph", 5.01, "pH"),
        Reading(now_ms(), "r2", "do", 87.5, "%sat", Quality.UNCERTAIN),
        Reading(now_ms(), "r1", "temp_broth", float("nan"), "°C", Quality.BAD),
    ]
    for reading in sent:
        bus.publish_reading(reading, prefix=mqtt_prefix)
    assert inbox.wait_count(3)
    for got, original in zip(inbox.items, sent, strict=True):
        assert (got.reactor, got.channel, got.unit, got.quality) == (
            original.reactor,
            original.channel,
            original.unit,
            original.quality,
        )
        assert got.timestamp == pytest.approx(original.timestamp, abs=1e-3)
    assert inbox.items[0].value == 5.01 and inbox.items[1].value == 87.5
    assert inbox.items[2].value != inbox.items[2].value  # NaN travels as null


def test_subscribe_readings_filters_reactor_and_channel(bus: Bus, mqtt_prefix: str) -> None:
    only_ph_r1 = Inbox()
    bus.subscribe_readings(only_ph_r1, reactor="r1", channel="ph", prefix=mqtt_prefix)
    everything = Inbox()
    bus.subscribe_readings(everything, prefix=mqtt_prefix)
    for reactor, channel in (("r1", "do"), ("r2", "ph"), ("r1", "ph")):
        bus.publish_reading(Reading(now_ms(), reactor, channel, 1.0), prefix=mqtt_prefix)
    bus.publish_snapshot(
        [Reading(now_ms(), "r1", "ph", 2.0), Reading(now_ms(), "r1", "do", 3.0)],
        prefix=mqtt_prefix,
    )
    assert everything.wait_count(5)
    assert only_ph_r1.wait_count(2)
    assert [(r.reactor, r.channel, r.value) for r in only_ph_r1.items] == [
        ("r1", "ph", 1.0),
        ("r1", "ph", 2.0),
    ]


def test_snapshot_of_all_catalogue_channels(bus: Bus, mqtt_prefix: str) -> None:
    inbox = Inbox()
    bus.subscribe_readings(inbox, reactor="r7", prefix=mqtt_prefix)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = {"ts": stamp, "values": {c.name: float(i) for i, c in enumerate(CHANNELS)}}
    bus.publish(topics.snapshot_topic("r7", mqtt_prefix), json.dumps(payload), qos=1)
    assert inbox.wait_count(len(CHANNELS))
    by_channel = {r.channel: r for r in inbox.items}
    assert set(by_channel) == {c.name for c in CHANNELS}
    for index, channel in enumerate(CHANNELS):
        assert by_channel[channel.name].value == float(index)
        assert by_channel[channel.name].unit == channel.unit  # from the catalogue


def test_malformed_payloads_are_counted_and_subscriber_keeps_working(
    bus: Bus, mqtt_prefix: str
) -> None:
    inbox = Inbox()
    bus.subscribe_readings(inbox, prefix=mqtt_prefix)
    before = bus.stats.malformed
    bad = [
        (topics.reading_topic("r1", "ph", mqtt_prefix), b"not json"),
        (topics.reading_topic("r1", "ph", mqtt_prefix), b'{"ts": 1, "value": 5}'),
        (topics.reading_topic("r1", "ph", mqtt_prefix), b'{"ts": 1794992400, "value": NaN}'),
        (topics.reading_topic("r1", "ph", mqtt_prefix), b"\xff" * 70_000),
        (topics.snapshot_topic("r1", mqtt_prefix), b'{"ts": 1794992400, "values": {"ph": "x"}}'),
        (topics.reading_topic("bad reactor", "ph", mqtt_prefix), b'{"ts": 1794992400, "value": 5}'),
    ]
    for topic, payload in bad:
        bus.publish(topic, payload, qos=1)
    good = Reading(now_ms(), "r1", "ph", 4.9, "pH")
    bus.publish_reading(good, prefix=mqtt_prefix)
    assert inbox.wait_count(1)
    assert wait_for(lambda: bus.stats.malformed - before >= len(bad))
    assert [r.value for r in inbox.items] == [4.9]
    assert bus.stats.malformed - before == len(bad)


def test_failing_handler_is_counted_and_delivery_continues(bus: Bus, mqtt_prefix: str) -> None:
    received = Inbox()

    def explode(topic: str, payload: bytes) -> None:
        received(topic, payload)
        raise RuntimeError("handler bug")

    bus.subscribe(f"{mqtt_prefix}/x", explode)
    for index in range(3):
        bus.publish(f"{mqtt_prefix}/x", str(index), qos=1)
    assert received.wait_count(3)
    assert wait_for(lambda: bus.stats.handler_errors >= 3)
    assert [payload for _, payload in received.items] == [b"0", b"1", b"2"]


def test_slow_handler_does_not_block_the_publisher(bus: Bus, mqtt_prefix: str) -> None:
    release = threading.Event()
    released_in_time: list[bool] = []

    def slow(topic: str, payload: bytes) -> None:
        # If publish() ran handlers itself, it would wait here and never set `release`.
        released_in_time.append(release.wait(TIMEOUT_S))

    bus.subscribe(f"{mqtt_prefix}/slow", slow)
    for _ in range(5):
        bus.publish(f"{mqtt_prefix}/slow", b"x", qos=1)
    release.set()
    assert wait_for(lambda: len(released_in_time) == 5)
    assert all(released_in_time)


def test_retained_message_reaches_a_later_subscriber(bus: Bus, mqtt_prefix: str) -> None:
    topic = topics.status_topic("r1", "acquisition", mqtt_prefix)
    bus.publish(topic, b"running", qos=1, retain=True)
    probe = Inbox()
    bus.subscribe(topic, probe)  # the retained copy proves the broker has it
    try:
        assert probe.wait_count(1)
        late = Inbox()
        bus.subscribe(topic, late)
        assert late.wait_count(1)
        assert late.items == [(topic, b"running")]
    finally:
        bus.publish(topic, b"", qos=1, retain=True)  # leave the broker as we found it


def test_bad_arguments_are_refused_with_a_reason(bus: Bus) -> None:
    with pytest.raises(ValueError, match="topic"):
        bus.publish("a/+/b", b"x")
    with pytest.raises(ValueError, match="pattern"):
        bus.subscribe("a/#/b", Inbox())
    with pytest.raises(ValueError, match="qos"):
        bus.publish("a/b", b"x", qos=3)
