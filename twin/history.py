"""Trend history of a station: bounded ring buffers per reactor and channel, decimated windows.

The station's reading path, the shadow worker (process states) and the inference worker
(predictions) append; the UI asks for a ``HistoryWindow``: an immutable copy of one time window,
already cut down to a drawable number of points with min/max buckets, so a 30 h batch costs the
screen the same as a 15 min one. Memory is fixed: every buffer is allocated at its full size
(enough for ``hours`` of 1 Hz data) and overwrites its oldest entries when full.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading

if TYPE_CHECKING:
    from bptwin.twin.features import ProcessState
    from bptwin.twin.predictor import Prediction

log = logging.getLogger(__name__)

# Window name -> span in seconds; None is the whole batch.
TIME_WINDOWS: Mapping[str, float | None] = MappingProxyType(
    {"15 min": 15 * 60.0, "1 h": 3600.0, "6 h": 6 * 3600.0, "batch": None}
)
WINDOW_NAMES: tuple[str, ...] = tuple(TIME_WINDOWS)

# Derived series of the 30 s windows (twin.shadow.DERIVED_CHANNELS names) kept for plotting.
DERIVED_SERIES: tuple[str, ...] = ("our", "cer", "rq", "mu", "kla", "base_rate", "cum_co2")
DERIVED_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "our": "mmol/L/h",
        "cer": "mmol/L/h",
        "rq": "",
        "mu": "1/h",
        "kla": "1/h",
        "base_rate": "mL/h",
        "cum_co2": "mmol/L",
    }
)

DEFAULT_HOURS = 32.0  # a 30 h batch with room to spare
WINDOW_S = 30.0  # the feature windows: derived values and predictions arrive this often
MAX_REACTORS = 16  # a topic tree naming ever new reactors must not grow memory without bound
MAX_SAMPLES = 256  # offline samples per reactor (the SOP takes 8)


class RingBuffer:
    """A fixed-capacity, time-ordered buffer of (time, value columns); the oldest is overwritten.

    Not thread-safe on its own: ``History`` holds the lock. Times are kept sorted: a late
    reading (out of order, e.g. from MQTT) marks the buffer and the next read sorts it once.
    """

    def __init__(self, capacity: int, columns: int = 1) -> None:
        if capacity < 1 or columns < 1:
            raise ValueError("a ring buffer needs a capacity and at least one column")
        self.capacity = capacity
        self.columns = columns
        self._times = np.empty(capacity, dtype=np.float64)
        self._values = np.empty((capacity, columns), dtype=np.float32)
        self._head = 0  # next slot to write
        self._count = 0
        self._unsorted = False
        self._last = -math.inf  # newest time appended (a Python float: cheaper to compare)

    def __len__(self) -> int:
        return self._count

    def append(self, timestamp: float, *values: float) -> None:
        if len(values) != self.columns:
            raise ValueError(f"expected {self.columns} value(s), got {len(values)}")
        head = self._head
        if self._count and timestamp < self._last:
            self._unsorted = True
        self._times[head] = timestamp
        if self.columns == 1:
            self._values[head, 0] = values[0]  # the 1 Hz path: a scalar store is cheapest
        else:
            self._values[head] = values
        self._last = timestamp if timestamp > self._last or not self._count else self._last
        self._head = head + 1 if head + 1 < self.capacity else 0
        if self._count < self.capacity:
            self._count += 1

    def extend(self, times: np.ndarray, values: np.ndarray) -> None:
        """Many entries at once (``values`` shaped (n,) or (n, columns)); the newest are kept."""
        times = np.asarray(times, dtype=np.float64)
        values = np.asarray(values, dtype=np.float32).reshape(len(times), self.columns)
        if len(times) > self.capacity:
            times, values = times[-self.capacity :], values[-self.capacity :]
        if not len(times):
            return
        if (self._count and times[0] < self._last) or np.any(np.diff(times) < 0):
            self._unsorted = True
        slots = (self._head + np.arange(len(times))) % self.capacity
        self._times[slots] = times
        self._values[slots] = values
        self._head = (self._head + len(times)) % self.capacity
        self._count = min(self._count + len(times), self.capacity)
        self._last = max(self._last, float(times.max()))

    @property
    def first_time(self) -> float:
        if not self._count:
            return math.nan
        self._sort_if_needed()
        return float(self._times[self._oldest()])

    @property
    def last_time(self) -> float:
        if not self._count:
            return math.nan
        self._sort_if_needed()
        return float(self._times[self._head - 1])

    def _oldest(self) -> int:
        return self._head if self._count == self.capacity else 0

    def _segments(self) -> list[slice]:
        """The stored slots in time order: one slice, or two once the buffer has wrapped."""
        if self._count < self.capacity:
            return [slice(0, self._count)]
        return [slice(self._head, self.capacity), slice(0, self._head)]

    def _sort_if_needed(self) -> None:
        if not self._unsorted:
            return
        times = np.concatenate([self._times[s] for s in self._segments()])
        values = np.concatenate([self._values[s] for s in self._segments()])
        order = np.argsort(times, kind="stable")
        self._times[: self._count] = times[order]
        self._values[: self._count] = values[order]
        self._head = self._count % self.capacity
        self._unsorted = False

    def between(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the entries with ``start <= time <= end``, oldest first."""
        self._sort_if_needed()
        times, values = [], []
        for part in self._segments():
            segment = self._times[part]
            low = int(np.searchsorted(segment, start, side="left"))
            high = int(np.searchsorted(segment, end, side="right"))
            if high > low:
                times.append(segment[low:high])
                values.append(self._values[part][low:high])
        if not times:
            return np.empty(0), np.empty((0, self.columns), dtype=np.float32)
        return np.concatenate(times), np.concatenate(values)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _bucket_starts(times: np.ndarray, start: float, end: float, buckets: int) -> np.ndarray:
    """Index of the first sample of each non-empty equal-time bucket of [start, end]."""
    edges = start + (end - start) * np.arange(buckets) / buckets
    starts = np.searchsorted(times, edges, side="left")
    return np.unique(starts[starts < len(times)])


