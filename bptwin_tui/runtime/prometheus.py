"""Health and Prometheus metrics of a running station, served on a loopback port.

The station feeds a :class:`MetricsRegistry` (readings in, prediction latency, alarm counts)
and lets it read the bus and store state at scrape time (:meth:`MetricsRegistry.watch_bus`,
:meth:`MetricsRegistry.watch_store`). :class:`MetricsServer` answers

- ``GET /metrics``: the Prometheus text exposition format (version 0.0.4);
- ``GET /health``: 200 ``{"status": "ok"}`` or 503 ``{"status": "unhealthy", "problems": [...]}``
  when the bus is disconnected, a store's link is down or no reading came for
  ``stale_after_s``.

Only loopback addresses are served: the endpoint has no authentication.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from bptwin.tui import __version__
from bptwin.tui.settings_ops import is_loopback

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.database.reading import Reading
    from bptwin.database.timeseries import TimeSeriesStore

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    problems: tuple[str, ...]

    def to_json(self) -> bytes:
        status = "ok" if self.healthy else "unhealthy"
        return json.dumps({"status": status, "problems": list(self.problems)}).encode()


class MetricsRegistry:
    """Thread-safe counters and gauges of one station; cheap to update from any thread."""

    def __init__(
        self,
        *,
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._readings: dict[tuple[str, str], int] = {}
        self._last_reading: dict[tuple[str, str], float] = {}  # wall time it arrived
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum = 0.0
        self._prediction_errors = 0
        self._alarms_by_state: dict[str, int] = {}
        self._alarms_by_priority: dict[str, int] = {}
        self._spool_depth: dict[str, int] = {}
        self._buses: list[Bus] = []
        self._stores: list[TimeSeriesStore] = []
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    # -- updates (from the station's threads) --

    def reading_received(self, reading: Reading) -> None:
        key = (reading.reactor, reading.channel)
        now = self._clock()
        with self._lock:
            self._readings[key] = self._readings.get(key, 0) + 1
            self._last_reading[key] = now

    def observe_prediction_latency(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        with self._lock:
            self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            self._latency_sum += seconds

    def prediction_failed(self) -> None:
        with self._lock:
            self._prediction_errors += 1

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

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Any other number read at scrape time, e.g. the notifier's queue."""
        with self._lock:
            self._gauges[name] = (help_text, read)

    # -- reading out --

    def health(self) -> Health:
        problems: list[str] = []
        now = self._clock()
        with self._lock:
            buses, stores = list(self._buses), list(self._stores)
            newest = max(self._last_reading.values(), default=None)
            started = self._started
        for bus in buses:
            if not bus.connected:
                problems.append(f"bus {type(bus).__name__} is not connected")
        for store in stores:
            status = _status(store)
            if status is None:
                problems.append(f"store {store.name}: status unavailable")
            elif not status.link_ok:
                error = f" ({status.last_error})" if status.last_error else ""
                problems.append(
                    f"store {status.name} link down{error}; {status.spooled} readings spooled"
                )
        since = newest if newest is not None else started
        if now - since > self.stale_after_s:
            what = "no reading since start" if newest is None else "no reading"
            problems.append(f"{what} for {now - since:.0f} s (limit {self.stale_after_s:g} s)")
        return Health(not problems, tuple(problems))

    def render(self) -> str:
        """All metrics in the Prometheus text format."""
        now = self._clock()
        with self._lock:
            readings = dict(self._readings)
            last = dict(self._last_reading)
            latency_counts = list(self._latency_counts)
            latency_sum = self._latency_sum
            prediction_errors = self._prediction_errors
            by_state = dict(self._alarms_by_state)
            by_priority = dict(self._alarms_by_priority)
            spools = dict(self._spool_depth)
            buses, stores = list(self._buses), list(self._stores)
            gauges = dict(self._gauges)
        out = _Exposition()
        out.metric("bptwin_info", "gauge", "bptwin version", [({"version": __version__}, 1)])
        out.metric("bptwin_start_time_seconds", "gauge", "Unix time the station started",
                   [({}, self._started)])  # fmt: skip
        health = self.health()
        out.metric("bptwin_healthy", "gauge", "1 when /health answers 200",
                   [({}, int(health.healthy))])  # fmt: skip
        out.metric(
            "bptwin_readings_total",
            "counter",
            "Readings received from the bus, per reactor and channel",
            [({"reactor": r, "channel": c}, n) for (r, c), n in sorted(readings.items())],
        )
        out.metric(
            "bptwin_last_reading_age_seconds",
            "gauge",
            "Seconds since the last reading of a channel arrived",
            [
                ({"reactor": r, "channel": c}, max(0.0, now - t))
                for (r, c), t in sorted(last.items())
            ],
        )
        cumulative, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS_S, math.inf), latency_counts, strict=True):
            cumulative += count
            buckets.append(({"le": _number(bound)}, cumulative))
        out.histogram(
            "bptwin_prediction_latency_seconds",
            "Time from a closed 30 s window to its OD600 prediction",
            buckets,
            latency_sum,
            cumulative,
        )
        out.metric("bptwin_prediction_errors_total", "counter", "Predictions that failed",
                   [({}, prediction_errors)])  # fmt: skip
        out.metric(
            "bptwin_alarms",
            "gauge",
            "Alarms per ISA-18.2 state",
            [({"state": s}, n) for s, n in sorted(by_state.items())],
        )
        out.metric(
            "bptwin_alarms_annunciated",
            "gauge",
            "Annunciated alarms (active or unacknowledged) per priority",
            [({"priority": p}, n) for p, n in sorted(by_priority.items())],
        )
        self._render_bus(out, buses)
        self._render_stores(out, stores, spools)
        for name, (help_text, read) in sorted(gauges.items()):
            try:
                value = float(read())
            except Exception as exc:  # a broken probe must not break the scrape
                log.warning("metric %s unavailable: %s", name, exc)
                continue
            out.metric(name, "gauge", help_text, [({}, value)])
        return out.text()

    @staticmethod
    def _render_bus(out: _Exposition, buses: list[Bus]) -> None:
        connected, counters = [], {}
        for bus in buses:
            labels = {"bus": type(bus).__name__}
            connected.append((labels, int(bus.connected)))
            stats = bus.stats
            for field in ("published", "received", "malformed", "dropped", "reconnects"):
                counters.setdefault(field, []).append((labels, getattr(stats, field)))
            counters.setdefault("pending", []).append((labels, stats.pending))
        out.metric("bptwin_bus_connected", "gauge", "1 when the bus is connected", connected)
        for field, samples in counters.items():
            kind = "gauge" if field == "pending" else "counter"
            name = f"bptwin_bus_{field}" + ("" if kind == "gauge" else "_total")
            out.metric(name, kind, f"Bus messages {field}", samples)

    @staticmethod
    def _render_stores(
        out: _Exposition, stores: list[TimeSeriesStore], spools: dict[str, int]
    ) -> None:
        link, pending, spooled, written, failed = [], [], [], [], []
        for store in stores:
            status = _status(store)
            if status is None:
                continue
            labels = {"store": status.name}
            link.append((labels, int(status.link_ok)))
            pending.append((labels, status.pending))
            spooled.append((labels, status.spooled))
            written.append((labels, status.written))
            failed.append((labels, status.failed_writes))
        spooled += [({"store": name}, depth) for name, depth in sorted(spools.items())]
        out.metric("bptwin_store_link_ok", "gauge", "1 when the store's server answers", link)
        out.metric("bptwin_store_pending", "gauge", "Readings not yet confirmed written", pending)
        out.metric("bptwin_spool_depth", "gauge", "Readings waiting in the local spool", spooled)
        out.metric("bptwin_store_written_total", "counter", "Readings written", written)
        out.metric("bptwin_store_failed_writes_total", "counter", "Failed write attempts", failed)


