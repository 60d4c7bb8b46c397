"""InfluxDB 1.x over its HTTP API (/ping, /write, /query with InfluxQL), using urllib3.

Debian's InfluxDB 1.6 has no /api/v2, so this speaks the 1.x endpoints directly.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlencode

import urllib3

from bptwin.database.timeseries.influx_common import (
    DeliveryError,
    InfluxConfig,
    influxql_identifier,
    influxql_string,
    series_tags,
)

# One row per reading: (ts_ms, value or None, quality, unit).
Row = tuple[int, float | None, str | None, str | None]
# One row per window: (window_start_ms, mean, min, max, last, count).
WindowRow = tuple[int, float, float, float, float, int]
# A stored point by its key: (reactor, channel, ts_ms) -> (value or None, quality).
StoredPoints = dict[tuple[str, str, int], tuple[float | None, str]]


def http_pool(config: InfluxConfig) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(3.0, config.timeout_s), read=config.timeout_s),
        retries=False,  # the store's flusher owns retries and backoff
        cert_reqs="CERT_REQUIRED" if config.verify_ssl else "CERT_NONE",
        maxsize=4,
    )


def ping(config: InfluxConfig, http: urllib3.PoolManager) -> str:
    """The server's X-Influxdb-Version header; DeliveryError when it does not answer."""
    try:
        response = http.request("GET", config.base_url + "/ping")
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise DeliveryError(f"InfluxDB at {config.base_url} does not answer: {exc}") from exc
    if response.status >= 400:
        raise DeliveryError(f"InfluxDB at {config.base_url} /ping answered {response.status}")
    return response.headers.get("X-Influxdb-Version", "")


