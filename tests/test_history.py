"""Trend history: ring buffers, min/max decimation and the immutable windows the UI draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.twin.forecast import Forecast
from bptwin.twin.history import (
    WINDOW_NAMES,
    History,
    RingBuffer,
    decimate_band,
    decimate_minmax,
)
from bptwin.twin.predictor import Prediction

T0 = 1_770_000_000.0


def test_ring_buffer_keeps_the_newest_entries_in_time_order_once_full() -> None:
    buffer = RingBuffer(5)
    for i in range(12):
        buffer.append(T0 + i, float(i))
    assert len(buffer) == 5
    times, values = buffer.between(-math.inf, math.inf)
    assert list(times - T0) == [7, 8, 9, 10, 11]
    assert list(values[:, 0]) == [7, 8, 9, 10, 11]
    assert buffer.first_time == T0 + 7 and buffer.last_time == T0 + 11


def test_ring_buffer_window_is_inclusive_and_across_the_wrap() -> None:
    buffer = RingBuffer(6, columns=2)
    for i in range(9):  # wrapped: holds 3..8
        buffer.append(T0 + i, float(i), -float(i))
    times, values = buffer.between(T0 + 4, T0 + 7)
    assert list(times - T0) == [4, 5, 6, 7]
    assert list(values[:, 1]) == [-4, -5, -6, -7]
    empty_times, empty_values = buffer.between(T0 + 100, T0 + 200)
    assert len(empty_times) == 0 and empty_values.shape == (0, 2)


def test_ring_buffer_sorts_a_late_reading_into_place() -> None:
    buffer = RingBuffer(10)
    for offset in (0, 1, 3, 4, 2):
        buffer.append(T0 + offset, float(offset))
    times, values = buffer.between(-math.inf, math.inf)
    assert list(times - T0) == [0, 1, 2, 3, 4]
    assert list(values[:, 0]) == [0, 1, 2, 3, 4]
    buffer.append(T0 + 5, 5.0)  # appending after the sort continues at the right slot
    assert buffer.last_time == T0 + 5 and len(buffer) == 6


def test_ring_buffer_extend_matches_appending_one_by_one() -> None:
    one, many = RingBuffer(50), RingBuffer(50)
    times = T0 + np.arange(120, dtype=float)
    for t in times[:30]:
        one.append(t, t - T0)
    many.extend(times[:30], times[:30] - T0)
    for t in times[30:]:
        one.append(t, t - T0)
    many.extend(times[30:], times[30:] - T0)  # wraps, and more than fits
    assert np.array_equal(one.between(-math.inf, math.inf)[0], many.between(-math.inf, math.inf)[0])
    assert list(many.between(-math.inf, math.inf)[1][:3, 0]) == [70, 71, 72]
    history = History(["R1"], hours=1.0)
    history.extend("R1", "cer", times[:5], np.ones(5))
    assert len(history.window("R1", "batch").traces["cer"].times) == 5
    with pytest.raises(KeyError):
        history.extend("R1", "nonsense", times[:5], np.ones(5))


def test_ring_buffer_refuses_the_wrong_number_of_values() -> None:
    with pytest.raises(ValueError, match="expected 3"):
        RingBuffer(4, columns=3).append(T0, 1.0)


def test_decimation_is_bounded_and_keeps_each_spike() -> None:
    times = np.arange(108_000, dtype=float)
    rng = np.random.default_rng(7)
    values = rng.normal(0.0, 1.0, times.size)
    values[12_345] = 50.0
    values[99_999] = -40.0
    out_times, out_values = decimate_minmax(times, values, 0.0, 108_000.0, 320)
    assert len(out_times) <= 320
    assert out_values.max() == 50.0 and out_values.min() == -40.0
    assert out_times[np.argmax(out_values)] == 12_345  # the spike stays at its own time
    assert np.all(np.diff(out_times) >= 0)
    # every bucket's extremes survive: the decimated max over any bucket equals the raw max
    bucket = (times // (108_000 / 160)).astype(int)
    raw_max = np.array([values[bucket == b].max() for b in range(160)])
    out_bucket = (out_times // (108_000 / 160)).astype(int)
    kept_max = np.array([out_values[out_bucket == b].max() for b in range(160)])
    assert np.array_equal(raw_max, kept_max)


def test_decimation_passes_short_series_and_marks_gaps() -> None:
    times = np.arange(10, dtype=float)
    values = np.arange(10, dtype=float)
    out_times, out_values = decimate_minmax(times, values, 0, 10, 100)
    assert np.array_equal(out_times, times) and np.array_equal(out_values, values)
    assert out_values is not values
    gappy = np.where((times >= 3) & (times < 6), np.nan, values)
    long_times = np.repeat(times, 100) + np.tile(np.arange(100) / 100, 10)
    long_values = np.repeat(gappy, 100)
    _, decimated = decimate_minmax(long_times, long_values, 0, 10, 20)
    assert np.isnan(decimated).sum() == 3  # one NaN point per all-NaN bucket: a gap
    assert np.nanmax(decimated) == 9 and np.nanmin(decimated) == 0


def test_band_decimation_never_narrows_the_band() -> None:
    times = np.arange(1000, dtype=float)
    center = np.full(1000, 5.0)
    lower = center - 1
    upper = center + 1
    lower[500], upper[700] = 0.5, 9.0
    out = decimate_band(times, center, lower, upper, 0, 1000, 50)
    assert len(out[0]) <= 50
    assert out[2].min() == 0.5 and out[3].max() == 9.0
    assert np.allclose(out[1], 5.0)


def _filled(hours: float = 2.0) -> History:
    history = History(["R1"], hours=3.0)
    for i in range(int(hours * 3600)):
        history.add_reading(Reading(T0 + i, "R1", "do", 40.0 + (i % 100) / 10, "%sat"))
    return history


def test_window_spans_and_caps_the_points() -> None:
    history = _filled()
    for name, raw in [("15 min", 901), ("1 h", 3601), ("batch", 7200)]:
        window = history.window("R1", name, points=200)
        trace = window.trace("do")
        assert trace is not None and trace.unit == "%sat"
        assert trace.raw_points == raw
        assert 0 < len(trace.times) <= 200
        assert window.end == T0 + 7199
    assert set(WINDOW_NAMES) == {"15 min", "1 h", "6 h", "batch"}
    with pytest.raises(KeyError):
        history.window("R1", "2 days")


def test_window_is_an_immutable_copy() -> None:
    history = _filled(0.1)
    window = history.window("R1", "15 min", points=100)
    trace = window.trace("do")
    assert trace is not None
    with pytest.raises(ValueError):
        trace.values[0] = 0.0
    before = trace.values.copy()
    version = history.version("R1")
    for i in range(360, 1000):
        history.add_reading(Reading(T0 + i, "R1", "do", 0.0, "%sat"))
    assert np.array_equal(trace.values, before)  # the writer never touches a handed-out window
    assert history.version("R1") > version


def test_bad_readings_are_gaps_and_unknown_channels_are_not_kept() -> None:
    history = History(["R1"], hours=1.0)
    history.add_reading(Reading(T0, "R1", "ph", 5.0, "pH"))
    history.add_reading(Reading(T0 + 1, "R1", "ph", 9.9, "pH", Quality.BAD))
    history.add_reading(Reading(T0 + 2, "R1", "not_a_channel", 1.0))
    window = history.window("R1", "15 min")
    trace = window.trace("ph")
    assert trace is not None
    assert trace.values[0] == 5.0 and math.isnan(trace.values[1])
    assert "not_a_channel" not in window.traces
    assert history.window("R9").empty  # unknown reactor: an empty window, not an error


def test_memory_stays_bounded_for_unknown_reactors() -> None:
    history = History(hours=0.01)
    for i in range(40):
        history.add_reading(Reading(T0, f"X{i}", "ph", 5.0))
    assert len(history.reactors) == 16 and history.refused_reactors == 24


def test_predictions_forecast_and_samples_reach_the_window() -> None:
    history = _filled(1.0)
    for k in range(100):
        history.add_prediction(
            Prediction(T0 + 30 * k, 1.0 + k / 10, 0.8 + k / 10, 1.2 + k / 10, "m1", "R1", k)
        )
    grid = T0 + 3000 + np.arange(0, 20 * 3600, 600.0)
    forecast = Forecast(
        made_at=T0 + 3000,
        times=grid,
        od600=np.linspace(11, 60, grid.size),
        lower=np.linspace(10, 50, grid.size),
        upper=np.linspace(12, 70, grid.size),
        depletion_time=T0 + 20 * 3600,
        depletion_earliest=T0 + 19 * 3600,
        depletion_latest=T0 + 21 * 3600,
        growth_rate=0.2,
    )
    history.add_prediction(Prediction(T0 + 3000, 11.0, 10.0, 12.0, "m1", "R1", 100, forecast))
    history.add_sample("R1", T0 + 1800, 4.2)
    hour = history.window("R1", "1 h", points=60)
    assert hour.predicted is not None and len(hour.predicted.times) <= 30
    assert hour.predicted.upper.max() == pytest.approx(12.0)
    assert hour.forecast is not None
    assert hour.forecast.times.max() <= hour.end + 1200  # a third of the span ahead
    batch = history.window("R1", "batch", points=60)
    assert batch.forecast is not None
    assert batch.forecast.times.max() > batch.end + 15 * 3600  # the whole forecast
    assert list(batch.sample_od600) == pytest.approx([4.2])
    assert batch.origin == T0  # no process state yet: the first reading
    only_predictions = history.window("R1", "1 h", points=60, names=())
    assert not only_predictions.traces and not only_predictions.empty


def test_samples_can_be_replaced_from_the_notebook() -> None:
    history = History(["R1"], hours=1.0)
    history.add_reading(Reading(T0 + 7200, "R1", "ph", 5.0))
    history.add_sample("R1", T0, 4.0)
    history.set_samples("R1", [T0, T0 + 3600, T0 + 7200], [4.0, 8.1, math.nan])
    history.set_samples("R1", [T0, T0 + 3600], [4.0, 8.1])  # reloading does not duplicate
    window = history.window("R1", "batch")
    assert list(window.sample_od600) == pytest.approx([4.0, 8.1])
    with pytest.raises(ValueError, match="differ in length"):
        history.set_samples("R1", [T0], [])
