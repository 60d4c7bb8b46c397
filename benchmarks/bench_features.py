"""Feature pipeline speed on a simulated 24 h batch: streaming throughput and per-window latency.

Streaming: every reading of the batch through ``StreamingFeatures.add`` (cleaning, 30 s
windows, features), as the shadow worker does. Latency: ``FeaturePipeline.update`` per closed
window (p50/p99), the part that runs once every 30 s per reactor.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Reading
from bptwin.twin.features import FeaturePipeline, StreamingFeatures
from bptwin.twin.simulator import simulate_batch
from bptwin.twin.windows import windows_from_frame

START = 1_790_000_000.0


def _readings(frame) -> list[Reading]:
    times = frame["timestamp"].to_numpy()
    columns = [(c.name, c.unit, frame[c.name].to_numpy()) for c in CHANNELS if c.name in frame]
    out = []
    for row, at in enumerate(times):
        for name, unit, values in columns:
            value = float(values[row])
            if value == value:  # the vessel weight is NaN between its 10 s readings
                out.append(Reading(float(at), "R1", name, value, unit))
    return out


def bench_feature_pipeline() -> list[dict]:
    batch = simulate_batch(seed=1, hours=24.0, start_timestamp=START)
    readings = _readings(batch.sensors)
    streaming = StreamingFeatures(reactor="R1")
    started = time.perf_counter()
    states = 0
    for reading in readings:
        states += len(streaming.add(reading))
    states += len(streaming.flush())
    stream_s = time.perf_counter() - started

    windows = windows_from_frame(batch.sensors, reactor="R1")
    pipeline = FeaturePipeline()
    latencies = np.empty(len(windows))
    for index, window in enumerate(windows):
        begin = time.perf_counter_ns()
        pipeline.update(window)
        latencies[index] = time.perf_counter_ns() - begin
    p50, p99 = np.percentile(latencies / 1e6, [50, 99])
    return [
        {
            "benchmark": "features: streaming 24 h batch (readings -> states)",
            "value": states / stream_s,
            "unit": "windows/s",
            "note": f"{len(readings) / stream_s:,.0f} readings/s; {states} windows",
        },
        {
            "benchmark": "features: FeaturePipeline.update per window p50",
            "value": p50,
            "unit": "ms",
            "note": f"{len(windows)} windows",
        },
        {
            "benchmark": "features: FeaturePipeline.update per window p99",
            "value": p99,
            "unit": "ms",
            "note": "goal (with predict) well under 10 ms",
        },
    ]
