"""Store-and-forward on the bus: the durable MQTT outbox against a real Mosquitto.

The broker is stopped while messages are published, the publishing process is SIGKILLed
mid-stream: every message ``publish`` accepted reaches the broker, in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptwin.database.bus import MqttBus
from bptwin.database.bus.outbox import decode_message, encode_message
from tests.fixtures.mqtt import MosquittoServer
from tests.fixtures.servers import free_port
from tests.test_bus import wait_for

pytestmark = pytest.mark.mqtt

ROOT = Path(__file__).resolve().parents[1]
FAST_RECONNECT = (1, 2)


class Counter:
    """Collects the ``i`` of every JSON message on a topic (thread-safe)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.seen.append(json.loads(payload)["i"])

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        return wait_for(lambda: len(set(self.seen)) >= count, timeout=timeout)


@pytest.fixture
def buses() -> Iterator[list[MqttBus]]:
    made: list[MqttBus] = []
    yield made
    for bus in made:
        bus.close()


@given(
    topic=st.text(min_size=1, max_size=80).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=300),
    qos=st.sampled_from([1, 2]),
    retain=st.booleans(),
)
def test_outbox_items_round_trip(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    assert decode_message(encode_message(topic, payload, qos, retain)) == (
        topic,
        payload,
        qos,
        retain,
    )


def test_broker_outage_is_replayed_in_order_without_loss_or_duplicates(
    private_mqtt_broker: MosquittoServer, tmp_path: Path, buses: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    bus = MqttBus(
        host, port, reconnect_delay_s=FAST_RECONNECT, outbox_path=tmp_path / "outbox.sqlite"
    )
    buses.append(bus)
    counter = Counter()
    bus.subscribe("sf/+", counter)
    bus.start()
    for i in range(100):
        bus.publish("sf/a", json.dumps({"i": i}), qos=1)
    assert counter.wait_for(100)

    private_mqtt_broker.stop()
    assert wait_for(lambda: not bus.connected)
    for i in range(100, 400):
        bus.publish("sf/a", json.dumps({"i": i}), qos=1)  # never raises, never drops
    assert bus.outbox_depth >= 300
    assert bus.stats.dropped == 0

    private_mqtt_broker.start()
    assert counter.wait_for(400)
    assert wait_for(lambda: bus.outbox_depth == 0)
    assert counter.seen == list(range(400))  # in order, once each


def test_messages_left_in_the_outbox_at_stop_are_sent_by_the_next_start(
    private_mqtt_broker: MosquittoServer, tmp_path: Path, buses: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    outbox = tmp_path / "outbox.sqlite"
    first = MqttBus(host, port, reconnect_delay_s=FAST_RECONNECT, outbox_path=outbox)
    first.start()
    private_mqtt_broker.stop()
    assert wait_for(lambda: not first.connected)
    for i in range(50):
        first.publish("sf/b", json.dumps({"i": i}), qos=1)
    first.close()  # the broker is away: the 50 stay on disk

    private_mqtt_broker.start()
    counter = Counter()
    second = MqttBus(host, port, outbox_path=outbox)
    buses.append(second)
    assert second.outbox_depth == 50
    second.subscribe("sf/+", counter)
    second.start()
    assert counter.wait_for(50)
    assert counter.seen == list(range(50))
    assert wait_for(lambda: second.outbox_depth == 0)


PUBLISHER = """
import json, sys, time
from bptwin.database.bus import MqttBus

host, port, outbox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bus = MqttBus(host, port, outbox_path=outbox)
try:
    bus.start()
except OSError:
    pass  # broker down at start: publishes wait in the outbox
for i in range(int(sys.argv[4])):
    bus.publish("sf/kill", json.dumps({"i": i}), qos=1)
    print(i, flush=True)  # printed only after publish() accepted it
    if i % 50 == 0:
        time.sleep(0.01)
time.sleep(600)
"""


def run_publisher(host: str, port: int, outbox: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, host, str(port), str(outbox), str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_stream_loses_no_accepted_message(
    private_mqtt_broker: MosquittoServer, tmp_path: Path, buses: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    outbox = tmp_path / "outbox.sqlite"
    counter = Counter()
    watcher = MqttBus(host, port)
    buses.append(watcher)
    watcher.subscribe("sf/+", counter)
    watcher.start()

    publisher = run_publisher(host, port, outbox, 100_000)
    assert publisher.stdout is not None
    accepted = -1
    try:
        for line in publisher.stdout:
            accepted = int(line)
            if accepted >= 3000:
                break
        publisher.send_signal(signal.SIGKILL)  # mid-stream, with messages in flight
        publisher.wait(timeout=10)
    finally:
        publisher.kill()
    assert accepted >= 3000

    # The next start of the same outbox replays what the broker had not acknowledged.
    restarted = MqttBus(host, port, outbox_path=outbox)
    buses.append(restarted)
    restarted.start()
    assert counter.wait_for(accepted + 1)
    assert wait_for(lambda: restarted.outbox_depth == 0)
    assert set(range(accepted + 1)) <= set(counter.seen)
    first_seen = list(dict.fromkeys(counter.seen))
    assert first_seen == sorted(first_seen)  # replay kept the original order


def test_publishes_before_the_broker_is_reachable_wait_in_the_outbox(
    private_mqtt_broker: MosquittoServer, tmp_path: Path, buses: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    outbox = tmp_path / "outbox.sqlite"
    dead = MqttBus(host, free_port(), outbox_path=outbox, connect_timeout_s=1)
    for i in range(20):
        dead.publish("sf/c", json.dumps({"i": i}), qos=1)
    with pytest.raises(OSError):
        dead.start()
    assert dead.outbox_depth == 20
    dead.close()
    counter = Counter()
    live = MqttBus(host, port, outbox_path=outbox)
    buses.append(live)
    live.subscribe("sf/+", counter)
    live.start()
    assert counter.wait_for(20)
    assert counter.seen == list(range(20))
    assert wait_for(lambda: live.outbox_depth == 0)


def test_commands_are_never_queued_while_the_broker_is_away(
    private_mqtt_broker: MosquittoServer, tmp_path: Path, buses: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    bus = MqttBus(
        host,
        port,
        reconnect_delay_s=FAST_RECONNECT,
        outbox_path=tmp_path / "outbox.sqlite",
        not_queued=("plant/v1/+/setpoints/+",),
    )
    buses.append(bus)
    bus.start()
    private_mqtt_broker.stop()
    assert wait_for(lambda: not bus.connected)
    with pytest.raises(ConnectionError, match="not queued"):
        bus.publish("plant/v1/R1/setpoints/stirrer_speed", b'{"value": 900}', qos=1)
    bus.publish("plant/v1/R1/sensors/ph", b'{"value": 5}', qos=1)  # data is queued
    assert bus.outbox_depth == 1
