"""The station end to end: simulated driver -> bus -> recorder -> store, headless and by CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading
from bptwin.database.recorder import Recorder
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from tests.fixtures.servers import free_port
from tests.test_bus import wait_for

ROOT = Path(__file__).resolve().parent.parent


def fast_settings(data_dir: Path) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.speed = 0.0  # as fast as possible
    return settings


def test_recorder_writes_everything_it_received(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    recorder = Recorder(store, max_batch=100, max_delay_s=0.05)
    start = float(int(time.time()) - 3600)
    for second in range(1234):
        recorder.add(Reading(start + second, "R1", "ph", 5.0 + second * 1e-4, "pH"))
    assert recorder.flush(timeout=10)
    recorder.close()
    stats = recorder.stats()
    assert (stats.received, stats.written, stats.buffered) == (1234, 1234, 0)
    stored = store.read_range("R1", "ph", start, start + 2000)
    assert len(stored) == 1234
    assert stored[-1].value == pytest.approx(5.0 + 1233 * 1e-4)
    store.close()


def test_station_records_a_simulated_batch(tmp_path: Path) -> None:
    station = Station(fast_settings(tmp_path))
    station.start()
    try:
        deadline = time.monotonic() + 60
        while station.snapshot().readings_total < 20000 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        station.stop()
    snapshot = station.snapshot()
    total = snapshot.readings_total
    assert total >= 20000
    store = EmbeddedStore(tmp_path / "timeseries.sqlite")
    channels = {channel for _, channel in store.list_channels("R1")}
    sensors = channels & set(CHANNELS_BY_NAME)
    assert {"ph", "do", "offgas_co2", "offgas_o2", "stirrer_speed"} <= sensors
    stored = sum(len(store.read_range("R1", c, 0, 4e9)) for c in sensors)
    assert stored == total  # every reading the bus delivered is in the store
    # The shadow turned them into 30 s windows: derived values are stored too.
    assert {"our", "cer", "rq", "mu"} <= channels
    windows = store.read_range("R1", "cer", 0, 4e9)
    assert len(windows) >= total // 19 // 30 - 2
    assert max(r.value for r in windows) > 0
    # The shipped model predicted OD600 for those windows: stored and in the snapshot.
    assert "od600_pred" in channels
    prediction = snapshot.predictions["R1"]
    assert prediction.model_version == snapshot.model_version != ""
    assert 0 < prediction.lower <= prediction.od600 <= prediction.upper
    store.close()


def test_station_starts_degraded_and_names_the_setting_of_an_unreachable_broker(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path)
    settings.bus.backend = "mqtt"
    settings.bus.port = free_port()  # nothing listens there
    station = Station(settings)
    station.start()  # a broker that is away is no reason not to acquire
    try:
        assert any(w.startswith("bus.host/bus.port:") for w in station.warnings)
        assert wait_for(lambda: station.snapshot().readings_total > 100, timeout=60)
        bus = next(link for link in station.snapshot().links if link.name == "bus")
        assert not bus.up and "unreachable" in bus.detail and bus.waiting > 0
        health = station.health()
        assert health.status == "degraded"  # acquiring; the broker and the claim wait
        assert any(p.startswith("bus link down") for p in health.problems)
        assert any("acquisition claim not yet on the broker" in p for p in health.problems)
    finally:
        station.stop()


def test_serve_runs_headless_until_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(tmp_path),
        "BPTWIN_ACQUISITION__SPEED": "0",
        # A simulation under the real reactor name (the test reads "R1").
        "BPTWIN_ACQUISITION__SIMULATED_REACTOR_PREFIX": "",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stored = 0
        deadline = time.monotonic() + 60
        while stored <= 100 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            if (tmp_path / "timeseries.sqlite").exists():
                store = EmbeddedStore(tmp_path / "timeseries.sqlite")
                stored = len(store.read_range("R1", "do", 0, 4e9))
                store.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stored > 100
    assert "stopped after" in stderr


def bptwin(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh interpreter with extra BPTWIN_ environment."""
    return subprocess.run(
        [sys.executable, "-m", "bptwin.tui.cli", *args],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    data_dir = {"BPTWIN_STATION__DATA_DIR": str(tmp_path)}
    upgrade = bptwin("db", "upgrade", **data_dir)
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.startswith("applied: ")
    again = bptwin("db", "upgrade", **data_dir)
    assert again.stdout.strip() == "schema already up to date"
    current = bptwin("db", "current", **data_dir)
    head = current.stdout.split("head: ")[1].strip()
    assert current.stdout.startswith(f"current: {head}")


def test_db_upgrade_names_the_key_of_an_unreachable_postgres(tmp_path: Path) -> None:
    result = bptwin(
        "db",
        "upgrade",
        BPTWIN_STATION__DATA_DIR=str(tmp_path),
        BPTWIN_NOTEBOOK__URL="postgresql://bptwin@127.0.0.1:1/bptwin",
    )
    assert result.returncode == 2
    assert result.stderr.startswith("bptwin: notebook.url:")
    assert "Traceback" not in result.stderr


def test_unreachable_influxdb_is_named_and_readings_are_spooled(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    settings.acquisition.source = "none"
    settings.timeseries.backend = "influxdb"
    settings.timeseries.url = f"http://127.0.0.1:{free_port()}"
    settings.timeseries.api_version = "1"
    station = Station(settings)
    station.start()
    try:
        influx_warnings = [w for w in station.warnings if w.startswith("timeseries.url:")]
        assert len(influx_warnings) == 1
        assert "spooled" in influx_warnings[0]
        assert station.bus is not None and station.store is not None
        store = station.store
        station.bus.publish_reading(Reading(time.time(), "R1", "ph", 5.0, "pH"))
        assert wait_for(lambda: store.status().failed_writes > 0, timeout=10)
        status = store.status()
        assert not status.link_ok
        assert status.spooled == 1
        assert station.health().status == "degraded"
    finally:
        station.stop()  # spooled, not lost: the stop does not wait for the dead server


def test_audit_verify_passes_then_names_a_tampered_entry(tmp_path: Path) -> None:
    import sqlite3

    from bptwin.eln.services import NotebookService

    data_dir = {"BPTWIN_STATION__DATA_DIR": str(tmp_path)}
    assert bptwin("db", "upgrade", **data_dir).returncode == 0
    notebook = NotebookService.from_url(f"sqlite:///{tmp_path / 'notebook.sqlite'}")
    notebook.operators.create_operator("setup", "anna", "supervisor", "4711")
    notebook.operators.create_operator("anna", "ben", "operator", "1234")
    ok = bptwin("audit", "verify", **data_dir)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit chain OK: ")
    assert int(ok.stdout.split(": ")[1].split()[0]) >= 2
    notebook.engine.dispose()
    with sqlite3.connect(tmp_path / "notebook.sqlite") as db:
        # The app never does this: the database refuses it, so drop the guard first.
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entry'"
        ).fetchall():
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE audit_entry SET actor = 'mallory' WHERE id = 2")
    broken = bptwin("audit", "verify", **data_dir)
    assert broken.returncode == 1
    assert broken.stdout.startswith("audit chain BROKEN at entry 2")


@pytest.mark.mqtt
def test_station_started_before_its_broker_connects_when_it_comes(tmp_path: Path) -> None:
    from bptwin.database.bus import MqttBus
    from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary
    from tests.fixtures.servers import server_missing

    if mosquitto_binary() is None:
        server_missing("mosquitto is not installed, so no private broker can be started")
    broker = MosquittoServer(tmp_path / "mosquitto")  # configured, started later
    settings = fast_settings(tmp_path / "station")
    settings.acquisition.speed = 30.0
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port = broker.address
    settings.bus.prefix = "latebroker"
    station = Station(settings)
    station.start()
    watcher: MqttBus | None = None
    seen: list[Reading] = []
    try:
        assert wait_for(lambda: station.snapshot().readings_total > 20, timeout=60)
        assert station.bus is not None and not station.bus.connected
        broker.start()
        watcher = MqttBus(*broker.address)
        watcher.subscribe_readings(seen.append, prefix="latebroker")
        watcher.start()
        # The link keeper connects; the outbox sends what waited since the start.
        assert wait_for(lambda: station.bus is not None and station.bus.connected, timeout=90)
        assert wait_for(lambda: any(r.channel == "ph" for r in seen), timeout=60)
        assert wait_for(lambda: not any(lock.claim_pending for lock in station.locks), timeout=60)
        assert wait_for(lambda: station.health().status == "ok", timeout=60), station.health()
        # Readings for a reactor the station does not have are counted once the broker is
        # there (a best-effort QoS 0 watcher, connected by the link keeper): send until seen.
        assert station.intake is not None
        stats = station.intake.admission.stats
        outsider = watcher

        def counted_unknown() -> bool:
            outsider.publish("latebroker/v1/R9/sensors/ph", b'{"ts": 1, "value": 5}', qos=1)
            time.sleep(0.1)  # one message per poll is enough
            return stats().discarded.get(("bus", "unknown_reactor"), 0) > 0

        assert wait_for(counted_unknown, timeout=60)
        assert "bus unknown_reactor" in " ".join(station.snapshot().problems)
    finally:
        station.stop()
        if watcher is not None:
            watcher.stop()
        broker.stop()
