"""The station comes back by itself: Postgres dies, serve is SIGKILLed and restarted while
Postgres is still down, then Postgres returns; every reading and every queued notebook write
arrives exactly once, and /health says "degraded" in between.

Sensors publish bptwin's own topics on a private Mosquitto; impossible pH values (< 2) make
the alarm engine write alarm events, which queue on disk while the notebook's private Postgres
cluster is down. A watcher on the broker sees every alarm transition serve published; the
notebook must end with exactly those, each once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from bptwin.database.bus import MqttBus
from bptwin.database.reading import Reading
from bptwin.twin.alarms import AlarmTransition, alarms_pattern
from tests.fixtures.mqtt import MosquittoServer, private_broker
from tests.fixtures.private_postgres import PostgresCluster, private_postgres  # noqa: F401
from tests.fixtures.servers import free_port
from tests.test_bus import wait_for
from tests.test_metrics_endpoint import get, parse_exposition
from tests.test_serve_kill import Serve, stored_timestamps

pytestmark = [pytest.mark.mqtt, pytest.mark.postgres, pytest.mark.slow]

PREFIX = "recovertest"
PHASE = 600  # readings per phase, 0.1 s apart
IMPOSSIBLE_EVERY = 150  # every 150th pH reading is 1.0: one raise and one return each

AlarmKey = tuple[str, str, float]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    yield from private_broker(tmp_path / "mosquitto", extra_config="max_queued_messages 0\n")


class AlarmWatcher:
    """Every alarm transition published on the broker, by (rule, state, time)."""

    def __init__(self, host: str, port: int) -> None:
        self.keys: set[AlarmKey] = set()
        self._lock = threading.Lock()
        self.bus = MqttBus(host, port, client_id=f"alarm-watcher-{PREFIX}")
        self.bus.subscribe(alarms_pattern(prefix=PREFIX), self._add)
        self.bus.start()

    def _add(self, topic: str, payload: bytes) -> None:
        fields = AlarmTransition.from_payload(payload).event_fields()
        with self._lock:
            self.keys.add(alarm_key(fields["rule"], fields["state"], fields["occurred_at"]))

    def snapshot(self) -> set[AlarmKey]:
        with self._lock:
            return set(self.keys)


def alarm_key(rule: str, state: str, occurred_at: object) -> AlarmKey:
    if hasattr(occurred_at, "timestamp"):
        when = occurred_at
        if when.tzinfo is None:  # type: ignore[attr-defined]
            from datetime import timezone

            when = when.replace(tzinfo=timezone.utc)  # type: ignore[attr-defined]
        seconds = float(when.timestamp())  # type: ignore[attr-defined]
    else:
        seconds = float(occurred_at)  # type: ignore[arg-type]
    return (rule, state, round(seconds, 3))


def notebook_alarms(url: str) -> list[AlarmKey]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT rule, state, occurred_at FROM alarm_event")
            ).all()
    finally:
        engine.dispose()
    return [alarm_key(rule, state, at) for rule, state, at in rows]


def metric(port: int, name: str) -> float | None:
    try:
        samples = parse_exposition(get(f"http://127.0.0.1:{port}/metrics")[2])
    except OSError:
        return None
    return samples.get(name)


def health(port: int) -> dict[str, object] | None:
    try:
        status, _, body = get(f"http://127.0.0.1:{port}/health")
    except OSError:
        return None
    answer = json.loads(body)
    answer["http"] = status
    return answer


def publish_phase(sensors: MqttBus, t0: float, phase: int) -> tuple[list[float], float]:
    """One phase of pH readings; returns their timestamps and the last impossible one's."""
    stamps = []
    last_impossible = 0.0
    for index in range(phase * PHASE, (phase + 1) * PHASE):
        stamp = round(t0 + index * 0.1, 3)
        impossible = index % IMPOSSIBLE_EVERY == IMPOSSIBLE_EVERY - 1
        value = 1.0 if impossible else 5.0 + (index % 7) * 0.01
        sensors.publish_reading(Reading(stamp, "R1", "ph", value, "pH"), prefix=PREFIX)
        stamps.append(stamp)
        if impossible:
            last_impossible = stamp
    return stamps, last_impossible


