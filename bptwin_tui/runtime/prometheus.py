"""Prometheus metrics and the health answer of a running station, served on a loopback port.

The station feeds a :class:`StationMetrics` (readings in, prediction latency, alarm counts) and
lets it read the bus, the stores, reading admission and other gauges at scrape time
(:meth:`watch_bus`, :meth:`watch_store`, :meth:`watch_admission`, :meth:`add_gauge`). The
exposition is prometheus_client's.
:class:`MetricsServer` answers

- ``GET /metrics``: the Prometheus text exposition format;
- ``GET /health``: 200 ``{"status": "ok"}``, 200 ``{"status": "degraded", "problems": [...]}``
  while a link is down but readings are kept locally, or 503 ``{"status": "unhealthy", ...}``
  when nothing arrives (runtime/health.py says which is which).

Only loopback addresses are served: the endpoint has no authentication.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bptwin.tui import __version__
from bptwin.tui.runtime.health import Health
from bptwin.tui.settings_ops import is_loopback

if TYPE_CHECKING:
    from bptwin.database.admission import Admission
    from bptwin.database.bus import Bus
    from bptwin.database.reading import Reading
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.database.timeseries.base import StoreStatus

log = logging.getLogger(__name__)

# No "<name>_created" series beside every counter: nothing here restarts counters by hand.
prometheus_client.disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BUS_COUNTERS = ("published", "received", "malformed", "dropped", "reconnects")


class StationMetrics:
    """The metrics of one station in a registry of their own; cheap to update from any thread."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self.started = clock()
        self._lock = threading.Lock()
        self._last_reading: dict[tuple[str, str], float] = {}  # wall time it arrived
        self._alarms_by_state: dict[str, int] = {}
        self._alarms_by_priority: dict[str, int] = {}
        self._spool_depth: dict[str, int] = {}
        self._buses: list[Bus] = []
        self._stores: list[TimeSeriesStore] = []
        self._admissions: list[Admission] = []
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._health: Callable[[], Health] | None = None
        registry = self.registry
        Info("bptwin", "bptwin version", registry=registry).info({"version": __version__})
        Gauge("bptwin_start_time_seconds", "Unix time the station started", registry=registry).set(
            self.started
        )
        self._readings = Counter(
            "bptwin_readings",
            "Readings received, per reactor and channel",
            ("reactor", "channel"),
            registry=registry,
        )
        self._latency = Histogram(
            "bptwin_prediction_latency_seconds",
            "Time from a closed 30 s window to its OD600 prediction",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self._prediction_errors = Counter(
            "bptwin_prediction_errors", "Predictions that failed", registry=registry
        )
        registry.register(_ScrapeTimeValues(self))

    # -- updates (from the station's threads) --

    def reading_received(self, reading: Reading) -> None:
        self._readings.labels(reading.reactor, reading.channel).inc()
        now = self._clock()
        with self._lock:
            self._last_reading[(reading.reactor, reading.channel)] = now

    def observe_prediction_latency(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self._latency.observe(seconds)

    def prediction_failed(self) -> None:
        self._prediction_errors.inc()

    def set_alarm_counts(
        self, by_state: Mapping[str, int], by_priority: Mapping[str, int] | None = None
    ) -> None:
        """Current alarms per state, and annunciated ones per priority (twin.alarms.AlarmCounts)."""
        with self._lock:
            self._alarms_by_state = dict(by_state)
            self._alarms_by_priority = dict(by_priority or {})

    def set_spool_depth(self, spool: str, depth: int) -> None:
        """Items waiting in a spool that is not a store's (stores report their own)."""
        with self._lock:
            self._spool_depth[spool] = depth

    def watch_bus(self, bus: Bus) -> None:
        """Read ``bus.connected`` and ``bus.stats`` at every scrape."""
        with self._lock:
            self._buses.append(bus)

    def watch_store(self, store: TimeSeriesStore) -> None:
        """Read ``store.status()`` at every scrape."""
        with self._lock:
            self._stores.append(store)

    def watch_admission(self, admission: Admission) -> None:
        """Read the admission counters and clock faults (database/admission.py) at every scrape."""
        with self._lock:
            self._admissions.append(admission)

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Any other number read at scrape time, e.g. the notifier's queue."""
        with self._lock:
            self._gauges[name] = (help_text, read)

    def set_health(self, health: Callable[[], Health]) -> None:
        """Where ``bptwin_healthy`` and ``/health`` come from (the station's health view)."""
        self._health = health

    # -- reading out --

    def newest_reading_at(self) -> float | None:
        """Wall time the newest reading arrived, None before the first."""
        with self._lock:
            return max(self._last_reading.values(), default=None)

    def health(self) -> Health:
        if self._health is None:
            return Health("ok", ())
        return self._health()

    def render(self) -> bytes:
        """All metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _ScrapeTimeValues:
    """The values read when Prometheus scrapes: ages, alarm counts, bus, stores, admission,
    gauges."""

    def __init__(self, metrics: StationMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # families vary with what is watched; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        now = metrics._clock()
        with metrics._lock:
            last = dict(metrics._last_reading)
            by_state = dict(metrics._alarms_by_state)
            by_priority = dict(metrics._alarms_by_priority)
            spools = dict(metrics._spool_depth)
            buses, stores = list(metrics._buses), list(metrics._stores)
            admissions = list(metrics._admissions)
            gauges = dict(metrics._gauges)
        healthy = GaugeMetricFamily("bptwin_healthy", "1 when /health answers ok")
        healthy.add_metric([], float(metrics.health().status == "ok"))
        yield healthy
        age = GaugeMetricFamily(
            "bptwin_last_reading_age_seconds",
            "Seconds since the last reading of a channel arrived",
            labels=("reactor", "channel"),
        )
        for (reactor, channel), at in sorted(last.items()):
            age.add_metric([reactor, channel], max(0.0, now - at))
        yield age
        yield _labelled_gauge("bptwin_alarms", "Alarms per ISA-18.2 state", "state", by_state)
        yield _labelled_gauge(
            "bptwin_alarms_annunciated",
            "Annunciated alarms (active or unacknowledged) per priority",
            "priority",
            by_priority,
        )
        yield from _bus_families(buses)
        yield from _store_families(stores, spools)
        yield from _admission_families(admissions)
        for name, (help_text, read) in sorted(gauges.items()):
            try:
                value = float(read())
            except Exception as exc:  # a broken probe must not break the scrape
                log.warning("metric %s unavailable: %s", name, exc)
                continue
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge


def _labelled_gauge(
    name: str, help_text: str, label: str, values: Mapping[str, int]
) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, help_text, labels=(label,))
    for key, value in sorted(values.items()):
        gauge.add_metric([key], float(value))
    return gauge


def _bus_families(buses: list[Bus]) -> Iterator[Metric]:
    connected = GaugeMetricFamily(
        "bptwin_bus_connected", "1 when the bus is connected", labels=("bus",)
    )
    pending = GaugeMetricFamily("bptwin_bus_pending", "Bus messages pending", labels=("bus",))
    counters = {
        field: CounterMetricFamily(f"bptwin_bus_{field}", f"Bus messages {field}", labels=("bus",))
        for field in BUS_COUNTERS
    }
    for bus in buses:
        label = [type(bus).__name__]
        connected.add_metric(label, float(bus.connected))
        stats = bus.stats
        pending.add_metric(label, float(stats.pending))
        for field, family in counters.items():
            family.add_metric(label, float(getattr(stats, field)))
    yield connected
    yield pending
    yield from counters.values()


def _store_families(stores: list[TimeSeriesStore], spools: dict[str, int]) -> Iterator[Metric]:
    def family(name: str, help_text: str, kind: str = "gauge") -> Any:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        return cls(name, help_text, labels=("store",))

    link = family("bptwin_store_link_ok", "1 when the store's server answers")
    pending = family("bptwin_store_pending", "Readings not yet confirmed written")
    spooled = family("bptwin_spool_depth", "Readings waiting in the local spool")
    written = family("bptwin_store_written", "Readings written", "counter")
    failed = family("bptwin_store_failed_writes", "Failed write attempts", "counter")
    refused = family(
        "bptwin_store_refused",
        "Readings the store or its server refused for good (kept aside)",
        "counter",
    )
    conflicts = family(
        "bptwin_store_conflicts",
        "Readings refused: another value is stored under their key",
        "counter",
    )
    duplicates = family(
        "bptwin_store_duplicates", "Exact repeats of stored readings (idempotent)", "counter"
    )
    kept_aside = family(
        "bptwin_store_kept_aside", "Refused and conflicting readings kept for inspection"
    )
    for store in stores:
        status = store_status(store)
        if status is None:
            continue
        label = [status.name]
        link.add_metric(label, float(status.link_ok))
        pending.add_metric(label, float(status.pending))
        spooled.add_metric(label, float(status.spooled))
        written.add_metric(label, float(status.written))
        failed.add_metric(label, float(status.failed_writes))
        refused.add_metric(label, float(status.refused))
        conflicts.add_metric(label, float(status.conflicts))
        duplicates.add_metric(label, float(status.duplicates))
        kept_aside.add_metric(label, float(status.kept_aside))
    for name, depth in sorted(spools.items()):
        spooled.add_metric([name], float(depth))
    yield from (link, pending, spooled, written, failed)
    yield from (refused, conflicts, duplicates, kept_aside)


def _admission_families(admissions: list[Admission]) -> Iterator[Metric]:
    """Readings admitted and refused at the station's door, and clock faults now."""
    if not admissions:
        return
    admitted = CounterMetricFamily("bptwin_readings_admitted", "Readings admitted into the station")
    discarded = CounterMetricFamily(
        "bptwin_readings_discarded",
        "Readings refused at admission, per origin and reason (clock_ahead is a clock fault)",
        labels=("origin", "reason"),
    )
    faults = GaugeMetricFamily(
        "bptwin_clock_fault",
        "Readings stamped ahead of the station clock now (1 when it persists)",
        labels=("origin", "reactor"),
    )
    total_admitted = 0
    by_reason: dict[tuple[str, str], int] = {}
    now: dict[tuple[str, str], bool] = {}
    for admission in admissions:
        stats = admission.stats()
        total_admitted += stats.admitted
        for key, count in stats.discarded.items():
            by_reason[key] = by_reason.get(key, 0) + count
        for fault in admission.clock_faults():
            key = (fault.origin, fault.reactor)
            now[key] = now.get(key, False) or fault.persistent
    admitted.add_metric([], float(total_admitted))
    for (origin, reason), count in sorted(by_reason.items()):
        discarded.add_metric([origin, reason], float(count))
    for (origin, reactor), persistent in sorted(now.items()):
        faults.add_metric([origin, reactor], float(persistent))
    yield from (admitted, discarded, faults)


def store_status(store: TimeSeriesStore) -> StoreStatus | None:
    try:
        return store.status()
    except Exception as exc:  # a closed store, say; report it as unavailable
        log.warning("store status unavailable: %s", exc)
        return None


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP on a loopback address, in a daemon thread."""

    def __init__(self, metrics: StationMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"metrics.host: {host!r} is not a loopback address")
        self.metrics = metrics
        try:
            self._server = ThreadingHTTPServer((host, port), _handler_for(metrics))
        except OSError as exc:
            raise OSError(f"metrics.port: cannot listen on {host}:{port}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="metrics-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def _handler_for(metrics: StationMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bptwin-metrics"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE, metrics.render())
            elif path == "/health":
                health = metrics.health()
                self._answer(health.http_status, "application/json", health.to_json())
            else:
                self._answer(404, "text/plain", b"try /metrics or /health\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics %s", format % args)

    return Handler


def start_metrics_server(
    metrics: StationMetrics, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    return MetricsServer(metrics, host, port).start()
