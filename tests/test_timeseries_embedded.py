"""Embedded store specifics: persistence, units, bad paths, process kills."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.database.timeseries import EmbeddedStore, TimeSeriesError

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_010.0


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "series.sqlite"
    with EmbeddedStore(path) as store:
        store.write([Reading(T0 + i, "R1", "ph", 7.0 + i, "pH") for i in range(3)])
    with EmbeddedStore(path) as again:
        assert [r.value for r in again.read_range("R1", "ph", T0, T0 + 10)] == [7.0, 8.0, 9.0]
        assert again.list_channels() == [("R1", "ph")]
        again.write([Reading(T0 + 3, "R1", "do", 1.0)])
        assert again.list_channels() == [("R1", "do"), ("R1", "ph")]


def test_a_channel_reads_back_with_its_latest_unit(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "series.sqlite") as store:
        store.write([Reading(T0, "R1", "air_flow", 1.0, "L/min")])
        store.write([Reading(T0 + 1, "R1", "air_flow", 2.0, "vvm")])
        assert {r.unit for r in store.read_range("R1", "air_flow", T0, T0 + 5)} == {"vvm"}


def test_unopenable_file_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    with pytest.raises(TimeSeriesError, match="plain-file"):
        EmbeddedStore(blocker / "series.sqlite")


def test_closed_store_refuses_politely(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "series.sqlite")
    store.close()
    store.close()
    with pytest.raises(TimeSeriesError, match="closed"):
        store.write([Reading(T0, "R1", "ph", 7.0)])
    with pytest.raises(TimeSeriesError, match="closed"):
        store.read_range("R1", "ph", T0, T0 + 1)


def test_infinite_values_are_stored_as_missing(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "series.sqlite") as store:
        store.write([Reading(T0, "R1", "ph", float("inf"))])
        (got,) = store.read_range("R1", "ph", T0, T0 + 1)
        assert got.value != got.value  # NaN
        assert got.quality.value == "bad"


_WRITE_THEN_WAIT = """
import sys, time
from bptwin.database.reading import Reading
from bptwin.database.timeseries import EmbeddedStore
store = EmbeddedStore(sys.argv[1])
for i in range(1000):
    store.write([Reading(1_700_000_010.0 + i, "R1", "ph", float(i))])
print("written", flush=True)
time.sleep(60)
"""


def test_accepted_readings_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "series.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITE_THEN_WAIT, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    with EmbeddedStore(path) as store:
        got = store.read_range("R1", "ph", T0, T0 + 2000)
        assert [r.value for r in got] == [float(i) for i in range(1000)]


def test_doctor_shows_readings_kept_aside_in_the_embedded_store(tmp_path: Path) -> None:
    from bptwin.tui.doctor import Status, check_kept_aside
    from bptwin.tui.settings import Settings

    settings = Settings()
    settings.station.data_dir = tmp_path
    store = EmbeddedStore(settings.timeseries_path())
    store.write([Reading(1.78e9, "R1", "ph", 5.0, "pH")])
    assert check_kept_aside(settings).status is Status.PASS
    store.write([Reading(1.78e9, "R1", "ph", 6.0, "pH")])  # another value for a stored key
    store.close()
    shown = check_kept_aside(settings)
    assert shown.status is Status.WARN
    assert "1 readings refused or in conflict" in shown.detail and "kept_aside" in shown.detail
    assert "conflict: another reading is stored under this key (5.0, good)" in shown.detail
