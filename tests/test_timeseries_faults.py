"""Fault tests against a real InfluxDB 1.x: server stopped and restarted, writer process killed.

Each module run starts its own influxd (it is stopped mid-test), separate from the session one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.database.spool import Spool
from bptwin.database.timeseries.influx import InfluxStore
from bptwin.database.timeseries.influx_common import InfluxConfig
from tests.fixtures.influx import InfluxServer, start_private_influx
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.influx, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_010.0


@pytest.fixture(scope="module")
def private_influx() -> Iterator[InfluxServer]:
    server = start_private_influx()
    yield server
    server.cleanup()


def wait_until(condition, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll for a state change (not a timing assertion: the limit only stops a hung test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def ph(second: float, value: float | None = None) -> Reading:
    return Reading(T0 + second, "R1", "ph", value if value is not None else 7.0 + second / 1e4)


def test_server_stopped_and_restarted_loses_and_duplicates_nothing(
    private_influx: InfluxServer, tmp_path: Path
) -> None:
    store = InfluxStore(
        InfluxConfig(url=private_influx.url, database="faults_restart"),
        tmp_path / "spool.sqlite",
        flush_interval=0.05,
        retry_initial=0.05,
        retry_max=0.3,
    )
    try:
        store.write([ph(i) for i in range(100)])
        assert store.flush(timeout=30)

        private_influx.stop()
        store.write([ph(i) for i in range(100, 250)])
        assert wait_until(lambda: not store.status().link_ok)
        # Keep writing while the link is down, one reading at a time like a live driver.
        for i in range(250, 400):
            store.write([ph(i)])
        status = store.status()
        assert not status.link_ok
        assert status.spooled == 300
        assert status.failed_writes >= 1
        assert status.last_error
        assert not store.flush(timeout=0.2)

        private_influx.start()
        assert store.flush(timeout=60)
        status = store.status()
        assert status.link_ok
        assert (status.pending, status.spooled) == (0, 0)
        got = store.read_range("R1", "ph", T0, T0 + 1000)
        assert [r.timestamp for r in got] == [T0 + i for i in range(400)]
        assert [r.value for r in got] == [ph(i).value for i in range(400)]
    finally:
        store.close()


def test_writes_during_a_restart_from_a_busy_thread_all_arrive(
    private_influx: InfluxServer, tmp_path: Path
) -> None:
    store = InfluxStore(
        InfluxConfig(url=private_influx.url, database="faults_busy"),
        tmp_path / "spool.sqlite",
        flush_interval=0.02,
        retry_initial=0.05,
        retry_max=0.2,
    )
    stop = threading.Event()
    written: list[int] = []

    def acquire() -> None:
        second = 0
        while not stop.is_set():
            store.write([Reading(T0 + second, "R1", f"c{k}", float(second)) for k in range(5)])
            written.append(second)
            second += 1
            time.sleep(0.002)

    thread = threading.Thread(target=acquire)
    thread.start()
    try:
        assert wait_until(lambda: store.status().written > 50)
        private_influx.stop()
        assert wait_until(lambda: not store.status().link_ok)
        private_influx.start()
        assert wait_until(lambda: store.status().link_ok)
        stop.set()
        thread.join()
        assert store.flush(timeout=60)
        seconds = len(written)
        for k in range(5):
            got = store.read_range("R1", f"c{k}", T0, T0 + seconds + 1)
            assert [r.value for r in got] == [float(s) for s in range(seconds)]
    finally:
        stop.set()
        thread.join()
        store.close()


_WRITE_THEN_WAIT = """
import sys, time
from bptwin.database.reading import Reading
from bptwin.database.timeseries.influx import InfluxStore
from bptwin.database.timeseries.influx_common import InfluxConfig
store = InfluxStore(InfluxConfig(url=sys.argv[1], database="faults_kill"), sys.argv[2],
                    retry_initial=0.05, retry_max=0.2)
for i in range(300):
    store.write([Reading(1_700_000_010.0 + i, "R1", "ph", float(i))])
print("accepted", flush=True)
time.sleep(60)
"""


def test_readings_accepted_before_sigkill_arrive_after_restart(
    private_influx: InfluxServer, tmp_path: Path
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: everything stays spooled
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITE_THEN_WAIT, dead_url, str(spool_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "accepted"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    with Spool(spool_path) as spool:
        assert spool.weight() == 300

    store = InfluxStore(
        InfluxConfig(url=private_influx.url, database="faults_kill"),
        spool_path,
        flush_interval=0.05,
    )
    try:
        assert store.flush(timeout=60)
        got = store.read_range("R1", "ph", T0, T0 + 1000)
        assert [r.value for r in got] == [float(i) for i in range(300)]
        assert store.status().written == 300
    finally:
        store.close()
