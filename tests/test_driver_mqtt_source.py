"""The MQTT source against the real broker: fed by mosquitto_pub and by bptwin's publisher."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus
from bptwin.database.reading import Quality, Reading
from bptwin.drivers.base import DriverThread
from bptwin.drivers.mqtt_source import MqttSourceDriver
from bptwin.drivers.topic_map import TopicMap
from tests.driver_sinks import WAIT_S, Collector, wait_for
from tests.fixtures.mqtt import mosquitto_tool
from tests.fixtures.servers import server_missing

pytestmark = pytest.mark.mqtt


def new_bus(broker: tuple[str, int]) -> MqttBus:
    return MqttBus(*broker, client_id=f"bptwin-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def publisher(mqtt_broker: tuple[str, int]) -> Iterator[MqttBus]:
    bus = new_bus(mqtt_broker)
    bus.start()
    yield bus
    bus.stop()


def start_source(
    broker: tuple[str, int], topic_map: TopicMap, publisher: MqttBus, probe_topic: str
) -> tuple[MqttSourceDriver, DriverThread, Collector]:
    """Start the source on a bus of its own and return once its subscriptions are live."""
    sink = Collector()
    bus = new_bus(broker)
    driver = MqttSourceDriver(sink, bus, topic_map, reactor="R9", manage_bus=True)
    thread = DriverThread(driver).start()
    wait_for(lambda: driver.stats.connected, "the source to connect")
    # The broker handles one client's SUBSCRIBEs in order: once a later probe subscription
    # delivers, the driver's own subscriptions are live too.
    seen = threading.Event()
    probe = bus.subscribe(probe_topic, lambda _t, _p: seen.set())
    deadline = time.monotonic() + WAIT_S
    while not seen.is_set() and time.monotonic() < deadline:
        publisher.publish(probe_topic, b"ping", qos=1)
        seen.wait(0.2)
    probe.cancel()
    assert seen.is_set(), "probe message never arrived"
    return driver, thread, sink


def mosquitto_pub(broker: tuple[str, int], topic: str, *, message: str | None = None, file=None):
    tool = mosquitto_tool("mosquitto_pub")
    if tool is None:
        server_missing("mosquitto_pub is not installed (Debian package 'mosquitto-clients')")
    source = ["-f", str(file)] if file is not None else ["-m", message or ""]
    subprocess.run(
        [tool, "-h", broker[0], "-p", str(broker[1]), "-q", "1", "-t", topic, *source],
        check=True,
        timeout=WAIT_S,
    )


def test_lab_topic_tree_fed_by_mosquitto_pub(
    mqtt_broker: tuple[str, int], publisher: MqttBus, mqtt_prefix: str, tmp_path: Path
) -> None:
    lab = f"{mqtt_prefix}/bioprocess/pichia"
    topic_map = TopicMap.from_settings(
        [
            {"topic": f"{lab}/{{reactor}}/sensors/offgas/co2", "channel": "offgas_co2"},
            {
                "topic": f"{lab}/{{reactor}}/sensors/offgas/o2",
                "channel": "offgas_o2",
                "value_path": "data.v",
            },
            {"topic": f"{lab}/{{reactor}}/sensors/ph", "channel": "ph"},
        ]
    )
    driver, thread, sink = start_source(mqtt_broker, topic_map, publisher, f"{lab}/probe")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"value": 1.0, "pad": "x" * 70_000}))
    try:
        mosquitto_pub(mqtt_broker, f"{lab}/vessel1/sensors/offgas/co2", message="1.75")
        mosquitto_pub(
            mqtt_broker,
            f"{lab}/vessel1/sensors/offgas/o2",
            message=json.dumps({"data": {"v": 19.8}, "ts": "2026-11-23T10:00:00Z"}),
        )
        bad = [
            (f"{lab}/vessel1/sensors/ph", "{broken"),  # malformed JSON
            (f"{lab}/vessel1/sensors/ph", '{"value": NaN}'),  # NaN is not JSON
            (f"{lab}/vessel1/sensors/ph", '{"value": "five"}'),  # wrong type
            (f"{lab}/vessel1/sensors/ph", '{"value": 5, "ts": 1}'),  # absurd timestamp
            (f"{lab}/vessel1/sensors/offgas/o2", '{"v": 19.8}'),  # field missing
        ]
        for topic, payload in bad:
            mosquitto_pub(mqtt_broker, topic, message=payload)
        mosquitto_pub(mqtt_broker, f"{lab}/vessel1/sensors/ph", file=huge)
        mosquitto_pub(mqtt_broker, f"{lab}/vessel2/sensors/ph", message="5.05")  # still alive
        wait_for(lambda: len(sink.snapshot()) >= 3, "three readings")
        wait_for(lambda: driver.stats.rejected >= 6, "six rejected payloads")
    finally:
        assert thread.stop()
    got = sorted((r.reactor, r.channel, r.value) for r in sink.snapshot())
    assert got == [
        ("vessel1", "offgas_co2", 1.75),
        ("vessel1", "offgas_o2", 19.8),
        ("vessel2", "ph", 5.05),
    ]
    o2 = next(r for r in sink.snapshot() if r.channel == "offgas_o2")
    assert o2.time.isoformat() == "2026-11-23T10:00:00+00:00"
    assert dict(driver.stats.rejected_by_reason) == {
        "malformed": 2,
        "wrong_type": 1,
        "timestamp": 1,
        "missing_field": 1,
        "too_large": 1,
    }
    assert thread.failure is None


def test_bptwin_contract_fed_by_the_project_publisher(
    mqtt_broker: tuple[str, int], publisher: MqttBus, mqtt_prefix: str
) -> None:
    topic_map = TopicMap.default(prefix=mqtt_prefix)
    driver, thread, sink = start_source(mqtt_broker, topic_map, publisher, f"{mqtt_prefix}/probe")
    start = time.time() - 100
    sent = [Reading(start + i, "R2", "do", 90.0 - i, "%sat") for i in range(50)]
    try:
        for reading in sent:
            publisher.publish_reading(reading, prefix=mqtt_prefix)
        publisher.publish_snapshot(
            [
                Reading(start + 60, "R2", "ph", 5.01, "pH"),
                Reading(start + 60, "R2", "temp_broth", math.nan, "°C", Quality.BAD),
            ],
            prefix=mqtt_prefix,
        )
        wait_for(lambda: len(sink.snapshot()) >= 52, "52 readings")
    finally:
        assert thread.stop()
    received = sink.snapshot()
    singles = [r for r in received if r.channel == "do"]
    assert [(r.timestamp, r.value) for r in singles] == [
        (pytest.approx(s.timestamp, abs=1e-3), s.value) for s in sent
    ]
    snap = {r.channel: r for r in received if r.channel != "do"}
    assert snap["ph"].value == 5.01 and snap["ph"].reactor == "R2"
    assert math.isnan(snap["temp_broth"].value) and snap["temp_broth"].quality is Quality.BAD
    assert driver.stats.rejected == 0


def test_own_contract_into_the_same_broker_is_refused_as_a_loop(mqtt_broker) -> None:
    with pytest.raises(ValueError, match="would loop"):
        MqttSourceDriver(print, new_bus(mqtt_broker), TopicMap.default(), sink_prefix="bptwin")


def test_broker_restart_is_a_counted_reconnect_and_readings_resume(private_mqtt_broker) -> None:
    broker = private_mqtt_broker.address
    topic_map = TopicMap.from_settings({"lab/vessel1/co2": "vessel1/offgas_co2"})
    sink = Collector()
    bus = MqttBus(*broker, client_id="bptwin-test-source", reconnect_delay_s=(1, 1))
    driver = MqttSourceDriver(sink, bus, topic_map, manage_bus=True)
    thread = DriverThread(driver).start()
    try:
        wait_for(lambda: driver.stats.connected, "the source to connect")
        feed = new_bus(broker)
        feed.start()
        wait_for(lambda: _published_until_received(feed, sink, "lab/vessel1/co2", 1.5), "a reading")
        feed.stop()
        private_mqtt_broker.stop()
        wait_for(lambda: not driver.stats.connected, "the source to see the broker gone")
        private_mqtt_broker.start()
        wait_for(lambda: driver.stats.connected, "the source to reconnect")
        feed = new_bus(broker)
        feed.start()
        wait_for(
            lambda: _published_until_received(feed, sink, "lab/vessel1/co2", 2.5), "a reading after"
        )
        feed.stop()
    finally:
        assert thread.stop()
    assert driver.stats.reconnects >= 1
    values = [r.value for r in sink.snapshot()]
    assert set(values) == {1.5, 2.5} and values[-1] == 2.5
    assert {(r.reactor, r.channel) for r in sink.snapshot()} == {("vessel1", "offgas_co2")}
    assert thread.failure is None


def _published_until_received(feed: MqttBus, sink: Collector, topic: str, value: float) -> bool:
    """Publish ``value`` on ``topic`` once and report whether the sink has received it yet.

    The broker forgets subscriptions when it restarts (persistence off); until the source's
    bus has resubscribed, messages are lost, so keep publishing until one arrives.
    """
    if any(r.value == value for r in sink.snapshot()):
        return True
    feed.publish(topic, str(value), qos=1)
    time.sleep(0.2)
    return any(r.value == value for r in sink.snapshot())


def test_a_broker_down_at_start_is_retried_not_fatal(private_mqtt_broker) -> None:
    broker = private_mqtt_broker.address
    private_mqtt_broker.stop()
    sink = Collector()
    bus = MqttBus(*broker, client_id="bptwin-test-late", connect_timeout_s=1.0)
    driver = MqttSourceDriver(sink, bus, TopicMap.from_settings({"lab/ph": "ph"}), manage_bus=True)
    thread = DriverThread(driver).start()
    try:
        wait_for(lambda: driver.stats.errors >= 1, "a failed connect to be counted")
        assert thread.is_alive and not driver.stats.connected
        private_mqtt_broker.start()
        wait_for(lambda: driver.stats.connected, "the source to connect once the broker is up")
        feed = new_bus(broker)
        feed.start()
        wait_for(lambda: _published_until_received(feed, sink, "lab/ph", 5.5), "a reading")
        feed.stop()
    finally:
        assert thread.stop()
    assert thread.failure is None
