"""30 s windows: a hand-made stream with gaps, duplicates, late and impossible values."""

import math
import random

import numpy as np
import pandas as pd
import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.twin.windows import (
    WindowAggregator,
    windows_from_arrays,
    windows_from_frame,
)

# A multiple of 30 s since the epoch: windows start at T0, T0 + 30, ...
T0 = 1_763_900_010.0
assert T0 % 30 == 0


def feed(aggregator: WindowAggregator, readings: list[Reading]) -> list:
    out = []
    for reading in readings:
        out.extend(aggregator.add(reading))
    return out


def test_hand_made_window_statistics() -> None:
    aggregator = WindowAggregator(reactor="r1", channels=("do", "ph", "offgas_o2"))
    readings = []
    # DO: 10 samples 40..49 % at seconds 0..9, a duplicate of second 3, an impossible 180 %.
    readings += [Reading(T0 + s, "r1", "do", 40.0 + s) for s in range(10)]
    readings.append(Reading(T0 + 3.4, "r1", "do", 43.0))  # duplicate delivery
    readings.append(Reading(T0 + 12, "r1", "do", 180.0))  # > 150 %: removed
    # pH: 2 good, 1 uncertain, 1 bad (no value).
    readings += [
        Reading(T0 + 0, "r1", "ph", 5.0),
        Reading(T0 + 1, "r1", "ph", 5.2),
        Reading(T0 + 2, "r1", "ph", 5.1, quality=Quality.UNCERTAIN),
        Reading(T0 + 3, "r1", "ph", math.nan, quality=Quality.BAD),
    ]
    # offgas_o2 never reports. Another reactor and an unknown channel are ignored.
    readings.append(Reading(T0 + 1, "r2", "do", 99.0))
    readings.append(Reading(T0 + 1, "r1", "stirrer_speed", 500.0))
    closed = feed(aggregator, readings)
    assert closed == []  # nothing closes before time passes the window end + lateness
    closed = aggregator.add(Reading(T0 + 32.5, "r1", "do", 50.0))
    assert len(closed) == 1
    w = closed[0]
    assert (w.start, w.end) == (T0, T0 + 30)
    do, ph, o2 = (w.position(name) for name in ("do", "ph", "offgas_o2"))
    # DO: values 40..49, mean 44.5, min 40, max 49, last 49; population std of 0..9 = 2.8723
    assert w.mean[do] == pytest.approx(44.5)
    assert (w.min[do], w.max[do], w.last[do]) == (40.0, 49.0, 49.0)
    assert w.std[do] == pytest.approx(2.8723, abs=1e-4)
    assert w.count[do] == 11  # 10 seconds + the rejected one; the duplicate replaced its slot
    assert w.n_valid[do] == 10 and w.n_rejected[do] == 1
    assert w.quality[do] == pytest.approx(10 / 11)
    assert w.last_timestamp[do] == T0 + 9
    # pH: usable 5.0, 5.2, 5.1 (uncertain counts as usable, not as good): quality 2/4
    assert w.mean[ph] == pytest.approx(5.1)
    assert w.n_valid[ph] == 3 and w.count[ph] == 4
    assert w.quality[ph] == pytest.approx(0.5)
    # offgas_o2: marked missing, not filled.
    assert w.missing[o2] and math.isnan(w.mean[o2]) and w.count[o2] == 0
    assert w.missing_channels == ("offgas_o2",)
    assert aggregator.duplicates == 1
    assert aggregator.ignored == 2
    events = aggregator.pop_events()
    assert [(e.channel, e.value) for e in events] == [("do", 180.0)]
    assert aggregator.pop_events() == []


def test_interior_gap_mean_uses_linear_interpolation() -> None:
    aggregator = WindowAggregator(channels=("do",))
    # Ramp 0, 1, ..., 29 with seconds 5..24 missing: the sample mean would be 14.5 only by
    # symmetry; make it asymmetric: seconds 10..29 missing except 29.
    seconds = [*range(10), 29]
    feed(aggregator, [Reading(T0 + s, "r", "do", float(s)) for s in seconds])
    (w,) = aggregator.flush()
    # Interpolated trajectory 0..29 is the ramp itself: mean 14.5 (plain sample mean: 6.73).
    assert w.mean[0] == pytest.approx(14.5)
    assert w.n_valid[0] == 11


def test_late_readings_accepted_within_lateness_then_dropped() -> None:
    aggregator = WindowAggregator(channels=("do",), lateness_s=2.0)
    feed(aggregator, [Reading(T0 + s, "r", "do", 1.0) for s in range(30)])
    assert aggregator.add(Reading(T0 + 31, "r", "do", 2.0)) == ()
    # Arrives late but within the 2 s lateness: still counted in the first window.
    assert aggregator.add(Reading(T0 + 29.5, "r", "do", 1.0)) == ()
    (first,) = aggregator.add(Reading(T0 + 32, "r", "do", 2.0))
    assert first.count[0] == 30
    # Now the first window is out: a reading for it is dropped and counted.
    assert aggregator.add(Reading(T0 + 5, "r", "do", 9.0)) == ()
    assert aggregator.late_dropped == 1


