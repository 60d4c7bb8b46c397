"""Glycerol depletion found in a stored batch: the live DepletionDetector run over the store's
30 s DO windows and the CER the shadow stored per window.

Used by batch acceptance (criterion 1, "depletion reached") so the evidence comes from the data,
not only from what was typed into the closure record. Without a stored CER (the shadow did not
run) the detector works on the DO alone and asks for twice the confirmation time, as live.
"""

from __future__ import annotations

import math

from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.twin.features import DEPLETION_CONFIRMED, DepletionDetector, FeatureConfig
from bptwin.twin.windows import WINDOW_S

CER_SERIES = "cer"  # twin.shadow.DERIVED_CHANNELS: stored at each window's end


def detect_depletion(
    store: TimeSeriesStore,
    reactor: str,
    start: float,
    end: float,
    config: FeatureConfig | None = None,
) -> float | None:
    """Seconds after ``start`` of the confirmed DO spike in ``[start, end)``, or None."""
    detector = DepletionDetector(config or FeatureConfig(), WINDOW_S)
    cer_at = {
        round(reading.timestamp): reading.value
        for reading in store.read_range(reactor, CER_SERIES, start, end + WINDOW_S)
    }
    for window in store.read_windows(reactor, "do", start, end, WINDOW_S):
        window_end = window.window_start + WINDOW_S
        cer = cer_at.get(round(window_end), math.nan)
        state, _blip = detector.update(window_end, window.mean, cer)
        if state == DEPLETION_CONFIRMED:
            return max(0.0, detector.onset - start) if math.isfinite(detector.onset) else None
    return None
