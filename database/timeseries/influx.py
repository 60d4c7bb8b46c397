"""The InfluxDB time-series store (2.x through influxdb-client, 1.x through its HTTP API).

Write path: ``write`` turns readings into line protocol and appends them to a local durable
spool (database/spool.py) in one SQLite transaction, so an accepted reading survives a process
kill. A background flusher thread takes the oldest spooled batches (up to ``batch_size`` lines),
POSTs them, and removes them only once the server confirmed. A failed POST is retried with
jittered exponential backoff (``retry_initial`` doubling up to ``retry_max``, database/backoff.py)
for as long as it takes, always the oldest batch first, so replay keeps the original order. A
line the server refuses for good (found by the server's own message or by halving the batch) is
moved to the spool's ``rejected`` table with the reason and counted; the rest of its batch is
written.

First write wins (database/timeseries/base.py): InfluxDB itself overwrites a point written
again under the same key, so before a batch is sent its lines are compared with what the server
holds wherever the series already has data at or after their time. Exact repeats (a batch
replayed after the link broke or the process was killed) are dropped as duplicates; a different
value under a stored key is a conflict, kept aside in ``rejected``, never written over.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bptwin.database.backoff import Backoff
from bptwin.database.reading import Quality, Reading
from bptwin.database.spool import Spool, SpoolError, SpoolItem
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
    LineKey,
    lines_named_in,
    parse_line,
    parse_server_version,
    series_tags,
)
from bptwin.database.timeseries.influx_v1 import InfluxV1Client, http_pool, ping
from bptwin.database.timeseries.influx_v2 import InfluxV2Client

log = logging.getLogger(__name__)

_QUALITIES = {quality.value: quality for quality in Quality}
_T = TypeVar("_T")


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
        self._refused = 0
        self._conflicts = 0
        self._duplicates = 0
        # Per series key: no point of it is stored after this time (ms), as far as bptwin
        # wrote it; known after one query per series, then kept up to date by our writes.
        self._high_water: dict[str, int] = {}
        self._series_names: dict[str, tuple[str, str]] = {}
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
        lines: list[str] = []
        unwritable: list[tuple[str, str]] = []
        for reading in readings:
            try:
                lines.append(self._encoder.line(reading))
            except ValueError as exc:  # not a number, a line break in a name: kept aside
                unwritable.append((repr(reading), f"cannot be written: {exc}"))
        size = self.batch_size
        items: list[tuple[bytes | str, int]] = [
            ("\n".join(lines[i : i + size]), len(lines[i : i + size]))
            for i in range(0, len(lines), size)
        ]
        try:
            if items:
                self._spool.push_many(items)
            if unwritable:
                self._set_aside(unwritable)
                with self._state:
                    self._refused += len(unwritable)
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
        with self._state:
            refused, conflicts, duplicates = self._refused, self._conflicts, self._duplicates
        return StoreStatus(
            self.name,
            link_ok,
            pending,
            spooled,
            written,
            failed,
            error,
            refused=refused,
            conflicts=conflicts,
            duplicates=duplicates,
            kept_aside=self._spool.rejected_count(),
            kept_aside_in=f"{self._spool.path} (table rejected)",
        )

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
                if backoff.wait(self._stop):
                    return

    def _deliver_once(self) -> bool:
        """Send the oldest spooled batch; True when it left the spool (written or kept aside)."""
        try:
            items = self._spool.peek(max_items=1000, max_weight=self.batch_size)
            if not items:
                return True
            lines = [
                line
                for item in items
                for line in (
                    item.payload if isinstance(item.payload, str) else item.payload.decode("utf-8")
                ).split("\n")
                if line
            ]
            try:
                client = self._connect()
                fresh, aside = self._screen(client, lines)
                refused = self._post(client, fresh)
            except DeliveryError as exc:
                self._note_failure(exc)
                return False
            if refused:
                log.error(
                    "InfluxDB refused %d of %d readings for good (kept in %s, table rejected): %s",
                    len(refused), len(fresh), self._spool.path, refused[0][1],
                )  # fmt: skip
            self._set_aside(aside + refused)
            self._spool.ack(items)
            written = len(fresh) - len(refused)
            self._note_done(items, written=written, error=refused[0][1] if refused else None)
            with self._state:
                self._refused += len(refused)
            return True
        except Exception as exc:  # the flusher must outlive any surprise; data stays spooled
            log.exception("InfluxDB flusher error")
            self._note_failure(DeliveryError(f"flusher error: {exc}"))
            return False

    def _screen(
        self, client: InfluxV1Client | InfluxV2Client, lines: list[str]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """First write wins: the lines to send, and the conflicting ones with their reason.

        Exact repeats of a stored point (a spool replayed after a kill, a reading received
        twice) are dropped and counted as duplicates. A line is looked up on the server only
        when its series already holds a point at or after its time (the series' high-water
        mark), so live acquisition, always newer than what is stored, costs no query.
        """
        aside: list[tuple[str, str]] = []
        first: dict[tuple[str, int], tuple[LineKey, str]] = {}
        duplicates = conflicts = 0
        for line in lines:
            try:
                key = parse_line(line)
            except ValueError as exc:
                aside.append((line, f"unreadable spooled line: {exc}"))
                continue
            earlier = first.get((key.series, key.ts_ms))
            if earlier is None:
                first[(key.series, key.ts_ms)] = (key, line)
            elif _same(earlier[0], key.value, key.quality):
                duplicates += 1
            else:
                conflicts += 1
                aside.append((line, _conflict(earlier[0].value, earlier[0].quality)))
        unknown = {key.series for key, _ in first.values()} - self._high_water.keys()
        if unknown:
            since = min(key.ts_ms for key, _ in first.values() if key.series in unknown)
            newest = client.last_times(since)
            for series in unknown:
                found = newest.get(self._series_of(series))
                self._high_water[series] = since - 1 if found is None else found
        suspects = [
            (key, line) for key, line in first.values() if key.ts_ms <= self._high_water[key.series]
        ]
        stored = (
            client.points_between(
                min(key.ts_ms for key, _ in suspects), max(key.ts_ms for key, _ in suspects)
            )
            if suspects
            else {}
        )
        fresh: list[str] = []
        for key, line in first.values():
            reactor, channel = self._series_of(key.series)
            point = stored.get((reactor, channel, key.ts_ms))
            if point is None:
                fresh.append(line)
            elif _same(key, point[0], point[1]):
                duplicates += 1
            else:
                conflicts += 1
                aside.append((line, _conflict(point[0], point[1])))
        with self._state:
            self._duplicates += duplicates
            self._conflicts += conflicts
        return fresh, aside

    def _post(
        self, client: InfluxV1Client | InfluxV2Client, lines: list[str]
    ) -> list[tuple[str, str]]:
        """Write ``lines``; the ones the server refuses for good, with its reason.

        A 1.x server names unparsable lines and writes the rest; any other refusal is split in
        halves until the refused lines are found, so good readings are never kept aside with
        a bad one (writing a line twice is harmless: same key, same value). A retryable
        failure raises DeliveryError and the whole batch stays spooled.
        """
        if not lines:
            return []
        try:
            client.write("\n".join(lines))
        except DeliveryError as exc:
            if exc.retryable:
                raise
            named = lines_named_in(str(exc), lines)
            if named:
                rest = [line for line in lines if line not in named]
                return [(line, str(exc)[:500]) for line in named] + self._post(client, rest)
            if len(lines) == 1:
                return [(lines[0], str(exc)[:500])]
            middle = len(lines) // 2
            return self._post(client, lines[:middle]) + self._post(client, lines[middle:])
        for line in lines:
            key = parse_line(line)
            if key.ts_ms > self._high_water.get(key.series, key.ts_ms):
                self._high_water[key.series] = key.ts_ms
        return []

    def _series_of(self, series: str) -> tuple[str, str]:
        found = self._series_names.get(series)
        if found is None:
            tags = series_tags(series)
            found = self._series_names[series] = (tags.get("reactor", ""), tags.get("channel", ""))
        return found

    def _set_aside(self, lines: list[tuple[str, str]]) -> None:
        """Keep refused lines in the spool's ``rejected`` table with their reason."""
        if not lines:
            return
        ids = self._spool.push_many([(line, 1) for line, _reason in lines])
        now = time.time()
        by_reason: dict[str, list[SpoolItem]] = {}
        for spool_id, (line, reason) in zip(ids, lines, strict=True):
            by_reason.setdefault(reason, []).append(SpoolItem(spool_id, line, 1, now))
        for reason, items in by_reason.items():
            self._spool.reject(items, reason)

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

    def _note_done(self, items: list[SpoolItem], *, written: int, error: str | None = None) -> None:
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

    def _query(self, action: Callable[[InfluxV1Client | InfluxV2Client], _T]) -> _T:
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


def _same(key: LineKey, value: float | None, quality: str) -> bool:
    return key.value == value and key.quality == quality


def _conflict(value: float | None, quality: str) -> str:
    shown = "no value" if value is None else repr(value)
    return f"conflict: another reading is stored under this key ({shown}, {quality})"
