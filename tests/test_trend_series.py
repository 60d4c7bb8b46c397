"""What the trend plots draw (twin.trend_series): gaps as gaps, one predicted line continued by
the current forecast, evenly spaced round ticks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptwin.twin.trend_series import (
    gap_threshold_s,
    nice_ticks,
    od600_lines,
    split_at_gaps,
    tick_labels,
)


def test_a_gap_longer_than_a_few_periods_cuts_the_line() -> None:
    times = np.array([0.0, 1.0, 2.0, 3.0, 60.0, 61.0, 62.0])
    values = np.array([1.0, 2.0, math.nan, 4.0, 5.0, 6.0, 7.0])
    runs = split_at_gaps(times, values, max_gap_s=4.0)
    # The NaN is a break too: [0, 1], [3], [60, 61, 62].
    assert [r[0].tolist() for r in runs] == [[0.0, 1.0], [3.0], [60.0, 61.0, 62.0]]
    assert [r[1].tolist() for r in runs] == [[1.0, 2.0], [4.0], [5.0, 6.0, 7.0]]
    assert split_at_gaps(np.array([]), np.array([]), 4.0) == []


def test_unsorted_and_repeated_times_make_one_line_not_a_zigzag() -> None:
    # A backfilled nowcast and a live one at the same time: the later value wins, in time order.
    times = np.array([30.0, 0.0, 60.0, 30.0])
    values = np.array([2.0, 1.0, 3.0, 2.5])
    [(t, v)] = split_at_gaps(times, values, 120.0)
    assert t.tolist() == [0.0, 30.0, 60.0] and v.tolist() == [1.0, 2.5, 3.0]


def test_the_gap_threshold_follows_the_decimated_spacing() -> None:
    assert gap_threshold_s(1.0, 3600.0, 10_000) == pytest.approx(4.0)
    # 1 h drawn with 200 points: 100 buckets of 36 s, so 144 s before a line is cut.
    assert gap_threshold_s(1.0, 3600.0, 200) == pytest.approx(144.0)


def test_one_predicted_line_then_the_forecast_from_its_last_point() -> None:
    t = np.arange(0.0, 600.0, 30.0)
    center = 5.0 * np.exp(t / 3600.0)
    forecast_t = np.arange(540.0, 1800.0, 60.0)  # made a window ago: overlaps the nowcasts
    lines = od600_lines(
        t,
        center,
        center * 0.9,
        center * 1.1,
        forecast_t,
        5.0 * np.exp(forecast_t / 3600.0),
        max_gap_s=120.0,
    )
    assert len(lines.predicted) == 1
    assert lines.forecast is not None
    forecast_times, forecast_values = lines.forecast
    # The forecast starts at the newest nowcast (570 s) and only goes forward from there.
    assert forecast_times[0] == 570.0 and forecast_values[0] == pytest.approx(center[-1])
    assert np.all(np.diff(forecast_times) > 0) and forecast_times[1] == 600.0
    assert lines.band_now == pytest.approx((center[-1] * 0.9, center[-1], center[-1] * 1.1))
    # No nowcasts yet: the forecast alone.
    alone = od600_lines(None, None, None, None, forecast_t, forecast_t, max_gap_s=120.0)
    assert alone.predicted == () and alone.forecast is not None
    assert alone.forecast[0][0] == 540.0


@pytest.mark.parametrize(
    ("low", "high", "ticks", "expected"),
    [
        (0.0, 10.0, 6, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
        (3.2, 17.9, 5, [0.0, 5.0, 10.0, 15.0, 20.0]),
        (4.97, 5.31, 5, [4.8, 5.0, 5.2, 5.4]),
        (20.87, 20.93, 4, [20.85, 20.9, 20.95]),
        (-2.0, 3.0, 6, [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]),
    ],
)
def test_ticks_are_round_numbers(low: float, high: float, ticks: int, expected: list) -> None:
    result = nice_ticks(low, high, ticks)
    assert result[0] <= low and result[-1] >= high
    assert result == pytest.approx(expected)


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(1e-3, 1e6, allow_nan=False),
    st.integers(2, 12),
)
def test_ticks_are_evenly_spaced_cover_the_range_and_are_few(
    low: float, span: float, max_ticks: int
) -> None:
    high = low + span
    ticks = nice_ticks(low, high, max_ticks)
    assert 2 <= len(ticks) <= max(max_ticks, 3)
    steps = np.diff(ticks)
    slack = 1e-6 * steps[0]  # float noise in the last digits is not a miss
    assert ticks[0] <= low + slack and ticks[-1] >= high - slack
    assert np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9)
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))


def test_tick_labels_share_their_decimals() -> None:
    assert tick_labels([0.0, 2.5, 5.0]) == ["0.0", "2.5", "5.0"]
    assert tick_labels([20.85, 20.9, 20.95]) == ["20.85", "20.90", "20.95"]
    assert tick_labels([0.0, 500.0, 1000.0]) == ["0", "500", "1000"]