class InfluxV1Client:
    """Writes line protocol and runs InfluxQL against one 1.x database."""

    def __init__(self, config: InfluxConfig, http: urllib3.PoolManager) -> None:
        if not config.database:
            raise DeliveryError("InfluxDB 1.x needs a database name", retryable=False)
        self.config = config
        self.http = http
        self.database = config.database
        self._headers: dict[str, str] = {}
        if config.username:
            self._headers.update(
                urllib3.make_headers(basic_auth=f"{config.username}:{config.password or ''}")
            )
        rp = config.retention_policy
        measurement = influxql_identifier(config.measurement)
        self._from = (
            f"{influxql_identifier(self.database)}.{influxql_identifier(rp)}.{measurement}"
            if rp
            else measurement
        )
        self._database_ready = False

    # -- writing --------------------------------------------------------------------------------

    def write(self, body: str) -> None:
        if not self._database_ready:
            self.create_database()
        params = {"db": self.database, "precision": "ms"}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        response = self._request("POST", "/write", params, body.encode("utf-8"))
        if response.status == 204:
            return
        message = _error_text(response)
        if response.status == 404 and "database not found" in message:
            # Dropped behind our back (or never made): make it and let the caller retry.
            self._database_ready = False
        raise DeliveryError(
            f"InfluxDB write to {self.database!r} failed ({response.status}): {message}",
            retryable=_retryable(response.status, message),
            status=response.status,
        )

    def create_database(self) -> None:
        """CREATE DATABASE is idempotent in 1.x; run once per connection."""
        self.query(f"CREATE DATABASE {influxql_identifier(self.database)}", write=True)
        self._database_ready = True

    def drop_database(self) -> None:
        self.query(f"DROP DATABASE {influxql_identifier(self.database)}", write=True)
        self._database_ready = False

    # -- reading --------------------------------------------------------------------------------

    def read_range(self, reactor: str, channel: str, start_ms: int, end_ms: int) -> list[Row]:
        q = (
            f'SELECT "value", "quality", "unit" FROM {self._from}'
            f" WHERE {self._series_filter(reactor, channel)}"
            f" AND time >= {start_ms}ms AND time < {end_ms}ms ORDER BY time ASC"
        )
        rows: list[Row] = []
        for series in self.query(q):
            for ts, value, quality, unit in series["values"]:
                rows.append((int(ts), value, quality, unit))
        return rows

    def read_windows(
        self, reactor: str, channel: str, start_ms: int, end_ms: int, window_ms: int
    ) -> list[WindowRow]:
        q = (
            'SELECT mean("value"), min("value"), max("value"), last("value"), count("value")'
            f" FROM {self._from} WHERE {self._series_filter(reactor, channel)}"
            f" AND time >= {start_ms}ms AND time < {end_ms}ms"
            f" GROUP BY time({window_ms}ms) fill(none)"
        )
        rows: list[WindowRow] = []
        for series in self.query(q):
            for ts, mean, lo, hi, last, count in series["values"]:
                if count:
                    rows.append((int(ts), mean, lo, hi, last, int(count)))
        return rows

    def list_channels(self, reactor: str | None) -> list[tuple[str, str]]:
        q = f"SHOW SERIES FROM {self._from}"
        if reactor is not None:
            q += f' WHERE "reactor" = {influxql_string(reactor)}'
        pairs: set[tuple[str, str]] = set()
        for series in self.query(q):
            for (key,) in series["values"]:
                tags = series_tags(key)
                if "reactor" in tags and "channel" in tags:
                    pairs.add((tags["reactor"], tags["channel"]))
        return sorted(pairs)

    def last_times(self, since_ms: int) -> dict[tuple[str, str], int]:
        """Per (reactor, channel), the time of its newest point at or after ``since_ms``."""
        if not self._database_ready:
            self.create_database()  # made here if missing, so the answer is "nothing stored"
        q = (
            f'SELECT last("quality") FROM {self._from} WHERE time >= {since_ms}ms'
            ' GROUP BY "reactor", "channel"'
        )
        found: dict[tuple[str, str], int] = {}
        for series in self.query(q):
            tags = series.get("tags") or {}
            for ts, _quality in series["values"]:
                found[(tags.get("reactor", ""), tags.get("channel", ""))] = int(ts)
        return found

    def points_between(self, start_ms: int, end_ms: int) -> StoredPoints:
        """Every stored point with ``start_ms <= time <= end_ms``, by key."""
        if not self._database_ready:
            self.create_database()
        q = (
            f'SELECT "value", "quality" FROM {self._from}'
            f" WHERE time >= {start_ms}ms AND time <= {end_ms}ms"
            ' GROUP BY "reactor", "channel"'
        )
        found: StoredPoints = {}
        for series in self.query(q):
            tags = series.get("tags") or {}
            reactor, channel = tags.get("reactor", ""), tags.get("channel", "")
            for ts, value, quality in series["values"]:
                stored = None if value is None else float(value)
                found[(reactor, channel, int(ts))] = (stored, str(quality or ""))
        return found

    def query(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; the ``series`` of its result (chunks merged)."""
        params = {"db": self.database, "q": q, "epoch": "ms"}
        if not write:
            params.update(chunked="true", chunk_size="10000")
        response = self._request("POST" if write else "GET", "/query", params)
        if response.status != 200:
            message = _error_text(response)
            raise DeliveryError(
                f"InfluxDB query failed ({response.status}): {message}",
                retryable=_retryable(response.status, message),
                status=response.status,
            )
        series: list[dict[str, Any]] = []
        for chunk in response.data.decode("utf-8").splitlines():
            if not chunk.strip():
                continue
            document = json.loads(chunk)
            if "error" in document:
                raise DeliveryError(f"InfluxDB query failed: {document['error']}", retryable=False)
            for result in document.get("results", []):
                if "error" in result:
                    raise DeliveryError(
                        f"InfluxDB query failed: {result['error']}", retryable=False
                    )
                _merge_series(series, result.get("series", []))
        return series

    # -- internals ------------------------------------------------------------------------------

    def _series_filter(self, reactor: str, channel: str) -> str:
        return f'"reactor" = {influxql_string(reactor)} AND "channel" = {influxql_string(channel)}'

    def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        url = f"{self.config.base_url}{path}?{urlencode(params)}"
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        try:
            return self.http.request(method, url, body=body, headers=headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DeliveryError(
                f"InfluxDB at {self.config.base_url} does not answer: {exc}"
            ) from exc


def _merge_series(into: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Chunked answers split one series over several documents: join them back."""
    for series in new:
        if (
            into
            and into[-1].get("name") == series.get("name")
            and into[-1].get("tags") == series.get("tags")
        ):
            into[-1]["values"].extend(series.get("values", []))
        else:
            into.append({**series, "values": list(series.get("values", []))})


def _error_text(response: urllib3.BaseHTTPResponse) -> str:
    text = response.data.decode("utf-8", "replace").strip()
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text[:300]


def _retryable(status: int, message: str) -> bool:
    """Server trouble, auth and a missing database can be fixed while we wait; bad data cannot."""
    if status >= 500 or status in (401, 403, 404, 408, 429):
        return True
    return not (400 <= status < 500)


def window_start_ms(ts_ms: int, window_ms: int) -> int:
    return math.floor(ts_ms / window_ms) * window_ms
