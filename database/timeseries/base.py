"""The time-series store interface shared by the embedded store and InfluxDB.

Keys and conventions every implementation keeps:

* A point is identified by ``(reactor, channel, timestamp)`` with the timestamp rounded to the
  millisecond. The first write of a key wins: writing the same reading again changes nothing
  (idempotent replay, counted as a duplicate); a reading with the same key and another value or
  quality is refused, counted as a conflict and kept aside for inspection, never stored over
  the first (history is not rewritten).
* A reading whose value is NaN (or infinite) is stored with quality ``bad`` and no value; it
  reads back as NaN.
* Ranges are half-open: ``start <= timestamp < end`` (Unix seconds, UTC).
* Windows are aligned to the Unix epoch (``floor(ts / window_s) * window_s``); aggregates cover the
  finite values of a window, windows without a finite value are left out.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bptwin.database.reading import Reading

if TYPE_CHECKING:
    import numpy as np


class TimeSeriesError(RuntimeError):
    """A store could not do what was asked; the message says what and why."""


@dataclass(frozen=True, slots=True)
class WindowAggregate:
    """Aggregate of the finite values of one channel in one window."""

    window_start: float
    mean: float
    min: float
    max: float
    last: float
    count: int


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Health snapshot for the UI's status strip.

    ``pending``: readings accepted but not yet confirmed by the store's server.
    ``spooled``: of those, readings waiting on local disk because delivery failed (link down).
    ``written``: readings confirmed written since the store was opened.
    ``failed_writes``: delivery attempts that failed since the store was opened.
    ``refused``: readings the store or its server refused for good since it was opened (not a
    number, a line the server cannot parse, a field type another writer fixed first).
    ``conflicts``: readings refused since opening because a different value is stored under
    their key (first write wins: history is not rewritten).
    ``duplicates``: exact repeats of stored readings since opening (idempotent: nothing written).
    ``kept_aside``: refused and conflicting readings kept for inspection, in total (they survive
    restarts), in ``kept_aside_in`` (file and table).
    """

    name: str
    link_ok: bool
    pending: int = 0
    spooled: int = 0
    written: int = 0
    failed_writes: int = 0
    last_error: str | None = None
    refused: int = 0
    conflicts: int = 0
    duplicates: int = 0
    kept_aside: int = 0
    kept_aside_in: str = ""


class TimeSeriesStore(ABC):
    """Write readings in batches, read ranges and 30 s windows back, list channels."""

    name: str = "timeseries"

    @abstractmethod
    def write(self, readings: Sequence[Reading]) -> None:
        """Accept readings for storage without waiting on a network.

        Once this returns the readings are on local disk (store file or spool) and survive a
        process kill; delivery to a server happens in the background.
        """

    @abstractmethod
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is in the store; False if ``timeout`` ran out."""

    @abstractmethod
    def read_range(self, reactor: str, channel: str, start: float, end: float) -> list[Reading]:
        """Readings with ``start <= timestamp < end``, ascending by time."""

    @abstractmethod
    def read_windows(
        self, reactor: str, channel: str, start: float, end: float, window_s: float = 30.0
    ) -> list[WindowAggregate]:
        """Epoch-aligned window aggregates of the readings in ``[start, end)``, ascending."""

    def read_columns(
        self, reactor: str, channel: str, start: float, end: float
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """``read_range`` as two float arrays (times, values; a reading without a value is
        NaN) and the series' unit ("" when empty): for bulk reads (the export), where a
        Reading per point costs more than the query. Stores may read it more directly."""
        import numpy as np

        readings = self.read_range(reactor, channel, start, end)
        times = np.fromiter((r.timestamp for r in readings), dtype=float, count=len(readings))
        values = np.fromiter((r.value for r in readings), dtype=float, count=len(readings))
        return times, values, readings[-1].unit if readings else ""

    @abstractmethod
    def list_channels(self, reactor: str | None = None) -> list[tuple[str, str]]:
        """Sorted ``(reactor, channel)`` pairs that hold data, optionally for one reactor."""

    @abstractmethod
    def status(self) -> StoreStatus:
        """A cheap health snapshot (safe to call from the UI thread)."""

    @abstractmethod
    def close(self) -> None:
        """Stop background work and release files and connections; safe to call twice."""

    def __enter__(self) -> TimeSeriesStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timestamp_ms(timestamp: float) -> int:
    """The storage key of a timestamp: whole milliseconds since the epoch."""
    return round(timestamp * 1000.0)


def field_number(value: object) -> float:
    """The float a driver's value stands for, whatever numeric type it came in.

    Drivers hand over Python floats, ints and bools, and numpy scalars (the simulator's
    ``np.float64``, whose ``repr`` is ``np.float64(29.95)``, which the server refuses). Every
    value is written as a float field, so one series never mixes field types; anything that
    is not a real number raises ValueError naming its type.
    """
    if type(value) is float:  # the hot path: most readings are plain floats
        return value
    if isinstance(value, (str, bytes, complex)) or value is None:
        raise ValueError(f"value {value!r} ({type(value).__name__}) is not a real number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"value {value!r} ({type(value).__name__}) is not a real number") from exc


def check_range(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"range bounds must be finite, got start={start!r} end={end!r}")
    if end < start:
        raise ValueError(f"range end {end!r} is before start {start!r}")


def check_window(window_s: float) -> None:
    if not math.isfinite(window_s) or window_s <= 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if abs(window_s * 1000 - round(window_s * 1000)) > 1e-6 or window_s < 0.001:
        raise ValueError(f"window_s must be a whole number of milliseconds, got {window_s!r}")
