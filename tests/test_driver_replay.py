"""Replay of a recorded batch file onto the sink."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bptwin.database.reading import Reading
from bptwin.drivers.base import DriverThread
from bptwin.drivers.replay import RecordedBatch, ReplayDriver, ReplayError

START = 1_780_000_000.0


def recording(rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "timestamp": START + np.arange(rows, dtype=float),
            "ph": 5.0 + rng.normal(0, 0.01, rows),
            "offgas_co2": np.linspace(0.04, 2.5, rows),
            "do": 100 - np.linspace(0, 60, rows),
            "truth_biomass_g_l": np.linspace(1, 20, rows),  # not a channel: never replayed
        }
    )
    frame.loc[10:19, "do"] = np.nan  # a gap in one channel
    return frame


def expected_readings(frame: pd.DataFrame, reactor: str) -> list[tuple]:
    out = []
    for row in frame.itertuples(index=False):
        for name in ("ph", "do", "offgas_co2"):
            value = getattr(row, name)
            if not math.isnan(value):
                out.append((row.timestamp, reactor, name, value))
    return out


def test_replay_at_max_speed_reproduces_the_file_exactly(tmp_path: Path) -> None:
    frame = recording()
    path = tmp_path / "batch.parquet"
    frame.to_parquet(path)
    received: list[Reading] = []
    driver = ReplayDriver(received.append, path, reactor="R4", speed=0)
    driver.run(threading.Event())
    got = sorted((r.timestamp, r.reactor, r.channel, r.value) for r in received)
    assert got == sorted(expected_readings(frame, "R4"))
    assert driver.finished and driver.rows_replayed == len(frame)
    assert driver.stats.emitted == len(received) == 3 * 600 - 10
    assert {r.unit for r in received if r.channel == "offgas_co2"} == {"%v/v"}


def test_datetime_time_column_and_csv(tmp_path: Path) -> None:
    frame = recording(5).rename(columns={"timestamp": "time"})
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    batch = RecordedBatch.read(path)
    assert batch.times.tolist() == [START + i for i in range(5)]
    assert batch.reactor == "R1"


def test_shift_to_now_moves_the_batch_onto_the_station_clock_never_ahead_of_it() -> None:
    received: list[Reading] = []
    before = time.time()
    ReplayDriver(received.append, recording(3), speed=1, shift_to_now=True).run(threading.Event())
    after = time.time()
    assert before <= received[0].timestamp <= after  # at speed 1 the first row is now
    # Spacing between rows is kept.
    stamps = sorted({r.timestamp for r in received})
    assert stamps[1] - stamps[0] == pytest.approx(1.0)
    # As fast as possible: moved back so that the last row is now, none in the future.
    received.clear()
    before = time.time()
    ReplayDriver(received.append, recording(600), speed=0, shift_to_now=True).run(threading.Event())
    after = time.time()
    last = max(r.timestamp for r in received)
    assert before <= last <= after
    assert min(r.timestamp for r in received) == pytest.approx(last - 599.0)


@pytest.mark.parametrize("speed", [0.5, 1.0, 60.0, 3600.0])
def test_shift_to_now_never_stamps_a_row_ahead_of_its_emission(speed: float) -> None:
    """A 49 h replay at any speed is re-based to the station clock, never into the future."""
    hours = 49
    frame = pd.DataFrame({"timestamp": START + 60.0 * np.arange(hours * 60 + 1), "ph": 5.0})
    driver = ReplayDriver(print, frame, speed=speed, shift_to_now=True)
    now = 1_800_000_000.0
    offset = driver.offset_to_now(now)
    span = hours * 3600.0
    for recorded in (0.0, span / 3, span):
        emitted_at = now + recorded / speed
        assert START + recorded + offset <= emitted_at + 1e-6, recorded
    if speed <= 1:
        assert START + offset == now  # the first row is "now"
    else:
        assert START + span + offset == pytest.approx(now + span / speed)  # ends on the clock


@pytest.mark.parametrize("speed", [0.0, 1.0, 60.0])
def test_a_sample_taken_after_the_last_row_is_never_stamped_in_the_future(speed: float) -> None:
    """The notebook refuses future times: a final sample 2 s after the last row waits for its
    moment, and a fast replay is re-based so that it, too, lands on the wall clock."""
    from bptwin.drivers.replay import RecordedSample

    batch = RecordedBatch.from_frame(recording(3), reactor="R1")
    batch.samples = [
        RecordedSample(START + 4.0, 4.0, "extra", math.nan, 1.0, math.nan, math.nan, "")
    ]
    handed: list[tuple[float, float]] = []  # (stamp, wall clock when handed over)
    received: list[Reading] = []
    driver = ReplayDriver(
        received.append,
        batch,
        speed=speed,
        shift_to_now=True,
        on_sample=lambda sample: handed.append((sample.timestamp, time.time())),
    )
    driver.run(threading.Event())
    ((stamp, wall),) = handed
    assert stamp <= wall + 1e-3
    assert max(r.timestamp for r in received) < stamp
    assert stamp == pytest.approx(START + 4.0 + (driver.offset or 0.0))


def test_paced_replay_stops_on_request_and_keeps_order() -> None:
    received: list[Reading] = []
    driver = ReplayDriver(received.append, recording(), speed=60)  # 600 s of data -> 10 s
    thread = DriverThread(driver).start()
    while driver.rows_replayed < 3:
        time.sleep(0.01)
    assert thread.stop(timeout=5)
    assert not driver.finished
    assert 0 < driver.rows_replayed < 600
    stamps = [r.timestamp for r in received]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"ph": [5.0]}), "needs a time column"),
        (pd.DataFrame({"timestamp": [START], "colour": [1]}), "no channel columns"),
        (pd.DataFrame({"timestamp": [START, None], "ph": [5.0, 5.1]}), "empty or non-numeric"),
    ],
)
def test_unusable_recordings_are_refused_with_a_reason(frame: pd.DataFrame, message: str):
    with pytest.raises(ReplayError, match=message):
        ReplayDriver(print, frame)


def test_missing_or_corrupt_file_and_bad_speed(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        ReplayDriver(print, tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(ReplayError, match="cannot read"):
        ReplayDriver(print, junk)
    with pytest.raises(ReplayError, match="speed"):
        ReplayDriver(print, recording(2), speed=-1)


def test_a_dataset_batch_replays_exactly(tmp_path: Path) -> None:
    dataset = pytest.importorskip("bptwin.twin.dataset")
    simulator = pytest.importorskip("bptwin.twin.simulator")
    result = simulator.simulate_batch(seed=5, start_timestamp=START, hours=0.05)
    record = dataset.BatchRecord.from_simulation(
        result, number=1, phase="A", role="training", variation="nominal"
    )
    dataset.write_dataset(tmp_path, dataset.Dataset(batches=[record]))
    received: list[Reading] = []
    ReplayDriver(received.append, tmp_path, batch=1, reactor="R1", speed=0).run(threading.Event())
    # "The file": what the dataset holds on disk (it may store narrower floats than the run).
    sensors = pd.read_parquet(tmp_path / record.files["sensors"])
    assert len(sensors) == len(result.sensors)
    expected = sorted(
        (float(ts), name, float(value))
        for name in sensors.columns
        if name not in ("time_s", "timestamp") and not name.startswith("truth_")
        for ts, value in zip(sensors["timestamp"], sensors[name], strict=True)
        if not math.isnan(value)
    )
    assert sorted((r.timestamp, r.channel, r.value) for r in received) == expected
    assert not any(r.channel.startswith("truth_") for r in received)
    with pytest.raises(ReplayError, match="batch 7"):
        ReplayDriver(print, tmp_path, batch=7)
    with pytest.raises(ReplayError, match="say which batch"):
        ReplayDriver(print, tmp_path)
