"""Fault tests of the whole station against real servers of the test's own.

The Mosquitto broker is stopped and started during ingest of a simulated batch, the notebook's
Postgres cluster likewise: zero readings lost, none stored twice, what waited is replayed, and
the snapshot's links say which link is down and how much waits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus
from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.migrate import upgrade
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.services import NotebookService
from bptwin.eln.write_queue import NotebookWriteQueued
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary
from tests.fixtures.private_postgres import PostgresCluster, private_postgres  # noqa: F401
from tests.fixtures.servers import server_missing
from tests.test_bus import wait_for

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]


def stored_keys(data_dir: Path) -> list[tuple[str, str, float]]:
    store = EmbeddedStore(data_dir / "timeseries.sqlite")
    try:
        keys = []
        for reactor, channel in store.list_channels():
            if channel in CHANNELS_BY_NAME:
                keys += [(reactor, channel, r.timestamp) for r in store.read_range(
                    reactor, channel, 0, 4e9
                )]  # fmt: skip
        return keys
    finally:
        store.close()


class Watcher:
    """Another client on the broker (a viewer, Telegraf): collects every reading it gets."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.keys: list[tuple[str, str, float]] = []
        self._lock = threading.Lock()
        # A persistent session: the broker keeps its subscription across its own restart.
        self.bus = MqttBus(host, port, client_id=f"watcher-{prefix}", reconnect_delay_s=(1, 2))
        self.bus.subscribe_readings(self._add, prefix=prefix)
        self.bus.start()

    def _add(self, reading: Reading) -> None:
        with self._lock:
            self.keys.append((reading.reactor, reading.channel, reading.timestamp))


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A private broker that keeps sessions on disk across stop() and start()."""
    if mosquitto_binary() is None:
        server_missing("mosquitto is not installed, so no private broker can be started")
    directory = tmp_path / "mosquitto"
    # Unlimited queue for a subscriber that is reconnecting (Mosquitto's default is 1000).
    extra = f"persistence true\npersistence_location {directory}/\nmax_queued_messages 0\n"
    server = MosquittoServer(directory, extra_config=extra)
    config = server.config_file.read_text().replace("persistence false\n", "")
    server.config_file.write_text(config)
    try:
        server.start()
    except RuntimeError as exc:
        server_missing(f"could not start mosquitto: {exc}")
    yield server
    server.stop()


def mqtt_settings(data_dir: Path, host: str, port: int, prefix: str) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.speed = 120.0  # 2 min of batch a second: ~2300 readings/s
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port, settings.bus.prefix = host, port, prefix
    return settings


def link(station: Station, name: str):  # type: ignore[no-untyped-def]
    return {state.name: state for state in station.snapshot().links}[name]


def test_broker_stopped_and_restarted_during_ingest_loses_and_duplicates_nothing(
    persistent_broker: MosquittoServer, tmp_path: Path
) -> None:
    host, port = persistent_broker.address
    prefix = "faults"
    watcher = Watcher(host, port, prefix)
    station = Station(mqtt_settings(tmp_path, host, port, prefix))
    station.start()
    try:
        assert wait_for(lambda: station.snapshot().readings_total > 2000, timeout=60)
        assert link(station, "bus").up

        persistent_broker.stop()
        assert wait_for(lambda: not link(station, "bus").up)
        before = station.snapshot().readings_total
        # Acquisition, recording and the shadow go on without the broker...
        assert wait_for(lambda: station.snapshot().readings_total > before + 2000, timeout=60)
        down = link(station, "bus")
        assert not down.up
        assert down.waiting > 1000  # ...and what was published waits on disk
        assert "unreachable" in down.detail

        persistent_broker.start()
        assert wait_for(lambda: link(station, "bus").up, timeout=30)
        assert wait_for(lambda: station.snapshot().readings_total > before + 6000, timeout=60)
    finally:
        station.stop()  # drains the outbox while the broker is there
    total = station.snapshot().readings_total
    stored = stored_keys(tmp_path)
    assert len(stored) == total  # zero readings lost
    assert len(set(stored)) == len(stored)  # none stored twice
    wait_for(lambda: len(set(watcher.keys)) >= total, timeout=30)
    watcher.bus.stop()
    received = sorted(set(watcher.keys))
    assert len(received) == total  # every reading reached the broker's subscribers, once
    # The wire format carries whole milliseconds (truncated), the store rounds: <= 1 ms apart.
    for (reactor, channel, sent), (r, c, kept) in zip(received, sorted(stored), strict=True):
        assert (reactor, channel) == (r, c)
        assert abs(sent - kept) <= 0.0011
    assert link(station, "bus").waiting == 0


@pytest.mark.postgres
def test_notebook_down_during_ingest_queues_writes_and_shows_the_link(
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = private_postgres.create_database("station_notebook")
    upgrade(url)
    service = NotebookService.from_url(url)
    service.operators.create_operator("setup", "olga", "supervisor", "4711")
    service.batches.create_batch("olga", 3, "A")
    service.engine.dispose()
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.speed = 60.0
    settings.notebook.url = url
    station = Station(settings)
    station.start()
    try:
        assert station.notebook is not None
        assert wait_for(lambda: station.snapshot().readings_total > 500, timeout=60)
        station.notebook.add_note("olga", 3, "before")
        assert link(station, "notebook").up

        private_postgres.stop("immediate")
        try:
            for index in range(5):
                with pytest.raises(NotebookWriteQueued):
                    station.notebook.add_note("olga", 3, f"during {index}")
            notebook = link(station, "notebook")
            assert not notebook.up
            assert notebook.waiting == 5
            before = station.snapshot().readings_total
            # Acquisition does not need the notebook.
            assert wait_for(lambda: station.snapshot().readings_total > before + 500)
        finally:
            private_postgres.start()
        assert station.notebook.flush(timeout=60)
        assert wait_for(lambda: link(station, "notebook").up)
        assert link(station, "notebook").waiting == 0
        notes = [note.text for note in station.notebook.list_notes(3)]
        assert notes == ["before"] + [f"during {index}" for index in range(5)]
    finally:
        station.stop()