def test_serve_recovers_by_itself_from_postgres_down_and_a_kill(
    broker: MosquittoServer,
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    host, port = broker.address
    metrics_port = free_port()
    url = private_postgres.create_database(f"recover_{os.getpid()}")
    environment = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(tmp_path),
        "BPTWIN_NOTEBOOK__URL": url,
        "BPTWIN_ACQUISITION__SOURCE": "mqtt",
        "BPTWIN_BUS__BACKEND": "mqtt",
        "BPTWIN_BUS__HOST": host,
        "BPTWIN_BUS__PORT": str(port),
        "BPTWIN_BUS__PREFIX": PREFIX,
        "BPTWIN_BUS__CLIENT_ID": "bptwin-serve-recovertest",
        "BPTWIN_METRICS__ENABLED": "true",
        "BPTWIN_METRICS__PORT": str(metrics_port),
        "BPTWIN_METRICS__STALE_AFTER_S": "3600",
    }
    watcher = AlarmWatcher(host, port)
    sensors = MqttBus(host, port)
    sensors.start()
    first = Serve(environment)
    second: Serve | None = None
    t0 = round(time.time() - 600.0, 3)
    published: list[float] = []

    def transitions_at(stamp: float) -> bool:
        return sum(1 for key in watcher.snapshot() if key[2] == round(stamp, 3)) >= 2

    def all_stored() -> bool:
        return len(stored_timestamps(tmp_path)) >= len(published)

    try:
        assert wait_for(first.running, timeout=60), first.log()
        # Phase 0: everything up; alarm events go straight to the notebook.
        stamps, last = publish_phase(sensors, t0, 0)
        published += stamps
        assert wait_for(all_stored, timeout=60) and wait_for(lambda: transitions_at(last), 60)
        assert wait_for(lambda: len(notebook_alarms(url)) == len(watcher.snapshot()), 60)
        in_notebook = len(watcher.snapshot())

        # Phase 1: Postgres dies; alarm events queue on disk, /health says degraded.
        private_postgres.stop("immediate")
        stamps, last = publish_phase(sensors, t0, 1)
        published += stamps
        assert wait_for(all_stored, timeout=60) and wait_for(lambda: transitions_at(last), 60)
        assert wait_for(
            lambda: (
                (metric(metrics_port, "bptwin_notebook_spool_depth") or 0)
                == len(watcher.snapshot()) - in_notebook
            ),
            timeout=60,
        )
        assert (metric(metrics_port, "bptwin_notebook_spool_depth") or 0) >= 2
        answer = health(metrics_port)
        assert answer is not None and answer["http"] == 503 and answer["status"] == "degraded"
        problems = [str(problem) for problem in answer["problems"]]  # type: ignore[attr-defined]
        assert any(problem.startswith("notebook link down") for problem in problems)

        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

        # Phase 2: serve starts again while Postgres is still down, and acquires.
        second = Serve(environment)
        assert wait_for(second.running, timeout=60), second.log()
        assert second.process.poll() is None
        stamps, last = publish_phase(sensors, t0, 2)
        published += stamps
        assert wait_for(all_stored, timeout=60) and wait_for(lambda: transitions_at(last), 60)
        answer = health(metrics_port)
        assert answer is not None and answer["status"] == "degraded", answer

        # Postgres returns: the schema check and the queue replay happen without help.
        private_postgres.start()
        expected = watcher.snapshot()
        assert wait_for(lambda: len(notebook_alarms(url)) >= len(expected), timeout=180), (
            second.log()
        )
        assert wait_for(lambda: metric(metrics_port, "bptwin_notebook_spool_depth") == 0, 60)
        assert wait_for(lambda: (health(metrics_port) or {}).get("status") == "ok", 120), health(
            metrics_port
        )
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=60) == 0, second.log()
    finally:
        sensors.stop()
        watcher.bus.stop()
        for serve in (first, second):
            if serve is not None:
                serve.process.kill()
    stored = stored_timestamps(tmp_path)
    assert stored == sorted(published)  # every reading once, none lost
    rows = notebook_alarms(url)
    assert len(rows) == len(set(rows))  # no notebook write twice
    assert set(rows) == watcher.snapshot()  # and every one that was made
    assert sum(1 for rule, _, _ in rows if rule.startswith("impossible_value")) == 2 * 3 * (
        PHASE // IMPOSSIBLE_EVERY
    )
