"""MQTT ingest, publisher to store: a separate publisher process sends a batch over loopback
Mosquitto; the station's path (MqttBus -> Recorder -> EmbeddedStore) stores it. The rate is
readings stored per second, clocked from the first publish to the last reading committed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_bus import _broker  # noqa: E402  (a throwaway broker sized for floods)
from bptwin.database.bus import MqttBus  # noqa: E402
from bptwin.database.channels import CHANNELS  # noqa: E402
from bptwin.database.recorder import Recorder  # noqa: E402
from bptwin.database.timeseries.embedded import EmbeddedStore  # noqa: E402

SECONDS_OF_BATCH = 1200  # 20 min of a 19-channel batch: 22 800 readings
PUBLISHER = """
import sys, time
from bptwin.database.bus import MqttBus
from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Reading
host, port, seconds, snapshot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
bus = MqttBus(host, port)
bus.start()
start = time.time() - seconds - 60
for second in range(seconds):
    value = 1.0 + second * 1e-3
    readings = [Reading(start + second, "R1", c.name, value, c.unit) for c in CHANNELS]
    if snapshot:
        bus.publish_snapshot(readings, prefix="ingest")
    else:
        for reading in readings:
            bus.publish_reading(reading, prefix="ingest")
bus.flush(60)
bus.stop()
"""


def _ingest(host: str, port: int, snapshot: bool) -> tuple[float, int, int]:
    expected = SECONDS_OF_BATCH * len(CHANNELS)
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "ts.sqlite")
        recorder = Recorder(store)
        bus = MqttBus(host, port)
        bus.start()
        bus.subscribe_readings(recorder.add, prefix="ingest")
        time.sleep(0.3)  # the subscription reaches the broker before the flood
        started = time.perf_counter()
        publisher = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, host, str(port), str(SECONDS_OF_BATCH),
             "1" if snapshot else "0"],
            cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while recorder.stats().received < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.flush(30)
        elapsed = time.perf_counter() - started
        publisher.wait(60)
        bus.stop()
        recorder.close()
        stored = sum(len(store.read_range("R1", c.name, 0, 4e9)) for c in CHANNELS)
        store.close()
    return stored / elapsed, stored, expected


def bench_mqtt_ingest_to_store() -> list[dict]:
    with _broker() as address:
        if address is None:
            return [{"benchmark": "ingest.mqtt", "value": "skipped", "unit": "",
                     "note": "mosquitto not installed"}]  # fmt: skip
        host, port = address
        single, single_stored, expected = _ingest(host, port, snapshot=False)
        snap, snap_stored, _ = _ingest(host, port, snapshot=True)
    return [
        {
            "benchmark": "ingest.mqtt single-reading payloads -> store",
            "value": single,
            "unit": "readings/s",
            "note": f"{single_stored}/{expected} stored; QoS 1, embedded store",
        },
        {
            "benchmark": "ingest.mqtt snapshot payloads (19 ch) -> store",
            "value": snap,
            "unit": "readings/s",
            "note": f"{snap_stored}/{expected} stored; QoS 1, embedded store",
        },
    ]
