"""SIGKILL ``bptwin serve`` mid-ingest and start it again: no acknowledged reading is lost.

Sensors publish bptwin's own topics on a private Mosquitto; ``serve`` records them with a
configured client id, so the broker keeps the session (and queues the readings) while the
killed process is away. Every reading the broker handed to serve was stored before serve
acknowledged it, so after the restart the store holds each published reading exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from tests.fixtures.mqtt import MosquittoServer, private_broker
from tests.test_bus import wait_for

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "killtest"
READINGS = 3000


class Serve:
    """A ``bptwin serve`` subprocess whose log lines are collected on a thread."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bptwin.tui.cli", "serve"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def running(self) -> bool:
        return any("acquisition running" in line for line in self.lines)

    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    yield from private_broker(tmp_path / "mosquitto", extra_config="max_queued_messages 0\n")


def stored_timestamps(data_dir: Path) -> list[float]:
    path = data_dir / "timeseries.sqlite"
    if not path.exists():
        return []
    store = EmbeddedStore(path)
    try:
        return [reading.timestamp for reading in store.read_range("R1", "ph", 0, 4e9)]
    finally:
        store.close()


def test_serve_killed_and_restarted_loses_no_acknowledged_reading(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    host, port = broker.address
    environment = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(tmp_path),
        "BPTWIN_ACQUISITION__SOURCE": "mqtt",
        "BPTWIN_BUS__BACKEND": "mqtt",
        "BPTWIN_BUS__HOST": host,
        "BPTWIN_BUS__PORT": str(port),
        "BPTWIN_BUS__PREFIX": PREFIX,
        "BPTWIN_BUS__CLIENT_ID": "bptwin-serve-killtest",
    }
    first = Serve(environment)
    second: Serve | None = None
    sensors = MqttBus(host, port)
    t0 = round(time.time() - 3600.0, 3)
    try:
        assert wait_for(first.running, timeout=60), first.log()
        sensors.start()
        killed = False
        for index in range(READINGS):
            reading = Reading(round(t0 + index * 0.1, 3), "R1", "ph", 6.0 + index * 1e-4, "pH")
            sensors.publish_reading(reading, prefix=PREFIX)
            if index % 100 == 99:
                time.sleep(0.05)  # a sensor's pace, not a flood
            if index == READINGS // 3:
                assert wait_for(lambda: len(stored_timestamps(tmp_path)) > 200, timeout=30)
                first.process.send_signal(signal.SIGKILL)  # mid-ingest, messages in flight
                first.process.wait(timeout=10)
                killed = True
            if index == READINGS // 2:
                second = Serve(environment)  # the same lock, client id and spool: resumes
        assert killed and second is not None
        assert sensors.flush(timeout=30)
        assert wait_for(second.running, timeout=60), second.log()
        assert wait_for(lambda: len(stored_timestamps(tmp_path)) >= READINGS, timeout=60)
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=60) == 0, second.log()
    finally:
        sensors.stop()
        for serve in (first, second):
            if serve is not None:
                serve.process.kill()
    stored = stored_timestamps(tmp_path)
    assert len(stored) == READINGS  # none lost, none twice
    assert stored == [round(t0 + index * 0.1, 3) for index in range(READINGS)]
    assert "already running" not in second.log()  # the killed holder's lock was freed
