"""HTTP API latency for a 24 h channel range (86 400 readings at 1 Hz), JSON and CSV.

A real uvicorn server (bptwin.tui.api.server.ApiServer) on a free loopback port, a SQLite
notebook holding the token, and the embedded store (InfluxDB 1.x too when ``influxd`` is
installed or ``BPTWIN_BENCH_INFLUX_URL`` is set). Each row is the time from sending the request
to having the whole body, measured with httpx on the same machine.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bptwin.database.reading import Reading
from bptwin.database.timeseries import EmbeddedStore, TimeSeriesStore

T0 = 1_795_000_000.0  # 2026-11-18 (whole seconds)
DAY_S = 24 * 3600
WHOLE_DAY_REPEATS = 15
PAGE_REPEATS = 100
PAGED_WALKS = 5


def _day(store: TimeSeriesStore) -> None:
    hour = 3600
    for start in range(0, DAY_S, hour):
        store.write(
            [
                Reading(T0 + s, "R1", "do", 40.0 + 10 * math.sin(s / 900.0), "%sat")
                for s in range(start, start + hour)
            ]
        )
    if not store.flush(timeout=600):
        raise RuntimeError(f"{store.name} did not flush: {store.status()}")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _percentiles(timings_ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(timings_ms, n=100, method="inclusive")
    return statistics.median(timings_ms), cuts[98]


@contextmanager
def _served(store: TimeSeriesStore, folder: Path) -> Iterator[tuple[str, str]]:
    """(base URL, token) of an API over ``store`` with a fresh SQLite notebook."""
    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import make_engine
    from bptwin.eln.api_tokens import ApiTokenService
    from bptwin.eln.services import NotebookService
    from bptwin.tui.api.config import ApiSettings
    from bptwin.tui.api.context import ApiContext
    from bptwin.tui.api.server import ApiServer

    url = f"sqlite:///{folder / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService(make_engine(url))
    notebook.operators.create_operator("setup", "sam", "supervisor", "4321")
    token = ApiTokenService(notebook.unit).create_token("sam", "4321", "benchmark").secret
    context = ApiContext(
        notebook=notebook,
        store=store,
        reactors=("R1",),
        model_registries=(),
        limits=ApiSettings(max_limit=DAY_S),
    )
    server = ApiServer(context, "127.0.0.1", 0).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield server.url, token
    finally:
        server.stop()
        notebook.engine.dispose()


def _floor(store: TimeSeriesStore, label: str) -> dict:
    """The store's own read of the same 24 h, without HTTP: what the API cannot beat."""
    timings = []
    for _ in range(5):
        begin = time.perf_counter()
        store.read_range("R1", "do", T0, T0 + DAY_S)
        timings.append((time.perf_counter() - begin) * 1000.0)
    return {
        "benchmark": f"api {label} floor: store read_range of the 24 h (no HTTP)",
        "value": round(statistics.median(timings), 1),
        "unit": "ms",
        "note": "median of 5",
    }


def _measure(base: str, token: str, label: str) -> list[dict]:
    import httpx

    path = f"/v1/reactors/R1/channels/do/readings?start={_iso(T0)}&end={_iso(T0 + DAY_S)}"
    rows: list[dict] = []
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as client:

        def timed(query: str) -> tuple[float, httpx.Response]:
            begin = time.perf_counter()
            response = client.get(path + query)
            elapsed = (time.perf_counter() - begin) * 1000.0
            response.raise_for_status()
            return elapsed, response

        for fmt in ("json", "csv"):
            timings = []
            for _ in range(WHOLE_DAY_REPEATS):
                elapsed, response = timed(f"&limit={DAY_S}&format={fmt}")
                timings.append(elapsed)
            size_mb = len(response.content) / 1e6
            count = response.json()["count"] if fmt == "json" else response.text.count("\n") - 1
            assert count == DAY_S, (fmt, count)
            p50, p99 = _percentiles(timings)
            rows += [
                {
                    "benchmark": f"api {label} 24 h range, one page, {fmt.upper()} p50",
                    "value": round(p50, 1),
                    "unit": "ms",
                    "note": f"86 400 readings, {size_mb:.1f} MB, {WHOLE_DAY_REPEATS} requests",
                },
                {
                    "benchmark": f"api {label} 24 h range, one page, {fmt.upper()} p99",
                    "value": round(p99, 1),
                    "unit": "ms",
                    "note": f"{WHOLE_DAY_REPEATS} requests",
                },
            ]
            walks = []
            for _ in range(PAGED_WALKS):
                begin, cursor, pages = time.perf_counter(), None, 0
                while True:
                    extra = f"&cursor={cursor}" if cursor else ""
                    _, response = timed(f"&limit=10000&format={fmt}{extra}")
                    pages += 1
                    cursor = response.headers.get("x-next-cursor")
                    if cursor is None:
                        break
                walks.append((time.perf_counter() - begin) * 1000.0)
            rows.append(
                {
                    "benchmark": f"api {label} 24 h range in pages of 10 000, {fmt.upper()}",
                    "value": round(statistics.median(walks), 1),
                    "unit": "ms",
                    "note": f"median of {PAGED_WALKS} walks of {pages} pages",
                }
            )
            pages_ms = [timed(f"&limit=1000&format={fmt}")[0] for _ in range(PAGE_REPEATS)]
            p50, p99 = _percentiles(pages_ms)
            rows.append(
                {
                    "benchmark": f"api {label} page of 1000 readings, {fmt.upper()} p50 / p99",
                    "value": round(p50, 2),
                    "unit": "ms",
                    "note": f"p99 {p99:.2f} ms over {PAGE_REPEATS} requests",
                }
            )
    return rows


def bench_api_embedded() -> list[dict]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        store = EmbeddedStore(folder / "series.sqlite")
        try:
            _day(store)
            floor = _floor(store, "embedded")
            with _served(store, folder) as (base, token):
                return [floor, *_measure(base, token, "embedded")]
        finally:
            store.close()


def bench_api_influx() -> list[dict]:
    from benchmarks.bench_timeseries import _influx_url
    from bptwin.database.timeseries.influx import InfluxStore
    from bptwin.database.timeseries.influx_common import InfluxConfig
    from bptwin.database.timeseries.influx_v1 import InfluxV1Client, http_pool

    for url in _influx_url():
        if url is None:
            return [
                {
                    "benchmark": "api influx 1.x 24 h range",
                    "value": float("nan"),
                    "unit": "ms",
                    "note": "skipped: no InfluxDB (set BPTWIN_BENCH_INFLUX_URL or install influxd)",
                }
            ]
        config = InfluxConfig(url=url, database=f"bptwin_bench_{uuid.uuid4().hex[:8]}")
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            store = InfluxStore(config, folder / "spool.sqlite")
            try:
                _day(store)
                floor = _floor(store, "influx 1.x")
                with _served(store, folder) as (base, token):
                    return [floor, *_measure(base, token, "influx 1.x")]
            finally:
                store.close()
                InfluxV1Client(config, http_pool(config)).drop_database()
    return []


if __name__ == "__main__":
    for row in bench_api_embedded() + bench_api_influx():
        print(f"{row['benchmark']:<58} {row['value']:>10} {row['unit']:<4} {row['note']}")
