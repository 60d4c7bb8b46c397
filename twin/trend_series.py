"""What a trend plot draws, prepared without drawing: series cut at their gaps, the OD600
prediction as one line continued by the current forecast, and axis ticks on round numbers.

The dashboard's plots (screens/trends.py) hand these to plotext; keeping them here keeps them
testable without a terminal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A series is cut where two neighbours are further apart than this many of its sample periods
# (a late reading or two is not a gap; a sensor silent for a minute is).
GAP_PERIODS = 4.0
PREDICTION_PERIOD_S = 30.0  # one nowcast per closed 30 s window
NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)

SeriesRun = tuple[np.ndarray, np.ndarray]


def gap_threshold_s(period_s: float, span_s: float, points: int) -> float:
    """The longest spacing that is still a line: a few sample periods, or a few decimation
    buckets when the window is decimated (``points`` over ``span_s`` seconds)."""
    bucket = span_s / max(1, points // 2) if math.isfinite(span_s) and span_s > 0 else 0.0
    return GAP_PERIODS * max(period_s, bucket)


def split_at_gaps(times: np.ndarray, values: np.ndarray, max_gap_s: float) -> list[SeriesRun]:
    """The finite points as runs without a gap: a new run after a non-finite value or where the
    time step exceeds ``max_gap_s``. Times are sorted and repeated times keep their last value."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not len(times):
        return []
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    last_of_time = np.append(times[1:] != times[:-1], True)
    times, values = times[last_of_time], values[last_of_time]
    finite = np.isfinite(values) & np.isfinite(times)
    # A run breaks at every non-finite point and at every long step between finite points.
    run_id = np.cumsum(~finite)
    kept_times, kept_values, kept_runs = times[finite], values[finite], run_id[finite]
    if not len(kept_times):
        return []
    breaks = np.flatnonzero((np.diff(kept_times) > max_gap_s) | (np.diff(kept_runs) != 0)) + 1
    return [
        (t, v)
        for t, v in zip(np.split(kept_times, breaks), np.split(kept_values, breaks), strict=True)
        if len(t)
    ]


@dataclass(frozen=True, slots=True)
class Od600Lines:
    """The OD600 plot's lines: the nowcasts (one line, cut at gaps) and the current forecast,
    which starts where the last nowcast ends so the two never overlap."""

    predicted: tuple[SeriesRun, ...]
    forecast: SeriesRun | None
    band_now: tuple[float, float, float] | None  # (lower, center, upper) of the last nowcast


def od600_lines(
    predicted_times: np.ndarray | None,
    predicted_center: np.ndarray | None,
    predicted_lower: np.ndarray | None,
    predicted_upper: np.ndarray | None,
    forecast_times: np.ndarray | None,
    forecast_center: np.ndarray | None,
    *,
    max_gap_s: float,
) -> Od600Lines:
    """One predicted line and one forecast from the window's bands (any of them may be None)."""
    predicted: list[SeriesRun] = []
    band_now = None
    last_time = -math.inf
    if predicted_times is not None and predicted_center is not None:
        predicted = split_at_gaps(predicted_times, predicted_center, max_gap_s)
        if predicted:
            last_t, last_v = predicted[-1][0][-1], predicted[-1][1][-1]
            last_time = float(last_t)
            band_now = _band_at(
                predicted_times, predicted_lower, predicted_upper, last_time, float(last_v)
            )
    forecast = None
    if forecast_times is not None and forecast_center is not None and len(forecast_times):
        runs = split_at_gaps(forecast_times, forecast_center, math.inf)
        if runs:
            times, values = runs[0]
            ahead = times > last_time  # the part of the forecast still in the future
            times, values = times[ahead], values[ahead]
            if len(times) and predicted:
                # Continue the line from the newest nowcast: one origin, no second line on it.
                times = np.concatenate([[last_time], times])
                values = np.concatenate([[float(predicted[-1][1][-1])], values])
            if len(times):
                forecast = (times, values)
    return Od600Lines(tuple(predicted), forecast, band_now)


def _band_at(
    times: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    at: float,
    center: float,
) -> tuple[float, float, float] | None:
    if lower is None or upper is None:
        return None
    index = np.flatnonzero(np.asarray(times) == at)
    if not len(index):
        return None
    low, high = float(np.asarray(lower)[index[-1]]), float(np.asarray(upper)[index[-1]])
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return (low, center, high)


def nice_step(span: float, max_ticks: int) -> float:
    """The smallest step of 1, 2, 2.5 or 5 × 10^k that covers ``span`` in ``max_ticks`` - 1
    intervals."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(1, max_ticks - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in NICE_STEPS:
        if factor * magnitude >= raw * (1 - 1e-9):
            return factor * magnitude
    return 10.0 * magnitude


def nice_ticks(low: float, high: float, max_ticks: int = 5) -> list[float]:
    """Evenly spaced round ticks from at or below ``low`` to at or above ``high``: at most
    ``max_ticks`` of them, and never fewer than three allowed (a range may straddle a tick)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high < low:
        low, high = high, low
    if high == low:  # a flat line: one unit of its own size around it
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    max_ticks = max(3, max_ticks)
    step = nice_step(high - low, max_ticks)
    while True:
        first = math.floor(low / step + 1e-9) * step
        last = math.ceil(high / step - 1e-9) * step
        count = round((last - first) / step) + 1
        if count <= max_ticks:
            break
        step = nice_step(step * (count - 1) * 1.0001, max_ticks)  # widen and try again
    ticks = [first + i * step for i in range(count)]
    return [_clean(t, step) for t in ticks]


def _clean(value: float, step: float) -> float:
    """Round away float noise (0.30000000000000004) at the step's precision."""
    return round(value, decimals_for(step) + 2) + 0.0


def decimals_for(step: float) -> int:
    """Decimals that show every tick of this step exactly (2.5 → 1, 0.25 → 2, 50 → 0)."""
    if step <= 0 or not math.isfinite(step):
        return 0
    for decimals in range(0, 10):
        if abs(round(step, decimals) - step) < step * 1e-6:
            return decimals
    return 9


def tick_labels(ticks: list[float]) -> list[str]:
    """The ticks printed with the same number of decimals."""
    if len(ticks) < 2:
        return [f"{t:g}" for t in ticks]
    decimals = decimals_for(ticks[1] - ticks[0])
    return [f"{t:.{decimals}f}" for t in ticks]


def value_range(segments: list[SeriesRun]) -> tuple[float, float] | None:
    """Lowest and highest value of the segments (None when there is nothing)."""
    values = [v for _, v in segments if len(v)]
    if not values:
        return None
    joined = np.concatenate(values)
    return float(joined.min()), float(joined.max())
