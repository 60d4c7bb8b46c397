"""The API's own Prometheus metrics: requests per route and status, latency, refusals.

They are registered in the registry the API is given: the station's inside ``bptwin serve`` (so
one scrape shows both), a registry of their own under ``bptwin api serve``.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ApiMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class ApiMetrics:
    @classmethod
    def of(cls, registry: CollectorRegistry) -> ApiMetrics:
        """The API metrics in ``registry``, made on first use (two apps on one registry, as
        in tests, count into the same series instead of clashing)."""
        with _LOCK:
            metrics = _BY_REGISTRY.get(registry)
            if metrics is None:
                metrics = _BY_REGISTRY[registry] = cls(registry)
            return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "bptwin_api_requests",
            "HTTP API requests answered, per route, method and status",
            ("route", "method", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "bptwin_api_request_duration_seconds",
            "Time to answer an HTTP API request, per route",
            ("route",),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.refused = Counter(
            "bptwin_api_refused",
            "HTTP API requests refused, per reason (unauthenticated, bad_parameter, "
            "not_found, method) and parameter",
            ("reason", "parameter"),
            registry=registry,
        )

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def refusal(self, reason: str, parameter: str | None = None) -> None:
        self.refused.labels(reason, parameter or "").inc()
