"""One contract suite for every time-series store: embedded SQLite and a real InfluxDB 1.x."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.database.timeseries import EmbeddedStore, TimeSeriesStore, WindowAggregate

# 2023-11-14T22:13:30Z: a multiple of 30 s and of 60 s, so window arithmetic is easy to check.
T0 = 1_700_000_010.0
assert T0 % 60 == 30 and T0 % 30 == 0


@pytest.fixture(params=["embedded", pytest.param("influx", marks=pytest.mark.influx)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TimeSeriesStore]:
    if request.param == "embedded":
        embedded = EmbeddedStore(tmp_path / "series.sqlite")
        yield embedded
        embedded.close()
    else:
        yield request.getfixturevalue("influx_store")


def reading(offset: float, value: float, channel: str = "ph", **kwargs: object) -> Reading:
    return Reading(T0 + offset, kwargs.pop("reactor", "R1"), channel, value, **kwargs)  # type: ignore[arg-type]


def stored(store: TimeSeriesStore, readings: list[Reading]) -> None:
    store.write(readings)
    assert store.flush(timeout=30), f"{store.name} did not flush within 30 s: {store.status()}"


def test_round_trip_in_ascending_time_order(store: TimeSeriesStore) -> None:
    written = [
        reading(5, 7.05, unit="pH"),
        reading(1, 7.01, unit="pH", quality=Quality.UNCERTAIN),
        reading(3, 7.03, unit="pH"),
        reading(2, 30.5, channel="do", unit="%sat"),
    ]
    stored(store, written)
    got = store.read_range("R1", "ph", T0, T0 + 60)
    assert [r.timestamp for r in got] == [T0 + 1, T0 + 3, T0 + 5]
    assert [r.value for r in got] == [7.01, 7.03, 7.05]
    assert [r.quality for r in got] == [Quality.UNCERTAIN, Quality.GOOD, Quality.GOOD]
    assert {r.unit for r in got} == {"pH"}
    assert {(r.reactor, r.channel) for r in got} == {("R1", "ph")}
    assert store.read_range("R1", "do", T0, T0 + 60) == [written[3]]


def test_range_is_half_open(store: TimeSeriesStore) -> None:
    stored(store, [reading(i, float(i)) for i in range(5)])
    got = store.read_range("R1", "ph", T0 + 1, T0 + 3)
    assert [r.value for r in got] == [1.0, 2.0]
    assert store.read_range("R1", "ph", T0 + 10, T0 + 20) == []


def test_timestamps_keep_milliseconds(store: TimeSeriesStore) -> None:
    offsets = [0.001, 0.002, 0.123, 0.999, 1.5]
    stored(store, [reading(offset, offset) for offset in offsets])
    got = store.read_range("R1", "ph", T0, T0 + 2)
    assert [round((r.timestamp - T0) * 1000) for r in got] == [1, 2, 123, 999, 1500]
    assert [r.value for r in got] == offsets


def test_writing_the_same_reading_twice_leaves_one(store: TimeSeriesStore) -> None:
    batch = [reading(i, 7.0 + i / 10) for i in range(10)]
    stored(store, batch)
    stored(store, batch)
    stored(store, batch[3:5])
    got = store.read_range("R1", "ph", T0, T0 + 60)
    assert got == batch


def test_writing_the_same_reading_twice_counts_a_duplicate(store: TimeSeriesStore) -> None:
    stored(store, [reading(1, 7.0), reading(2, math.nan)])
    stored(store, [reading(1, 7.0), reading(2, math.nan)])
    status = store.status()
    assert (status.duplicates, status.conflicts, status.kept_aside) == (2, 0, 0)
    assert status.written == 2


def test_first_write_wins_and_a_conflicting_value_is_kept_aside(store: TimeSeriesStore) -> None:
    """History is not rewritten: another value under a stored key is refused and counted."""
    stored(store, [reading(1, 7.0), reading(2, 7.1)])
    stored(store, [reading(1, 6.5, quality=Quality.UNCERTAIN), reading(3, 7.2)])
    stored(store, [reading(2, 7.1, quality=Quality.BAD)])  # same value, other quality
    got = store.read_range("R1", "ph", T0, T0 + 60)
    assert [(r.value, r.quality) for r in got] == [
        (7.0, Quality.GOOD),
        (7.1, Quality.GOOD),
        (7.2, Quality.GOOD),
    ]
    status = store.status()
    assert status.conflicts == 2
    assert status.kept_aside == 2
    assert status.kept_aside_in


def test_two_values_for_one_key_in_one_batch_keep_the_first(store: TimeSeriesStore) -> None:
    stored(store, [reading(1, 7.0), reading(1, 9.9), reading(1, 7.0)])
    assert [r.value for r in store.read_range("R1", "ph", T0, T0 + 60)] == [7.0]
    status = store.status()
    assert (status.conflicts, status.duplicates) == (1, 1)


@pytest.mark.parametrize(
    "value",
    [np.float64(29.95), np.float32(29.5), np.int64(30), 30, True, np.bool_(False)],
    ids=["float64", "float32", "int64", "int", "bool", "numpy-bool"],
)
def test_every_numeric_type_a_driver_hands_over_is_stored_as_a_float(
    store: TimeSeriesStore, value: object
) -> None:
    stored(store, [reading(1, value)])  # type: ignore[arg-type]
    got = store.read_range("R1", "ph", T0, T0 + 60)
    assert [r.value for r in got] == [float(value)]  # type: ignore[arg-type]
    assert type(got[0].value) is float
    assert store.status().refused == 0


def test_a_value_that_is_not_a_number_is_kept_aside_not_lost(store: TimeSeriesStore) -> None:
    stored(store, [reading(1, "7.0"), reading(2, 7.2)])  # type: ignore[arg-type]
    assert [r.value for r in store.read_range("R1", "ph", T0, T0 + 60)] == [7.2]
    status = store.status()
    assert (status.refused, status.kept_aside) == (1, 1)


def test_nan_is_stored_as_bad_and_read_back_as_nan(store: TimeSeriesStore) -> None:
    stored(store, [reading(1, 7.0), reading(2, math.nan), reading(3, 7.2)])
    got = store.read_range("R1", "ph", T0, T0 + 60)
    assert len(got) == 3
    assert math.isnan(got[1].value)
    assert got[1].quality is Quality.BAD
    assert got[1].timestamp == T0 + 2
    assert [got[0].quality, got[2].quality] == [Quality.GOOD, Quality.GOOD]


def test_windows_match_hand_computed_aggregates(store: TimeSeriesStore) -> None:
    stored(
        store,
        [
            # window [T0, T0+30): 1, 2, 6
            reading(0, 1.0),
            reading(10, 2.0),
            reading(20, 6.0),
            # window [T0+30, T0+60): 5, -1 and a NaN after them (ignored)
            reading(30, 5.0),
            reading(50, -1.0),
            reading(55, math.nan),
            # window [T0+60, T0+90) empty; [T0+90, T0+120): 4
            reading(90.5, 4.0),
            # window with only a NaN: left out
            reading(125, math.nan),
        ],
    )
    got = store.read_windows("R1", "ph", T0, T0 + 300)
    assert [w.window_start for w in got] == [T0, T0 + 30, T0 + 90]
    first, second, fourth = got
    assert first == WindowAggregate(T0, pytest.approx(3.0), 1.0, 6.0, 6.0, 3)
    assert second == WindowAggregate(T0 + 30, pytest.approx(2.0), -1.0, 5.0, -1.0, 2)
    assert fourth == WindowAggregate(T0 + 90, pytest.approx(4.0), 4.0, 4.0, 4.0, 1)


def test_windows_are_epoch_aligned_and_clipped_to_the_range(store: TimeSeriesStore) -> None:
    stored(store, [reading(i, float(i)) for i in range(0, 120, 5)])
    got = store.read_windows("R1", "ph", T0 + 12, T0 + 75, window_s=60)
    # 60 s windows start at multiples of 60 s since the epoch: T0 - 30 and T0 + 30.
    assert [w.window_start for w in got] == [T0 - 30, T0 + 30]
    assert got[0].count == 3 and got[0].min == 15.0 and got[0].max == 25.0
    assert got[1].count == 9 and got[1].min == 30.0 and got[1].last == 70.0
    assert got[1].mean == pytest.approx(50.0)


def test_list_channels(store: TimeSeriesStore) -> None:
    stored(
        store,
        [
            reading(1, 7.0),
            reading(1, 30.0, channel="do"),
            reading(1, 6.9, reactor="R2"),
        ],
    )
    assert store.list_channels() == [("R1", "do"), ("R1", "ph"), ("R2", "ph")]
    assert store.list_channels("R2") == [("R2", "ph")]
    assert store.list_channels("R9") == []


def test_unknown_series_reads_empty(store: TimeSeriesStore) -> None:
    stored(store, [reading(1, 7.0)])
    assert store.read_range("R1", "nope", T0, T0 + 60) == []
    assert store.read_windows("R9", "ph", T0, T0 + 60) == []


def test_bad_ranges_are_refused_with_a_clear_message(store: TimeSeriesStore) -> None:
    with pytest.raises(ValueError, match="before start"):
        store.read_range("R1", "ph", T0 + 10, T0)
    with pytest.raises(ValueError, match="finite"):
        store.read_range("R1", "ph", math.nan, T0)
    with pytest.raises(ValueError, match="window_s"):
        store.read_windows("R1", "ph", T0, T0 + 60, window_s=0)


def test_large_batch_arrives_whole(store: TimeSeriesStore) -> None:
    channels = [f"ch{i:02d}" for i in range(20)]
    batch = [reading(s, s + i / 100, channel=c) for s in range(600) for i, c in enumerate(channels)]
    stored(store, batch)
    assert len(store.list_channels("R1")) == 20
    got = store.read_range("R1", "ch07", T0, T0 + 600)
    assert len(got) == 600
    assert got[-1].value == pytest.approx(599.07)
    assert store.status().written >= len(batch)


def test_concurrent_writers_lose_nothing(store: TimeSeriesStore) -> None:
    def writer(channel: str) -> None:
        for second in range(50):
            store.write([reading(second + k / 4, float(second), channel=channel) for k in range(4)])

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.flush(timeout=30)
    for i in range(4):
        assert len(store.read_range("R1", f"w{i}", T0, T0 + 100)) == 200


def test_status_reports_a_healthy_link(store: TimeSeriesStore) -> None:
    stored(store, [reading(i, 7.0) for i in range(3)])
    status = store.status()
    assert status.link_ok
    assert status.pending == 0 and status.spooled == 0
    assert status.written == 3
    assert status.failed_writes == 0