def decimate_minmax(
    times: np.ndarray, values: np.ndarray, start: float, end: float, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points keeping each bucket's minimum and maximum at their own times.

    ``times`` must be sorted. The window [start, end] is cut into ``points // 2`` equal-time
    buckets; each non-empty bucket gives its min and max (NaN ignored) in time order, so spikes
    survive decimation. A bucket holding only NaN gives one NaN point (a gap). Inputs that already
    fit are returned as copies.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(times) <= points:
        return times.copy(), values.copy()
    buckets = max(1, points // 2)
    if not end > start:
        start, end = float(times[0]), float(times[-1]) + 1e-9
    starts = _bucket_starts(times, start, end, buckets)
    counts = np.diff(np.append(starts, len(times)))
    with np.errstate(invalid="ignore"):
        bucket_min = np.fmin.reduceat(values, starts)
        bucket_max = np.fmax.reduceat(values, starts)
    position = np.arange(len(times))
    never = len(times)
    # First position in each bucket where the bucket's extreme occurs.
    first_min = np.minimum.reduceat(
        np.where(values == np.repeat(bucket_min, counts), position, never), starts
    )
    first_max = np.minimum.reduceat(
        np.where(values == np.repeat(bucket_max, counts), position, never), starts
    )
    empty = first_min == never  # only NaN in the bucket
    first_min = np.where(empty, starts, first_min)
    first_max = np.where(empty, starts, first_max)
    earlier = np.minimum(first_min, first_max)
    later = np.maximum(first_min, first_max)
    # One point when min and max are the same sample (or the bucket is a gap).
    pairs = np.stack([earlier, np.where(later == earlier, -1, later)], axis=1).ravel()
    picked = pairs[pairs >= 0]
    return times[picked], values[picked]


def decimate_band(
    times: np.ndarray,
    center: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    start: float,
    end: float,
    points: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At most ``points`` buckets of a value with its band: bucket mean, lowest lower, highest
    upper (the band never narrows by decimation), at each bucket's first time."""
    times = np.asarray(times, dtype=np.float64)
    arrays = [np.asarray(a, dtype=np.float64) for a in (center, lower, upper)]
    if len(times) <= points:
        return times.copy(), *(a.copy() for a in arrays)
    if not end > start:
        start, end = float(times[0]), float(times[-1]) + 1e-9
    starts = _bucket_starts(times, start, end, max(1, points))
    finite = np.isfinite(arrays[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        sums = np.add.reduceat(np.where(finite, arrays[0], 0.0), starts)
        mean = sums / np.add.reduceat(finite.astype(np.int64), starts)
        low = np.fmin.reduceat(arrays[1], starts)
        high = np.fmax.reduceat(arrays[2], starts)
    return times[starts], mean, low, high


@dataclass(frozen=True, slots=True)
class Trace:
    """One decimated series; ``raw_points`` is how many samples the window held before."""

    name: str
    unit: str
    times: np.ndarray
    values: np.ndarray
    raw_points: int

    @property
    def last(self) -> float:
        finite = self.values[np.isfinite(self.values)]
        return float(finite[-1]) if len(finite) else math.nan


@dataclass(frozen=True, slots=True)
class Band:
    """A value with its lower and upper bound on the same times (prediction or forecast)."""

    times: np.ndarray
    center: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _empty_array() -> np.ndarray:
    return _frozen(np.empty(0))


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """What a trend screen draws from for one reactor and window: never mutated.

    Times are Unix seconds; ``origin`` is the batch's start (inoculation, or the first reading
    when no process state told it), for an elapsed-hours axis.
    """

    reactor: str
    window: str
    start: float
    end: float
    origin: float
    version: int
    points: int
    traces: Mapping[str, Trace] = field(default_factory=lambda: MappingProxyType({}))
    predicted: Band | None = None
    forecast: Band | None = None
    sample_times: np.ndarray = field(default_factory=_empty_array)
    sample_od600: np.ndarray = field(default_factory=_empty_array)

    def trace(self, name: str) -> Trace | None:
        return self.traces.get(name)

    @property
    def empty(self) -> bool:
        """Nothing at all to draw: no trace points, no prediction, no samples."""
        return (
            not any(len(trace.times) for trace in self.traces.values())
            and self.predicted is None
            and self.forecast is None
            and not len(self.sample_times)
        )


class ReactorHistory:
    """The buffers of one reactor (use through ``History``, which holds the lock)."""

    def __init__(self, reactor: str, hours: float) -> None:
        self.reactor = reactor
        seconds = hours * 3600.0
        self.channels: dict[str, RingBuffer] = {
            channel.name: RingBuffer(max(16, math.ceil(seconds / channel.period_s)))
            for channel in CHANNELS
        }
        windows = max(16, math.ceil(seconds / WINDOW_S))
        self.derived: dict[str, RingBuffer] = {name: RingBuffer(windows) for name in DERIVED_SERIES}
        self.predictions = RingBuffer(windows, columns=3)  # od600, lower, upper
        self.samples = RingBuffer(MAX_SAMPLES)
        self.forecast: Band | None = None
        self.inoculated_at = math.nan
        self.first_time = math.nan
        self.last_time = math.nan
        self.version = 0
        self.units: dict[str, str] = {channel.name: channel.unit for channel in CHANNELS}
        self.units.update(DERIVED_UNITS)

    def seen(self, timestamp: float) -> None:
        self.version += 1
        # "not <=" is also true while the bound is still NaN (nothing seen yet).
        if not timestamp >= self.first_time:
            self.first_time = timestamp
        if not timestamp <= self.last_time:
            self.last_time = timestamp

    @property
    def origin(self) -> float:
        return self.inoculated_at if math.isfinite(self.inoculated_at) else self.first_time


class History:
    """Bounded, thread-safe trend history of all reactors of a station."""

    def __init__(self, reactors: tuple[str, ...] | list[str] = (), *, hours: float = DEFAULT_HOURS):
        if hours <= 0:
            raise ValueError("history hours must be positive")
        self.hours = hours
        self._lock = threading.Lock()
        self._reactors: dict[str, ReactorHistory] = {}
        self.refused_reactors = 0
        for reactor in reactors:
            self._reactors[reactor] = ReactorHistory(reactor, hours)
        # Told every reactor's samples after each change (the predictor adapts to them).
        self._sample_listeners: list[Callable[[str, list[float], list[float]], None]] = []

    def add_sample_listener(
        self, listener: Callable[[str, list[float], list[float]], None]
    ) -> None:
        """Call ``listener(reactor, times, od600)`` with the reactor's samples after a change."""
        self._sample_listeners.append(listener)

    def _tell_samples(self, reactor: str) -> None:
        if not self._sample_listeners:
            return
        with self._lock:
            history = self._reactor(reactor)
            if history is None:
                return
            times, values = history.samples.between(-math.inf, math.inf)
        listed_times = [float(t) for t in times]
        listed_values = [float(v) for v in values.reshape(-1)]
        for listener in list(self._sample_listeners):
            listener(reactor, listed_times, listed_values)

    @property
    def reactors(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._reactors)

    def _reactor(self, reactor: str) -> ReactorHistory | None:
        history = self._reactors.get(reactor)
        if history is None:
            if len(self._reactors) >= MAX_REACTORS:
                self.refused_reactors += 1
                return None
            history = self._reactors[reactor] = ReactorHistory(reactor, self.hours)
        return history

    def add_reading(self, reading: Reading) -> None:
        """One reading of the bus (unknown channels are not kept; a bad value is a gap)."""
        if reading.channel not in CHANNELS_BY_NAME or not math.isfinite(reading.timestamp):
            return
        value = reading.value if reading.quality is not Quality.BAD else math.nan
        with self._lock:
            history = self._reactor(reading.reactor)
            if history is None:
                return
            history.channels[reading.channel].append(reading.timestamp, value)
            if reading.unit and history.units[reading.channel] != reading.unit:
                history.units[reading.channel] = reading.unit
            history.seen(reading.timestamp)

    def extend(self, reactor: str, name: str, times: np.ndarray, values: np.ndarray) -> None:
        """Many samples of one channel or derived series at once, e.g. a backfill from the
        time-series store when the app starts in the middle of a batch. KeyError for a name that
        is neither a channel nor a derived series."""
        with self._lock:
            history = self._reactor(reactor)
            if history is None or not len(times):
                return
            buffers = history.channels if name in history.channels else history.derived
            buffers[name].extend(times, values)
            history.seen(float(np.min(times)))
            history.seen(float(np.max(times)))

    def extend_predictions(
        self,
        reactor: str,
        times: np.ndarray,
        od600: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
    ) -> None:
        """Many stored OD600 nowcasts with their band at once (a backfill)."""
        with self._lock:
            history = self._reactor(reactor)
            if history is None or not len(times):
                return
            history.predictions.extend(times, np.column_stack([od600, lower, upper]))
            history.seen(float(np.min(times)))
            history.seen(float(np.max(times)))

    def add_state(self, state: ProcessState) -> None:
        """A closed 30 s window: its derived values (OUR, CER, RQ, …) and the inoculation time."""
        from bptwin.twin.shadow import derived_readings

        derived = {reading.channel: reading for reading in derived_readings(state)}
        with self._lock:
            history = self._reactor(state.reactor)
            if history is None:
                return
            for name, buffer in history.derived.items():
                reading = derived.get(name)
                if reading is not None:
                    buffer.append(state.end, reading.value)
            if math.isfinite(state.time_since_inoculation_h):
                history.inoculated_at = state.end - state.time_since_inoculation_h * 3600.0
            history.seen(state.end)

    def add_prediction(self, prediction: Prediction) -> None:
        """The window's OD600 nowcast with its band, and the latest forecast of the batch."""
        with self._lock:
            history = self._reactor(prediction.reactor)
            if history is None:
                return
            history.predictions.append(
                prediction.timestamp, prediction.od600, prediction.lower, prediction.upper
            )
            forecast = prediction.forecast
            if forecast is not None:
                history.forecast = Band(
                    *(
                        _frozen(np.array(a, dtype=np.float64))
                        for a in (forecast.times, forecast.od600, forecast.lower, forecast.upper)
                    )
                )
            history.seen(prediction.timestamp)

    def add_sample(self, reactor: str, timestamp: float, od600: float) -> None:
        """An offline OD600 sample (from the notebook), drawn as a point beside the prediction."""
        with self._lock:
            history = self._reactor(reactor)
            if history is None:
                return
            history.samples.append(timestamp, od600)
            history.version += 1
        self._tell_samples(reactor)

    def set_samples(self, reactor: str, times: Iterable[float], od600: Iterable[float]) -> None:
        """Replace the reactor's offline samples (e.g. reloaded from the notebook after an entry
        or when the batch changes); idempotent, unlike ``add_sample``."""
        times_array = np.asarray(list(times), dtype=np.float64)
        values = np.asarray(list(od600), dtype=np.float64)
        if times_array.shape != values.shape:
            raise ValueError("sample times and OD600 values differ in length")
        with self._lock:
            history = self._reactor(reactor)
            if history is None:
                return
            history.samples = RingBuffer(MAX_SAMPLES)
            keep = np.isfinite(times_array) & np.isfinite(values)
            history.samples.extend(times_array[keep], values[keep])
            history.version += 1
        self._tell_samples(reactor)

    def version(self, reactor: str) -> int:
        """Grows with every change of the reactor's history: redraw only when it moved.

        Lock-free on purpose: the UI thread asks on every redraw tick and must never wait for a
        window being copied; reading one int attribute is atomic, a stale answer only delays
        the redraw by a tick.
        """
        history = self._reactors.get(reactor)
        return -1 if history is None else history.version

    def window(
        self,
        reactor: str,
        window: str = "1 h",
        points: int = 300,
        names: Iterable[str] | None = None,
    ) -> HistoryWindow:
        """The decimated copy of one time window ending at the reactor's newest data.

        ``window`` is a name of ``TIME_WINDOWS``; ``points`` caps every trace (about twice the
        plot's width in cells); ``names`` limits the traces to those channels and derived series
        (None: all of them). Raises KeyError for an unknown window name.
        """
        wanted = None if names is None else frozenset(names)
        span = TIME_WINDOWS[window]
        points = max(4, int(points))
        with self._lock:
            history = self._reactors.get(reactor)
            if history is None or math.isnan(history.last_time):
                return HistoryWindow(reactor, window, math.nan, math.nan, math.nan, -1, points)
            end = history.last_time
            origin = history.origin
            start = end - span if span is not None else min(origin, history.first_time)
            raw = {
                name: buffer.between(start, end)
                for name, buffer in (*history.channels.items(), *history.derived.items())
                if wanted is None or name in wanted
            }
            predictions = history.predictions.between(start, end)
            samples = history.samples.between(-math.inf, math.inf)
            forecast = history.forecast
            units = dict(history.units)
            version = history.version
        # Decimation works on the copies, outside the lock: the writers never wait for it.
        traces = {}
        for name, (times, values) in raw.items():
            out_times, out_values = decimate_minmax(times, values[:, 0], start, end, points)
            traces[name] = Trace(
                name, units.get(name, ""), _frozen(out_times), _frozen(out_values), len(times)
            )
        predicted = None
        if len(predictions[0]):
            times, values = predictions
            predicted = Band(
                *(
                    _frozen(a)
                    for a in decimate_band(
                        times, values[:, 0], values[:, 1], values[:, 2], start, end, points // 2
                    )
                )
            )
        forecast_band = None
        if forecast is not None and len(forecast.times):
            # A fixed window shows the near future; the whole-batch view shows all of it.
            horizon = math.inf if span is None else end + span / 3
            keep = forecast.times <= horizon
            if keep.any():
                forecast_band = Band(
                    *(
                        _frozen(a)
                        for a in decimate_band(
                            forecast.times[keep],
                            forecast.center[keep],
                            forecast.lower[keep],
                            forecast.upper[keep],
                            float(forecast.times[keep][0]),
                            float(forecast.times[keep][-1]),
                            points // 2,
                        )
                    )
                )
        return HistoryWindow(
            reactor=reactor,
            window=window,
            start=start,
            end=end,
            origin=origin,
            version=version,
            points=points,
            traces=MappingProxyType(traces),
            predicted=predicted,
            forecast=forecast_band,
            sample_times=_frozen(samples[0].copy()),
            sample_od600=_frozen(samples[1][:, 0].astype(np.float64)),
        )
