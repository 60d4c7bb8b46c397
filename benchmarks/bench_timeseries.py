"""Time-series store benchmarks: write throughput and 24 h read latency, embedded and InfluxDB 1.x.

InfluxDB is benchmarked against ``BPTWIN_BENCH_INFLUX_URL`` when set, else a throwaway influxd
started from /usr/bin/influxd (skipped with a note when neither is available).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from bptwin.database.channels import CHANNELS as CATALOGUE
from bptwin.database.reading import Reading
from bptwin.database.timeseries import EmbeddedStore, TimeSeriesStore

CHANNELS = [entry.name for entry in CATALOGUE]
T0 = 1_700_000_010.0
DAY_S = 24 * 3600
CHUNK_S = 3600  # generate and write one hour of all channels at a time


def _hour(start_s: int) -> list[Reading]:
    return [
        Reading(T0 + s, "R1", name, 7.0 + math.sin(s / 600.0 + k), "u")
        for s in range(start_s, start_s + CHUNK_S)
        for k, name in enumerate(CHANNELS)
    ]


def _timed_day_write(store: TimeSeriesStore, batch_size: int = 5000) -> tuple[int, float]:
    """Write 24 h x 19 channels in calls of ``batch_size``; only store time is counted."""
    total, elapsed = 0, 0.0
    for start_s in range(0, DAY_S, CHUNK_S):
        hour = _hour(start_s)
        begin = time.perf_counter()
        for i in range(0, len(hour), batch_size):
            store.write(hour[i : i + batch_size])
        elapsed += time.perf_counter() - begin
        total += len(hour)
    begin = time.perf_counter()
    if not store.flush(timeout=600):
        raise RuntimeError(f"{store.name} did not flush: {store.status()}")
    return total, elapsed + (time.perf_counter() - begin)


def _latency_ms(action: Callable[[], object], repeats: int = 5) -> float:
    timings = []
    for _ in range(repeats):
        begin = time.perf_counter()
        action()
        timings.append((time.perf_counter() - begin) * 1000.0)
    return statistics.median(timings)


def _read_results(store: TimeSeriesStore, label: str) -> list[dict]:
    windows = store.read_windows("R1", "do", T0, T0 + DAY_S)
    points = store.read_range("R1", "do", T0, T0 + DAY_S)
    assert len(windows) == DAY_S // 30 and len(points) == DAY_S, (len(windows), len(points))
    return [
        {
            "benchmark": f"{label} read_windows 24 h, 1 channel (2880 x 30 s)",
            "value": round(_latency_ms(lambda: store.read_windows("R1", "do", T0, T0 + DAY_S)), 1),
            "unit": "ms",
            "note": "median of 5",
        },
        {
            "benchmark": f"{label} read_range 24 h, 1 channel (86 400 points)",
            "value": round(_latency_ms(lambda: store.read_range("R1", "do", T0, T0 + DAY_S)), 1),
            "unit": "ms",
            "note": "median of 5",
        },
        {
            "benchmark": f"{label} read_windows last 5 min, 1 channel",
            "value": round(
                _latency_ms(lambda: store.read_windows("R1", "do", T0 + DAY_S - 300, T0 + DAY_S)),
                2,
            ),
            "unit": "ms",
            "note": "median of 5; the live-trend query",
        },
    ]


def bench_embedded() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "series.sqlite")
        try:
            total, seconds = _timed_day_write(store)
            single = [Reading(T0 + DAY_S + i, "R1", "ph", 7.0) for i in range(5000)]
            begin = time.perf_counter()
            for reading in single:
                store.write([reading])
            single_rate = len(single) / (time.perf_counter() - begin)
            results = [
                {
                    "benchmark": "embedded write 24 h x 19 channels, calls of 5000",
                    "value": round(total / seconds),
                    "unit": "readings/s",
                    "note": f"{total} readings in {seconds:.1f} s",
                },
                {
                    "benchmark": "embedded write, one reading per call",
                    "value": round(single_rate),
                    "unit": "readings/s",
                    "note": "one commit per call (WAL, synchronous=NORMAL)",
                },
            ]
            results += _read_results(store, "embedded")
            size_mb = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
            results.append(
                {
                    "benchmark": "embedded file size for 24 h x 19 channels",
                    "value": round(size_mb, 1),
                    "unit": "MB",
                    "note": "database + WAL",
                }
            )
            return results
        finally:
            store.close()


def _influx_url() -> Iterator[str | None]:
    configured = os.environ.get("BPTWIN_BENCH_INFLUX_URL")
    if configured:
        yield configured.rstrip("/")
        return
    try:
        from tests.fixtures.influx import InfluxServer

        server = InfluxServer()
        server.start()
    except Exception:  # not installed or will not start: reported as a skipped row
        yield None
        return
    try:
        yield server.url
    finally:
        server.cleanup()


def bench_influx() -> list[dict]:
    from bptwin.database.timeseries.influx import InfluxStore
    from bptwin.database.timeseries.influx_common import InfluxConfig
    from bptwin.database.timeseries.influx_v1 import InfluxV1Client, http_pool

    for url in _influx_url():
        if url is None:
            return [
                {
                    "benchmark": "influx 1.x write 24 h x 19 channels",
                    "value": float("nan"),
                    "unit": "readings/s",
                    "note": "skipped: no InfluxDB (set BPTWIN_BENCH_INFLUX_URL or install influxd)",
                }
            ]
        config = InfluxConfig(url=url, database=f"bptwin_bench_{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory() as folder:
            store = InfluxStore(config, Path(folder) / "spool.sqlite")
            try:
                total, seconds = _timed_day_write(store)
                version = store.ping()
                results = [
                    {
                        "benchmark": "influx 1.x write 24 h x 19 channels (spool + POST)",
                        "value": round(total / seconds),
                        "unit": "readings/s",
                        "note": f"{total} readings in {seconds:.1f} s to InfluxDB {version}",
                    }
                ]
                results += _read_results(store, "influx 1.x")
            finally:
                store.close()
                InfluxV1Client(config, http_pool(config)).drop_database()
        return results
    return []


if __name__ == "__main__":
    for row in bench_embedded() + bench_influx():
        print(f"{row['benchmark']:<62} {row['value']:>12} {row['unit']:<11} {row['note']}")