def test_silent_windows_are_emitted_as_missing() -> None:
    aggregator = WindowAggregator(channels=("do",))
    aggregator.add(Reading(T0, "r", "do", 1.0))
    closed = aggregator.add(Reading(T0 + 95, "r", "do", 1.0))  # 3 windows later
    assert [w.start for w in closed] == [T0, T0 + 30, T0 + 60]
    assert [bool(w.missing[0]) for w in closed] == [False, True, True]
    # A wall-clock advance closes windows even when nothing arrives.
    assert [w.start for w in aggregator.advance_to(T0 + 200)] == [T0 + 90, T0 + 120, T0 + 150]


def test_windows_align_to_multiples_of_30_s() -> None:
    aggregator = WindowAggregator(channels=("do",))
    windows = feed(aggregator, [Reading(T0 + 17 + s, "r", "do", 1.0) for s in range(60)])
    windows += aggregator.flush()
    assert all(w.start % 30 == 0 for w in windows)
    assert [w.count[0] for w in windows] == [13, 30, 17]


def test_snapshot_arrays_are_read_only() -> None:
    aggregator = WindowAggregator(channels=("do",))
    aggregator.add(Reading(T0, "r", "do", 1.0))
    (w,) = aggregator.flush()
    with pytest.raises(ValueError):
        w.mean[0] = 2.0


def _recording(seconds: int = 3600, seed: int = 3) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = T0 + 7.25 + np.arange(seconds, dtype=float)
    columns = {
        "do": 60 + rng.normal(0, 1, seconds),
        "ph": 5 + rng.normal(0, 0.01, seconds),
        "offgas_o2": 20.6 + rng.normal(0, 0.03, seconds),
        "offgas_co2": 0.3 + rng.normal(0, 0.01, seconds),
        "air_flow": np.ones(seconds),
        "vessel_weight": np.where(np.arange(seconds) % 10 == 0, 1500.0, np.nan),
    }
    columns["do"][200:240] = np.nan  # a 40 s hole spanning a window boundary
    columns["do"][1000:1500] = np.nan  # a long gap
    columns["ph"][700] = 1.0  # impossible
    columns["offgas_o2"][1800:1815] = np.nan  # an interior hole
    return t, columns


def test_stream_equals_batch_bit_for_bit() -> None:
    """Readings out of order (within the lateness) and duplicated give the batch's windows."""
    t, columns = _recording()
    batch = windows_from_arrays(t, columns, reactor="r1")
    readings = [
        Reading(float(t[i]), "r1", name, float(values[i]))
        for i in range(t.size)
        for name, values in columns.items()
        if not math.isnan(values[i])
    ]
    rng = random.Random(5)
    # Shuffle channels and neighbouring seconds (at most 1 s apart), and repeat some readings.
    for i in range(0, len(readings) - 6, 6):
        chunk = readings[i : i + 6]
        rng.shuffle(chunk)
        readings[i : i + 6] = chunk
    for i in range(50, len(readings), 997):
        readings.insert(i, readings[i - 3])
    aggregator = WindowAggregator(reactor="r1")
    stream = feed(aggregator, readings) + list(aggregator.flush())
    assert len(stream) == len(batch) == 121
    assert aggregator.duplicates > 0 and aggregator.late_dropped == 0
    assert all(a.same_as(b) for a, b in zip(stream, batch, strict=True))
    # The windows carry what the data held: missing DO during the long gap, one rejected pH.
    # DO gaps: samples at T0+207.25..246.25 (window [T0+210, T0+240) empty) and
    # T0+1007.25..1506.25 (windows T0+1020 .. T0+1470 empty: 16): 17 windows without DO.
    assert sum(bool(w.missing[w.position("do")]) for w in batch) == 17
    assert sum(int(w.n_rejected[w.position("ph")]) for w in batch) == 1
    assert {int(w.count[w.position("vessel_weight")]) for w in batch[1:-1]} == {3}


def test_frame_with_datetime_index_equals_arrays() -> None:
    t, columns = _recording(1800)
    frame = pd.DataFrame(columns, index=pd.to_datetime(t, unit="s", utc=True))
    from_frame = windows_from_frame(frame, timestamp_column=None)
    from_arrays = windows_from_arrays(t, columns)
    assert len(from_frame) == len(from_arrays)
    assert all(
        a.mean.tobytes() == b.mean.tobytes() for a, b in zip(from_frame, from_arrays, strict=True)
    )


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        WindowAggregator(channels=("do", "not_a_channel"))
    with pytest.raises(ValueError, match="lateness_s"):
        WindowAggregator(lateness_s=45.0)
    with pytest.raises(ValueError, match="column 'do'"):
        windows_from_arrays([T0, T0 + 1], {"do": [1.0]})
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        windows_from_frame(pd.DataFrame({"do": [1.0]}))
