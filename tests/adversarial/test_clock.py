"""One reading stamped in the future must never silence a channel (docs/security.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.adversarial.harness import (
    Outsider,
    discarded,
    running,
    station_settings,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.mqtt


def test_a_future_stamped_reading_cannot_silence_the_ph_alarm(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    """pH stamped now + 23 h, then 45 s of pH 5.5: 'ph' (hi 5.1 for 30 s) is still raised.

    Before admission the alarm engine took the future reading as the channel's latest and
    dropped every real one after it as out of order: no alarm while the dashboard looked live.
    """
    settings = station_settings(tmp_path, mqtt_broker, unique_prefix())
    with running(settings) as station:
        outsider = Outsider(mqtt_broker, settings.bus.prefix)
        try:
            now = time.time()
            outsider.reading("R1", "ph", now + 23 * 3600, 5.0)
            outsider.flush()
            assert wait_for(lambda: discarded(station, "clock_ahead") == 1)
            for second in range(46):
                outsider.reading("R1", "ph", now - 45 + second, 5.5)
            outsider.flush()
        finally:
            outsider.close()

        def ph_alarm_raised() -> bool:
            views = station.snapshot().alarms_for("R1")
            return any(view.rule == "ph" and view.condition_active for view in views)

        assert wait_for(ph_alarm_raised), station.snapshot().alarms_for("R1")
        assert "clock fault" in " ".join(station.snapshot().problems)


def test_a_replayed_49_hour_batch_is_never_stored_in_the_future(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    import numpy as np
    import pandas as pd

    minutes = 49 * 60
    recording = tmp_path / "long-batch.parquet"
    pd.DataFrame(
        {"timestamp": 1_700_000_000.0 + 60.0 * np.arange(minutes + 1), "ph": 5.0, "do": 40.0}
    ).to_parquet(recording)
    settings = station_settings(
        tmp_path / "data",
        mqtt_broker,
        unique_prefix(),
        sources=[{"name": "replay", "kind": "replay", "file": str(recording), "speed": 3600}],
    )
    with running(settings) as station:
        (thread,) = station.driver_threads
        assert thread.join(timeout=300), "the replay did not finish"
        finished_at = time.time()
        assert station.recorder is not None and station.recorder.flush(60)
        assert station.store is not None
        stored = station.store.read_range("R1", "ph", 0, 4e9)
    assert len(stored) == minutes + 1
    assert max(r.timestamp for r in stored) <= finished_at
    assert discarded(station, "clock_ahead", origin="replay") == 0


def test_an_accelerated_simulated_batch_is_never_stamped_in_the_future(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    settings = station_settings(
        tmp_path, mqtt_broker, unique_prefix(),
        sources=[{"name": "sim", "kind": "simulated", "speed": 600}],
    )  # fmt: skip
    with running(settings) as station:
        assert wait_for(lambda: station.snapshot().readings_total >= 19 * 1200)
        latest = max(r.timestamp for r in station.snapshot().for_reactor("R1"))
        assert latest <= time.time()
    assert discarded(station, "clock_ahead", origin="sim") == 0