def _status(store: TimeSeriesStore) -> Any:
    try:
        return store.status()
    except Exception as exc:  # a closed store, say; report it as unavailable
        log.warning("store status unavailable: %s", exc)
        return None


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


class _Exposition:
    """Builds the text format: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self._head(name, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(
        self,
        name: str,
        help_text: str,
        buckets: list[tuple[Mapping[str, str], float]],
        total: float,
        count: int,
    ) -> None:
        self._head(name, "histogram", help_text)
        for labels, value in buckets:
            self._lines.append(f"{name}_bucket{_labels(labels)} {_number(value)}")
        self._lines.append(f"{name}_sum {_number(total)}")
        self._lines.append(f"{name}_count {count}")

    def _head(self, name: str, kind: str, help_text: str) -> None:
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        self._lines += [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}"]

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP on a loopback address, in a daemon thread."""

    def __init__(self, registry: MetricsRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        if not is_loopback(host):
            raise ValueError(f"metrics.host: {host!r} is not a loopback address")
        self.registry = registry
        handler = _handler_for(registry)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
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


def _handler_for(registry: MetricsRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bptwin-metrics"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE, registry.render().encode())
            elif path == "/health":
                health = registry.health()
                self._answer(200 if health.healthy else 503, "application/json", health.to_json())
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
    registry: MetricsRegistry, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    return MetricsServer(registry, host, port).start()
