"""Bus throughput: LocalBus in-process, MqttBus over a real Mosquitto on loopback, and the
raw paho floor measured in the same run (docs/performance.md: read results as a ratio to it).

Publisher and subscriber of the MQTT benchmarks run in separate processes, as the floor
in docs/performance.md was measured; the rate is taken between the first and the last message
the subscriber receives.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bptwin.database.bus import LocalBus, MqttBus, topics
from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Reading

SINGLE_MESSAGES = 20_000
SNAPSHOT_MESSAGES = 2_000
LOCAL_READINGS = 100_000
WAIT_S = 40.0  # give up on a run that takes longer than this
PREFIX = os.environ.get("BPTWIN_BENCH_PREFIX", f"bench-{os.getpid()}")  # child inherits it


# --- broker --------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


FLOOD_CONFIG = "max_queued_messages 1000000\nmax_inflight_messages 1000\n"


@contextmanager
def _broker(extra_config: str = FLOOD_CONFIG) -> Iterator[tuple[str, int] | None]:
    """A throwaway Mosquitto configured as docs/mqtt.md recommends, else None.

    Not the machine's broker: its default max_queued_messages (1000) drops QoS 1
    messages for a subscriber that falls behind a full-speed publisher. ``extra_config=""``
    keeps Mosquitto's defaults (what an unconfigured broker does under a flood).
    """
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as folder, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        config = Path(folder) / "mosquitto.conf"
        user = "root" if os.getuid() == 0 else os.environ.get("USER", "")
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            + extra_config
            + (f"user {user}\n" if user else "")
        )
        process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not _port_open(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            yield ("127.0.0.1", port)
        finally:
            process.terminate()
            process.wait(10)


# --- publishers (run in a child process: python bench_bus.py publish <kind> ...) ------


def _reading_payload(index: int) -> bytes:
    return json.dumps(
        {"ts": time.time(), "value": 5.0 + index * 1e-6, "unit": "pH", "quality": "good"}
    ).encode()


def _publish_raw(host: str, port: int, count: int) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    topic = topics.reading_topic("r1", "ph", PREFIX + "-raw")
    info = None
    for index in range(count):
        info = client.publish(topic, _reading_payload(index), qos=1)
    if info is not None:
        info.wait_for_publish(WAIT_S)
    client.disconnect()
    client.loop_stop()


def _publish_bus(host: str, port: int, count: int, snapshot: bool) -> None:
    bus = MqttBus(host, port)
    bus.start()
    for index in range(count):
        stamp = time.time()
        if snapshot:
            bus.publish_snapshot(
                [Reading(stamp, "r1", c.name, index * 1e-3, c.unit) for c in CHANNELS],
                prefix=PREFIX + "-snap",
            )
        else:
            bus.publish_reading(Reading(stamp, "r1", "ph", 5.0, "pH"), prefix=PREFIX + "-one")
    bus.flush(WAIT_S)  # until the broker acknowledged every QoS 1 message
    bus.stop()


def _spawn(kind: str, host: str, port: int, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "publish", kind, host, str(port), str(count)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "BPTWIN_BENCH_PREFIX": PREFIX},
    )


# --- subscribers -----------------------------------------------------------------------


class _Clock:
    """Counts arrivals and notes the first and last arrival time."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()

    def tick(self, amount: int = 1) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += amount
        self.last = now
        if self.count >= self.expected:
            self.done.set()

    def rate(self) -> float:
        span = self.last - self.first
        return (self.count - 1) / span if span > 0 else 0.0


def _raw_floor(host: str, port: int) -> float:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    clock = _Clock(SINGLE_MESSAGES)
    subscribed = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2)

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        json.loads(message.payload)
        clock.tick()

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    client.subscribe(topics.readings_pattern(prefix=PREFIX + "-raw"), qos=1)
    subscribed.wait(10)
    publisher = _spawn("raw", host, port, SINGLE_MESSAGES)
    clock.done.wait(WAIT_S)
    publisher.wait(WAIT_S)
    client.disconnect()
    client.loop_stop()
    return clock.rate()


