"""Sensor dropout per channel over a time span, read from the time-series store.

Dropout % = share of the readings a channel should have delivered (one per ``period_s`` of the
channel catalogue) that are missing or not finite. Counted from 10-minute window counts, which
every store computes server-side, so a 24 h batch costs a few hundred rows per channel rather
than 86 400 readings. Used by batch acceptance (criterion 2: < 1 % dropout, docs/process.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME
from bptwin.database.timeseries.base import TimeSeriesStore

COUNT_WINDOW_S = 600.0


def expected_readings(start: float, end: float, period_s: float) -> int:
    """Readings a channel sampling every ``period_s`` delivers in ``[start, end)``."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        return 0
    return max(1, math.floor((end - start) / period_s + 1e-9))


def channel_dropout_pct(
    store: TimeSeriesStore, reactor: str, channel: str, start: float, end: float
) -> float:
    """% of the expected readings of one channel missing in ``[start, end)`` (0–100)."""
    period = CHANNELS_BY_NAME[channel].period_s if channel in CHANNELS_BY_NAME else 1.0
    expected = expected_readings(start, end, period)
    if expected == 0:
        return 0.0
    windows = store.read_windows(reactor, channel, start, end, COUNT_WINDOW_S)
    present = sum(window.count for window in windows)
    return max(0.0, 100.0 * (1.0 - present / expected))


def sensor_dropout_pct(
    store: TimeSeriesStore,
    reactor: str,
    start: float,
    end: float,
    channels: Iterable[str] | None = None,
) -> dict[str, float]:
    """Channel -> dropout % over ``[start, end)`` (Unix seconds) for one reactor.

    ``channels`` None: every catalogue channel this reactor has ever reported to the store
    (a channel the lab does not have is not a dropout; one that reported before but is
    silent through this batch counts 100 %). Derived series such as predictions are left out.
    """
    if channels is None:
        reported = {name for owner, name in store.list_channels(reactor) if owner == reactor}
        chosen = [c.name for c in CHANNELS if c.name in reported]
    else:
        chosen = list(channels)
    return {name: channel_dropout_pct(store, reactor, name, start, end) for name in chosen}
