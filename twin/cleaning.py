"""Live data cleaning (docs/process.md, "Alarm defaults").

* A physically impossible value (outside the channel catalogue's range, e.g. pH < 2, DO > 150 %)
  becomes missing and yields a :class:`CleaningEvent` that the alarm engine can raise.
* Gaps shorter than :data:`SHORT_GAP_S` are bridged; longer gaps are marked. Inside a 30 s window
  the mean is taken over the linearly interpolated 1 Hz trajectory (see ``twin/windows.py``); across
  whole missing windows the feature pipeline holds the last value while the gap is short (a live
  system cannot interpolate towards a value it has not received yet) and flags the gap.

The same vectorised rules are used by the batch path, so training and serving see the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bptwin.database.channels import CHANNELS_BY_NAME, is_physical
from bptwin.database.reading import Quality, Reading

SHORT_GAP_S = 300.0

REASON_BELOW_PHYSICAL = "below_physical_range"
REASON_ABOVE_PHYSICAL = "above_physical_range"


@dataclass(frozen=True, slots=True)
class CleaningEvent:
    """A value removed by cleaning; the alarm engine turns these into sensor alarms."""

    timestamp: float
    reactor: str
    channel: str
    value: float
    reason: str

    @property
    def message(self) -> str:
        entry = CHANNELS_BY_NAME.get(self.channel)
        bounds = f" [{entry.physical_min}, {entry.physical_max}] {entry.unit}" if entry else ""
        return f"{self.channel}: impossible value {self.value:g} removed ({self.reason}{bounds})"


def clean_reading(reading: Reading) -> tuple[Reading, CleaningEvent | None]:
    """The reading with an impossible value replaced by NaN (quality BAD), plus the event."""
    value = reading.value
    if math.isnan(value) or is_physical(reading.channel, value):
        return reading, None
    entry = CHANNELS_BY_NAME[reading.channel]
    reason = REASON_BELOW_PHYSICAL if value < entry.physical_min else REASON_ABOVE_PHYSICAL
    event = CleaningEvent(reading.timestamp, reading.reactor, reading.channel, value, reason)
    return reading.with_value(math.nan, Quality.BAD), event


def physical_mask(channel_name: str, values: ArrayLike) -> np.ndarray:
    """Vectorised :func:`bptwin.database.channels.is_physical`: True where the value can be real.

    NaN counts as physical here (it is missing, not impossible).
    """
    array = np.asarray(values, dtype=float)
    entry = CHANNELS_BY_NAME.get(channel_name)
    if entry is None:
        return np.ones(array.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        inside = (array >= entry.physical_min) & (array <= entry.physical_max)
    # numpy's stubs type a ufunc on an array as Any (np.isnan here). This module's code is
    # hashed into the shipped model's pipeline fingerprint, so the fix is this comment, not
    # an annotated local.
    return inside | np.isnan(array)  # type: ignore[no-any-return]


def clean_array(channel_name: str, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Values with impossible entries set to NaN, and the boolean mask of removed entries."""
    array = np.array(values, dtype=float)
    removed = ~physical_mask(channel_name, array)
    array[removed] = np.nan
    return array, removed


def interpolate_short_gaps(
    times_s: ArrayLike, values: ArrayLike, max_gap_s: float = SHORT_GAP_S
) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of interior NaN runs shorter than ``max_gap_s``.

    For offline use (export, labelling). Returns (values, long_gap_mask): points inside gaps of
    ``max_gap_s`` or more stay NaN and are flagged; leading/trailing NaNs are never invented.
    """
    t = np.asarray(times_s, dtype=float)
    v = np.array(values, dtype=float)
    if t.shape != v.shape:
        raise ValueError(f"times {t.shape} and values {v.shape} differ in shape")
    valid = np.isfinite(v)
    long_gap = np.zeros(v.shape, dtype=bool)
    if valid.sum() < 2:
        long_gap[~valid] = True
        return v, long_gap
    valid_idx = np.flatnonzero(valid)
    # For each missing point, the valid neighbours on either side decide the gap length.
    missing_idx = np.flatnonzero(~valid)
    right_pos = np.searchsorted(valid_idx, missing_idx)
    interior = (right_pos > 0) & (right_pos < valid_idx.size)
    left = valid_idx[np.clip(right_pos - 1, 0, valid_idx.size - 1)]
    right = valid_idx[np.clip(right_pos, 0, valid_idx.size - 1)]
    gap_length = t[right] - t[left]
    fill = interior & (gap_length < max_gap_s)
    if fill.any():
        v[missing_idx[fill]] = np.interp(t[missing_idx[fill]], t[valid_idx], v[valid_idx])
    long_gap[missing_idx[~fill]] = True
    return v, long_gap


def gap_runs(times_s: ArrayLike, values: ArrayLike) -> list[tuple[float, float]]:
    """(start, end) of every run of NaN (end = time of the next valid value, or last time)."""
    t = np.asarray(times_s, dtype=float)
    missing = ~np.isfinite(np.asarray(values, dtype=float))
    runs: list[tuple[float, float]] = []
    if not missing.any():
        return runs
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    for start, end in zip(starts, ends, strict=True):
        end_time = t[end] if end < t.size else t[-1]
        runs.append((float(t[start]), float(end_time)))
    return runs
