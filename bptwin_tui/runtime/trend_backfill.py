"""Fill the trend history from the time-series store when the app starts mid-batch.

A control room restarted at hour 20, or a viewer attaching to a running ``bptwin serve``,
would otherwise draw the "whole batch" window from the moment it started. Only a running
batch's own span is read back (from its inoculation, at most the history's length), never an
older batch. The recent part (default: the last hour) comes back at full rate; older data as
30 s window means, which is already finer than any plot draws a 30 h batch.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.channels import CHANNELS
from bptwin.database.timeseries.base import TimeSeriesError, TimeSeriesStore
from bptwin.twin.history import DERIVED_SERIES, History

if TYPE_CHECKING:
    from bptwin.database.reading import Reading
    from bptwin.eln.models import Batch
    from bptwin.eln.services import NotebookService

log = logging.getLogger(__name__)

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


def _arrays(readings: Sequence[Reading]) -> tuple[np.ndarray, np.ndarray]:
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


def running_batches(notebook: NotebookService, reactors: list[str]) -> dict[str, Batch]:
    """Reactor -> its running batch (the newest inoculation wins; a batch without a reactor
    runs on the first)."""
    from bptwin.eln.models import BatchStatus

    running: dict[str, tuple[float, Batch]] = {}
    for batch in notebook.batches.list_batches(BatchStatus.RUNNING):
        reactor = batch.reactor_id or reactors[0]
        if reactor not in reactors or batch.inoculated_at is None:
            continue
        start = unix_time(batch.inoculated_at)
        if reactor not in running or start > running[reactor][0]:
            running[reactor] = (start, batch)
    return {reactor: batch for reactor, (_, batch) in running.items()}


def running_batch_starts(notebook: NotebookService, reactors: list[str]) -> dict[str, float]:
    """Reactor -> inoculation time (Unix s) of its running batch (newest wins)."""
    return {
        reactor: unix_time(batch.inoculated_at)
        for reactor, batch in running_batches(notebook, reactors).items()
        if batch.inoculated_at is not None  # always: running_batches keeps inoculated ones
    }


def unix_time(moment: datetime) -> float:
    """Unix seconds of a notebook time (a naive one is UTC, as SQLite once handed back)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def backfill_running_batches(
    history: History,
    store: TimeSeriesStore,
    notebook: NotebookService,
    reactors: list[str],
    *,
    now: float | None = None,
) -> dict[str, BackfillResult]:
    """Each running batch's stored trends into ``history``; problems are logged, not raised."""
    end = time.time() if now is None else now
    results: dict[str, BackfillResult] = {}
    for reactor, start in running_batch_starts(notebook, reactors).items():
        hours = min(history.hours, max(0.0, end - start) / 3600.0)
        if hours <= 0:
            continue
        result = backfill_history(history, store, reactor, end=end, hours=hours)
        results[reactor] = result
        for problem in result.problems:
            log.warning("trend backfill of %s: %s", reactor, problem)
    return results


def backfill_in_background(
    work: Callable[[], object], *, name: str = "history-backfill"
) -> threading.Thread:
    """Run the backfill beside acquisition: the station is up before its history is."""

    def run() -> None:
        try:
            work()
        except Exception:  # the live view works without the past
            log.exception("trend backfill failed")

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
