"""Fill the trend history from the time-series store when the app starts mid-batch.

A control room restarted at hour 20, or a viewer attaching to a running ``bptwin serve``,
would otherwise draw the "whole batch" window from the moment it started. The recent part
(default: the last hour) comes back at full rate; older data as 30 s window means, which is
already finer than any plot draws a 30 h batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bptwin.database.channels import CHANNELS
from bptwin.database.timeseries.base import TimeSeriesError, TimeSeriesStore
from bptwin.twin.history import DERIVED_SERIES, History

RECENT_S = 3600.0
WINDOW_S = 30.0


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What came back from the store (points per kind), and what could not be read."""

    readings: int = 0
    windows: int = 0
    derived: int = 0
    predictions: int = 0
    problems: tuple[str, ...] = ()


def _arrays(readings: list) -> tuple[np.ndarray, np.ndarray]:
    times = np.fromiter((r.timestamp for r in readings), dtype=np.float64, count=len(readings))
    values = np.fromiter((r.value for r in readings), dtype=np.float64, count=len(readings))
    return times, values


def _copy_range(
    history: History, store: TimeSeriesStore, reactor: str, name: str, start: float, end: float
) -> int:
    """The stored readings of one series in ``[start, end)`` into the history; how many."""
    stored = store.read_range(reactor, name, start, end)
    if stored:
        history.extend(reactor, name, *_arrays(stored))
    return len(stored)


def backfill_history(
    history: History,
    store: TimeSeriesStore,
    reactor: str,
    *,
    end: float,
    hours: float | None = None,
    recent_s: float = RECENT_S,
) -> BackfillResult:
    """Read ``reactor``'s last ``hours`` (default: the history's length) up to ``end`` (Unix s)
    into ``history``; a channel the store cannot read is named in ``problems`` and skipped."""
    from bptwin.twin.serving import PREDICTION_CHANNELS

    span_s = (hours if hours is not None else history.hours) * 3600.0
    start = end - span_s
    split = max(start, end - recent_s)
    readings = windows = derived = predictions = 0
    problems: list[str] = []
    for channel in CHANNELS:
        name = channel.name
        try:
            if split > start:
                aggregates = store.read_windows(reactor, name, start, split, WINDOW_S)
                aggregates = [a for a in aggregates if a.count and math.isfinite(a.mean)]
                if aggregates:
                    times = np.array([a.window_start + WINDOW_S / 2 for a in aggregates])
                    values = np.array([a.mean for a in aggregates])
                    history.extend(reactor, name, times, values)
                    windows += len(aggregates)
            readings += _copy_range(history, store, reactor, name, split, end)
        except TimeSeriesError as exc:
            problems.append(f"{name}: {exc}")
    for name in DERIVED_SERIES:
        try:
            derived += _copy_range(history, store, reactor, name, start, end)
        except TimeSeriesError as exc:
            problems.append(f"{name}: {exc}")
    try:
        band = [
            store.read_range(reactor, PREDICTION_CHANNELS[key], start, end)
            for key in ("od600", "lower", "upper")
        ]
    except TimeSeriesError as exc:
        problems.append(f"predictions: {exc}")
    else:
        by_time = [{r.timestamp: r.value for r in series} for series in band]
        times = np.array(sorted(set(by_time[0]) & set(by_time[1]) & set(by_time[2])))
        if len(times):
            od600, lower, upper = (
                np.array([series[t] for t in times], dtype=np.float64) for series in by_time
            )
            history.extend_predictions(reactor, times, od600, lower, upper)
            predictions = len(times)
    return BackfillResult(readings, windows, derived, predictions, tuple(problems))
