"""Bad input at the station: refused with a reason, counted where the operator sees it, nothing
invalid stored, the station keeps running.

Malformed MQTT payloads on the station's bus, garbled lines from a serial analyser on a
pseudo-terminal, out-of-range form values and SQL-looking text in the notebook.
(Property-based tests of the decoders themselves: test_payloads.py, test_serial_protocol.py,
test_eln_form_rules.py.)
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.drivers.serial_emulator import PtyAnalyser
from bptwin.eln.errors import NotebookValidationError
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from tests.test_bus import wait_for

NOW = time.time()
BAD_PAYLOADS = {
    "not JSON": b'{"ts": 1796000000, "value": ',
    "wrong type": b'{"ts": %d, "value": "high"}' % NOW,
    "NaN": b'{"ts": %d, "value": NaN}' % NOW,
    "infinity": b'{"ts": %d, "value": 1e999}' % NOW,
    "absurd timestamp": b'{"ts": 99999999999999, "value": 5.0}',
    "before 2000": b'{"ts": "1900-01-01T00:00:00Z", "value": 5.0}',
    "huge": b'{"ts": %d, "value": 5.0, "unit": "%s"}' % (NOW, b"x" * 100_000),
    "array": b"[1, 2, 3]",
}


def settings_for(data_dir: Path, source: str = "none") -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.source = source  # type: ignore[assignment]
    return settings


def stored(data_dir: Path, reactor: str, channel: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "timeseries.sqlite") as db:
        return db.execute(
            "SELECT p.ts_ms, p.value, s.unit FROM points p JOIN series s ON s.id = p.series_id"
            " WHERE s.reactor = ? AND s.channel = ?",
            (reactor, channel),
        ).fetchall()


def test_malformed_mqtt_payloads_are_refused_counted_and_shown(tmp_path: Path) -> None:
    station = Station(settings_for(tmp_path))
    station.start()
    try:
        assert station.bus is not None
        for payload in BAD_PAYLOADS.values():
            station.bus.publish("bptwin/v1/R1/sensors/ph", payload, qos=1)
        # Names that could be SQL never become a series: not a configured reactor.
        station.bus.publish("bptwin/v1/R1'; DROP TABLE series;--/sensors/ph", b"{}", qos=1)
        # SQL-looking free text is data, stored as written, never executed.
        unit = "pH'); DROP TABLE points;--"
        good = Reading(round(NOW, 3), "R1", "ph", 6.5, unit)
        station.bus.publish_reading(good)
        assert station.bus.drain()
        assert wait_for(lambda: station.rejected_inputs().get("mqtt payload") == 8)
        assert station.rejected_inputs().get("bus unknown_reactor") == 1
        problems = station.snapshot().problems
        assert "rejected input: 9 (bus unknown_reactor 1, mqtt payload 8)" in problems
        assert station.recorder is not None and station.recorder.flush(10)
    finally:
        station.stop()
    rows = stored(tmp_path, "R1", "ph")
    assert rows == [(round(NOW * 1000), 6.5, unit)]  # only the valid reading, text verbatim


def test_garbled_serial_lines_are_counted_by_reason_at_the_station(tmp_path: Path) -> None:
    with PtyAnalyser(tmp_path / "analyser") as analyser:
        settings = settings_for(tmp_path / "data", source="serial")
        settings.acquisition.serial.port = analyser.path
        station = Station(settings)
        station.start()
        try:
            assert station.runtime is not None
            driver = station.runtime.drivers[0]
            assert wait_for(lambda: driver.stats.connected)
            analyser.write(b"$OGA,1,20.5\x00\xff12,0.7*33\r\n")  # garbled
            good = analyser.send_gas(20.5, 0.7)
            analyser.write(good.replace(good[-4:-2], b"00" if good[-4:-2] != b"00" else b"11"))
            analyser.send_flow(2.25)
            assert wait_for(lambda: sum(station.rejected_inputs().values()) >= 2)
            assert wait_for(lambda: station.snapshot().readings_total >= 3)
            rejected = station.rejected_inputs()
            assert all(key.startswith(driver.name) for key in rejected), rejected
            assert any("rejected input: 2" in p for p in station.snapshot().problems)
        finally:
            station.stop()


def test_out_of_range_form_values_and_sql_text_in_the_notebook(tmp_path: Path) -> None:
    station = Station(settings_for(tmp_path))
    station.start()
    try:
        notebook = station.notebook
        assert notebook is not None
        notebook.service.operators.create_operator("setup", "olga", "supervisor", "4711")
        notebook.service.batches.create_batch("olga", 4, "A")
        with pytest.raises(NotebookValidationError, match="OD") as refused:
            notebook.add_sample("olga", 4, taken_at=datetime.now(tz=timezone.utc), od_raw=1e9)
        assert refused.value.field
        with pytest.raises(NotebookValidationError, match="reactor"):
            notebook.record_alarm_event(
                None, reactor="R1'; DROP TABLE alarm_event;--", rule="x", priority="low",
                state="active_unack",
            )  # fmt: skip
        text = "Robert'); DROP TABLE note;--"
        notebook.add_note("olga", 4, text)
        assert [n.text for n in notebook.list_notes(4)] == [text]
        assert station.rejected_inputs() == {"notebook form": 2}
        assert "rejected input: 2 (notebook form 2)" in station.snapshot().problems
    finally:
        station.stop()
