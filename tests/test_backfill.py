"""The trend history comes back from the store when a control room starts mid-batch: the
running batch's span only, the last hour at full rate, older data as 30 s means."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from bptwin.database.migrate import upgrade
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.runtime.station import Station
from bptwin.tui.runtime.trend_backfill import backfill_history
from bptwin.tui.settings import Settings
from bptwin.twin.history import History

HOUR = 3600.0


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def fill_store(store: EmbeddedStore, start: float, end: float) -> None:
    """DO at 1 Hz falling linearly from 100 to 40, OUR per 30 s, the OD600 nowcast per 30 s."""
    seconds = np.arange(start, end, 1.0)
    do = 100.0 - 60.0 * (seconds - start) / (end - start)
    store.write([Reading(t, "R1", "do", v, "%") for t, v in zip(seconds, do, strict=True)])
    windows = np.arange(start + 30.0, end, 30.0)
    derived = [Reading(t, "R1", "our", 10.0 + (t - start) / HOUR, "mmol/L/h") for t in windows]
    band = [
        Reading(t, "R1", channel, value, "OD600")
        for t in windows
        for channel, value in (
            ("od600_pred", 5.0),
            ("od600_pred_lower", 4.5),
            ("od600_pred_upper", 5.5),
        )
    ]
    store.write(derived + band)
    store.flush(timeout=10.0)


def test_backfill_reads_recent_readings_at_full_rate_and_older_ones_as_window_means(
    tmp_path: Path,
) -> None:
    end = 1_800_000_000.0
    store = EmbeddedStore(tmp_path / "timeseries.sqlite")
    try:
        fill_store(store, end - 3 * HOUR, end)
        history = History(["R1"])
        result = backfill_history(history, store, "R1", end=end, hours=3.0)
    finally:
        store.close()
    assert result.problems == ()
    assert result.readings == 3600  # the last hour at 1 Hz
    assert result.windows == 2 * 120  # two older hours as 30 s windows
    assert result.derived == 359 and result.predictions == 359
    window = history.window("R1", "batch", points=10_000, names=["do", "our"])
    do = window.trace("do")
    assert do is not None
    assert do.times[0] < end - 2.9 * HOUR and do.times[-1] >= end - 2.0
    # The means keep the shape: the DO fell from 100 to 40 over the three hours.
    assert do.values[0] == pytest.approx(100.0, abs=0.5)
    assert do.values[-1] == pytest.approx(40.0, abs=0.5)
    assert window.trace("our") is not None and window.trace("our").raw_points == 359
    assert window.predicted is not None and len(window.predicted.times) == 359


def test_a_station_started_mid_batch_shows_the_running_batch_only(tmp_path: Path) -> None:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.source = "none"  # sensors publish on the broker themselves
    now = time.time()
    inoculated = now - 2 * HOUR
    store = EmbeddedStore(settings.timeseries_path())
    try:
        fill_store(store, inoculated - 5 * HOUR, inoculated - 1 * HOUR)  # the previous batch
        fill_store(store, inoculated, now - 60.0)
    finally:
        store.close()
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    notebook.operators.create_operator("sam", "sam", OperatorRole.SUPERVISOR, "4321")
    notebook.batches.create_batch("sam", 17, "C", reactor_id="R1")
    notebook.batches.start_batch(
        "sam",
        17,
        inoculated_at=datetime.fromtimestamp(inoculated, tz=timezone.utc),
        override_reason="backfill test: calibrations are not part of it",
    )
    station = Station(settings)
    station.start()
    try:
        assert station.backfill is not None
        station.backfill.join(timeout=30)
        assert not station.backfill.is_alive()
        window = station.history.window("R1", "batch", points=10_000, names=["do"])
    finally:
        station.stop()
    do = window.trace("do")
    assert do is not None and len(do.times) > 1000
    assert do.times.min() >= inoculated - 30.0  # nothing of the previous batch
    assert do.times.max() <= now


def test_simulated_starts_are_new_batches_and_are_not_backfilled(tmp_path: Path) -> None:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.source = "simulated"
    settings.acquisition.speed = 1.0
    station = Station(settings)
    station.start()
    try:
        assert station.backfill is None
    finally:
        station.stop()