def _bus_rate(host: str, port: int, snapshot: bool) -> tuple[float, int, int]:
    messages = SNAPSHOT_MESSAGES if snapshot else SINGLE_MESSAGES
    per_message = len(CHANNELS) if snapshot else 1
    clock = _Clock(messages * per_message)
    bus = MqttBus(host, port)
    bus.start()
    bus.subscribe_readings(
        lambda reading: clock.tick(), prefix=PREFIX + ("-snap" if snapshot else "-one")
    )
    publisher = _spawn("snapshot" if snapshot else "single", host, port, messages)
    clock.done.wait(WAIT_S)
    publisher.wait(WAIT_S)
    bus.stop()
    return clock.rate(), clock.count, messages * per_message


# --- benchmarks --------------------------------------------------------------------------


def bench_local_bus() -> list[dict]:
    """LocalBus: publish_reading -> dispatcher -> decode -> handler, in one process."""
    bus = LocalBus(max_pending=LOCAL_READINGS + 10)
    received = []
    bus.subscribe_readings(received.append, prefix=PREFIX)
    raw_count = [0]
    bus.subscribe(
        f"{PREFIX}-raw/#", lambda topic, payload: raw_count.__setitem__(0, raw_count[0] + 1)
    )
    bus.start()
    stamp = time.time()
    readings = [Reading(stamp, "r1", "ph", 5.0, "pH") for _ in range(LOCAL_READINGS)]
    started = time.perf_counter()
    for reading in readings:
        bus.publish_reading(reading, prefix=PREFIX)
    published = time.perf_counter()
    bus.drain(WAIT_S)
    delivered = time.perf_counter()
    started_raw = time.perf_counter()
    for _ in range(LOCAL_READINGS):
        bus.publish(f"{PREFIX}-raw/x", b"x")
    bus.drain(WAIT_S)
    raw = time.perf_counter() - started_raw
    bus.stop()
    return [
        {
            "benchmark": "bus.local readings end to end",
            "value": len(received) / (delivered - started),
            "unit": "readings/s",
            "note": f"{len(received)}/{LOCAL_READINGS} delivered; encode + decode JSON included",
        },
        {
            "benchmark": "bus.local publish_reading call",
            "value": LOCAL_READINGS / (published - started),
            "unit": "calls/s",
            "note": "publisher side only (handlers run on the dispatcher thread)",
        },
        {
            "benchmark": "bus.local raw messages",
            "value": raw_count[0] / raw,
            "unit": "msg/s",
            "note": "publish(bytes) -> wildcard match -> handler",
        },
    ]


def bench_mqtt_bus() -> list[dict]:
    """MqttBus over loopback Mosquitto, QoS 1, against the raw paho floor of the same run."""
    with _broker() as address:
        if address is None:
            return [{"benchmark": "bus.mqtt", "value": "skipped", "unit": "",
                     "note": "no broker on 1883 and mosquitto not installed"}]  # fmt: skip
        host, port = address
        floor = _raw_floor(host, port)
        single, single_got, single_sent = _bus_rate(host, port, snapshot=False)
        snap, snap_got, snap_sent = _bus_rate(host, port, snapshot=True)
    ratio = f"{single / floor:.2f}× the raw paho floor" if floor else "no floor"
    return [
        {
            "benchmark": "bus.mqtt raw paho floor (QoS 1)",
            "value": floor,
            "unit": "msg/s",
            "note": f"{SINGLE_MESSAGES} msgs, json.loads in callback; floor ~3 700",
        },
        {
            "benchmark": "bus.mqtt single-reading payloads",
            "value": single,
            "unit": "readings/s",
            "note": f"{single_got}/{single_sent} received; {ratio}",
        },
        {
            "benchmark": "bus.mqtt snapshot payloads (19 ch)",
            "value": snap,
            "unit": "readings/s",
            "note": f"{snap_got}/{snap_sent} received; {snap / len(CHANNELS):,.0f} msg/s, "
            f"{snap / floor:.1f}× the floor"
            if floor
            else "",
        },
    ]


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "publish":
        kind, host, port, count = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        if kind == "raw":
            _publish_raw(host, port, count)
        else:
            _publish_bus(host, port, count, snapshot=kind == "snapshot")
    else:
        for row in bench_local_bus() + bench_mqtt_bus():
            print(row)
