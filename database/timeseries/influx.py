"""The InfluxDB time-series store (2.x through influxdb-client, 1.x through its HTTP API).

Write path: ``write`` turns readings into line protocol and appends them to a local durable
spool (database/spool.py) in one SQLite transaction, so an accepted reading survives a process
kill. A background flusher thread takes the oldest spooled batches (up to ``batch_size`` lines),
POSTs them, and removes them only once the server confirmed. A failed POST is retried with
exponential backoff (``retry_initial`` doubling up to ``retry_max``) for as long as it takes,
always the oldest batch first, so replay keeps the original order; a batch the server refuses as
malformed is moved to the spool's ``rejected`` table, never dropped. Points are keyed by
(measurement, tags, ms timestamp), so replaying a batch the server had already taken before the
link broke overwrites it: no duplicates.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bptwin.database.backoff import Backoff
from bptwin.database.reading import Quality, Reading
from bptwin.database.spool import Spool, SpoolError
from bptwin.database.timeseries.base import (
    StoreStatus,
    TimeSeriesError,
    TimeSeriesStore,
    WindowAggregate,
    check_range,
    check_window,
)
from bptwin.database.timeseries.influx_common import (
    DeliveryError,
    InfluxConfig,
    LineEncoder,
    parse_server_version,
)
from bptwin.database.timeseries.influx_v1 import InfluxV1Client, http_pool, ping
from bptwin.database.timeseries.influx_v2 import InfluxV2Client

log = logging.getLogger(__name__)

_QUALITIES = {quality.value: quality for quality in Quality}


def default_spool_path(config: InfluxConfig) -> Path:
    """``<user data dir>/bptwin/spool/influx-<host>-<port>-<db or bucket>.sqlite``."""
    import platformdirs

    target = config.database or config.bucket or "default"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{config.base_url.split('://', 1)[1]}-{target}")
    return Path(platformdirs.user_data_dir("bptwin")) / "spool" / f"influx-{slug}.sqlite"


class InfluxStore(TimeSeriesStore):
    """Time series in InfluxDB 1.x or 2.x, with a durable local spool in front."""

    def __init__(
        self,
        config: InfluxConfig,
        spool_path: str | Path | None = None,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.5,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        close_timeout: float = 5.0,
        fsync: bool = False,
        name: str = "influx",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not (flush_interval > 0 and retry_initial > 0 and retry_max >= retry_initial):
            raise ValueError("flush_interval and retry_initial must be > 0, retry_max >= initial")
        self.config = config
        self.name = name
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.close_timeout = close_timeout
        self._encoder = LineEncoder(config.measurement)
        try:
            self._spool = Spool(spool_path or default_spool_path(config), fsync=fsync)
        except SpoolError as exc:
            raise TimeSeriesError(str(exc)) from exc
        self._http = http_pool(config)
        self._client: InfluxV1Client | InfluxV2Client | None = None
        self._client_lock = threading.Lock()
        self.api_version: str | None = None if config.api_version == "auto" else config.api_version

        self._state = threading.Condition()
        self._link_ok = False
        self._written = 0
        self._failed = 0
        self._last_error: str | None = None
        self._delivered_through = 0
        # Spool ids up to this one have waited through a failed delivery (shown as "spooled").
        self._backlog_upto: int | None = self._spool.last_id()

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-flusher", daemon=True)
        self._thread.start()

    @property
    def spool(self) -> Spool:
        return self._spool

    # -- writing --------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        self._check_open()
        lines = self._encoder.lines(readings)
        size = self.batch_size
        items = [
            ("\n".join(lines[i : i + size]), len(lines[i : i + size]))
            for i in range(0, len(lines), size)
        ]
        try:
            self._spool.push_many(items)
        except SpoolError as exc:
            raise TimeSeriesError(f"cannot accept readings: {exc}") from exc
        if self._spool.weight() >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        target = self._spool.last_id()
        if target is None:
            return True
        if self._closed:
            return False
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            while self._delivered_through < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._state.wait(0.5 if remaining is None else min(remaining, 0.5))
        return True

    # -- reading --------------------------------------------------------------------------------

    def read_range(self, reactor: str, channel: str, start: float, end: float) -> list[Reading]:
        check_range(start, end)
        rows = self._query(lambda c: c.read_range(reactor, channel, _ceil_ms(start), _ceil_ms(end)))
        nan = math.nan
        readings = []
        for ts, value, quality, unit in rows:
            if value is None:
                readings.append(
                    Reading(ts / 1000.0, reactor, channel, nan, unit or "", Quality.BAD)
                )
            else:
                found = _QUALITIES.get(quality or "good", Quality.UNCERTAIN)
                readings.append(
                    Reading(ts / 1000.0, reactor, channel, float(value), unit or "", found)
                )
        return readings

    def read_windows(
        self, reactor: str, channel: str, start: float, end: float, window_s: float = 30.0
    ) -> list[WindowAggregate]:
        check_range(start, end)
        check_window(window_s)
        window_ms = round(window_s * 1000)
        rows = self._query(
            lambda c: c.read_windows(reactor, channel, _ceil_ms(start), _ceil_ms(end), window_ms)
        )
        return [
            WindowAggregate(ts / 1000.0, float(mean), float(lo), float(hi), float(last), count)
            for ts, mean, lo, hi, last, count in rows
        ]

    def list_channels(self, reactor: str | None = None) -> list[tuple[str, str]]:
        return self._query(lambda c: c.list_channels(reactor))

    def ping(self) -> str:
        """The server's version string; TimeSeriesError naming the URL when it does not answer."""
        try:
            return ping(self.config, self._http)
        except DeliveryError as exc:
            raise TimeSeriesError(str(exc)) from exc

    # -- status and shutdown --------------------------------------------------------------------

    def status(self) -> StoreStatus:
        total = self._spool.weight()
        with self._state:
            link_ok, backlog = self._link_ok, self._backlog_upto
            written, failed, error = self._written, self._failed, self._last_error
        if not link_ok:
            pending, spooled = 0, total
        elif backlog is not None and total:
            spooled = min(total, self._spool.weight(up_to_id=backlog))
            pending = total - spooled
        else:
            pending, spooled = total, 0
        return StoreStatus(self.name, link_ok, pending, spooled, written, failed, error)

    def close(self) -> None:
        """Deliver what the server will take within ``close_timeout``; the rest stays spooled."""
        if self._closed:
            return
        if self._link_ok:
            self.flush(timeout=self.close_timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.config.timeout_s + 2.0)
        with self._client_lock:
            if isinstance(self._client, InfluxV2Client):
                self._client.close()
            self._client = None
        self._spool.close()
        self._http.clear()

    # -- background delivery --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect()
            with self._state:
                self._link_ok = True
        except DeliveryError as exc:
            self._note_failure(exc, count=False)
        backoff = Backoff(self.retry_initial, self.retry_max)
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while self._spool.depth() > 0 and not self._stop.is_set():
                if self._deliver_once():
                    backoff.reset()
                    continue
                if self._stop.wait(backoff.next_delay()):
                    return

    def _deliver_once(self) -> bool:
        """Send the oldest spooled batch; True when it left the spool (written or rejected)."""
        try:
            items = self._spool.peek(max_items=1000, max_weight=self.batch_size)
            if not items:
                return True
            body = "\n".join(
                item.payload if isinstance(item.payload, str) else item.payload.decode("utf-8")
                for item in items
            )
            try:
                self._connect().write(body)
            except DeliveryError as exc:
                if exc.retryable:
                    self._note_failure(exc)
                    return False
                log.error("InfluxDB refused %d spooled readings for good: %s", len(items), exc)
                self._spool.reject(items, str(exc))
                self._note_done(items, written=0, error=str(exc))
                return True
            self._spool.ack(items)
            self._note_done(items, written=sum(item.weight for item in items))
            return True
        except Exception as exc:  # the flusher must outlive any surprise; data stays spooled
            log.exception("InfluxDB flusher error")
            self._note_failure(DeliveryError(f"flusher error: {exc}"))
            return False

    def _note_failure(self, exc: DeliveryError, *, count: bool = True) -> None:
        with self._state:
            if self._link_ok:
                log.warning("InfluxDB link down, spooling to %s: %s", self._spool.path, exc)
            self._link_ok = False
            if count:
                self._failed += 1
            self._last_error = str(exc)
            last = self._spool.last_id()
            if last is not None:
                self._backlog_upto = max(self._backlog_upto or 0, last)

    def _note_done(self, items: list, *, written: int, error: str | None = None) -> None:
        with self._state:
            if not self._link_ok:
                log.info("InfluxDB link back at %s, replaying the spool", self.config.base_url)
            self._link_ok = True
            self._written += written
            if error is not None:
                self._failed += 1
                self._last_error = error
            self._delivered_through = max(self._delivered_through, items[-1].id)
            if self._backlog_upto is not None and self._delivered_through >= self._backlog_upto:
                self._backlog_upto = None
            self._state.notify_all()

    def _connect(self) -> InfluxV1Client | InfluxV2Client:
        """The API client, detecting the server's version first when configured as auto."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            version = self.api_version
            if version is None:
                version = parse_server_version(ping(self.config, self._http))
            if version == "1":
                client: InfluxV1Client | InfluxV2Client = InfluxV1Client(self.config, self._http)
            else:
                client = InfluxV2Client(self.config)
            self.api_version = version
            self._client = client
            return client

    def _query(self, action):  # type: ignore[no-untyped-def]
        self._check_open()
        try:
            return action(self._connect())
        except DeliveryError as exc:
            raise TimeSeriesError(str(exc)) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise TimeSeriesError(f"InfluxDB store for {self.config.target()} is closed")


def _ceil_ms(timestamp: float) -> int:
    return math.ceil(round(timestamp * 1000.0, 6))
