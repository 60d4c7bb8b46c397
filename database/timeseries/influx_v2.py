"""InfluxDB 2.x through influxdb-client: synchronous writes (the store's flusher retries) and Flux.

influxdb_client is imported lazily: it costs ~0.5 s of start-up and only 2.x needs it.
"""

from __future__ import annotations

import math
from typing import Any

from bptwin.database.timeseries.influx_common import (
    DeliveryError,
    InfluxConfig,
    flux_string,
    flux_time,
)
from bptwin.database.timeseries.influx_v1 import Row, StoredPoints, WindowRow

_AGGREGATES = ("mean", "min", "max", "last", "count")


def flux_series_filter(measurement: str, reactor: str, channel: str) -> str:
    return (
        f"r._measurement == {flux_string(measurement)}"
        f" and r.reactor == {flux_string(reactor)} and r.channel == {flux_string(channel)}"
    )


def flux_range_query(
    bucket: str, measurement: str, reactor: str, channel: str, start_ms: int, end_ms: int
) -> str:
    """Points of one channel in [start, end), one row per time with value, quality and unit."""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start_ms)}, stop: {flux_time(end_ms)})\n"
        f"  |> filter(fn: (r) => {flux_series_filter(measurement, reactor, channel)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        "  |> group()\n"
        '  |> sort(columns: ["_time"])\n'
    )


def flux_windows_query(
    bucket: str,
    measurement: str,
    reactor: str,
    channel: str,
    start_ms: int,
    end_ms: int,
    window_ms: int,
) -> str:
    """Epoch-aligned windows of the value field; one yielded result per aggregate."""
    text = (
        f"data = from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start_ms)}, stop: {flux_time(end_ms)})\n"
        f"  |> filter(fn: (r) => {flux_series_filter(measurement, reactor, channel)}"
        ' and r._field == "value")\n'
    )
    for name in _AGGREGATES:
        text += (
            f"data |> aggregateWindow(every: {window_ms}ms, fn: {name}, createEmpty: false,"
            f' timeSrc: "_start") |> yield(name: "{name}")\n'
        )
    return text


def flux_channels_query(bucket: str, measurement: str, reactor: str | None) -> str:
    """One row per (reactor, channel) series that holds data."""
    condition = f"r._measurement == {flux_string(measurement)}" + ' and r._field == "quality"'
    if reactor is not None:
        condition += f" and r.reactor == {flux_string(reactor)}"
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        "  |> range(start: 0)\n"
        f"  |> filter(fn: (r) => {condition})\n"
        '  |> group(columns: ["reactor", "channel"])\n'
        "  |> first()\n"
        '  |> keep(columns: ["reactor", "channel"])\n'
    )


def flux_last_times_query(bucket: str, measurement: str, since_ms: int) -> str:
    """Per (reactor, channel), the newest point at or after ``since_ms``."""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(since_ms)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
        ' and r._field == "quality")\n'
        '  |> group(columns: ["reactor", "channel"])\n'
        "  |> last()\n"
    )


def flux_points_query(bucket: str, measurement: str, start_ms: int, end_ms: int) -> str:
    """Every point with ``start_ms <= time <= end_ms``: value and quality per key."""
    return (
        f"from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: {flux_time(start_ms)}, stop: {flux_time(end_ms + 1)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
        ' and (r._field == "value" or r._field == "quality"))\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
    )


class InfluxV2Client:
    """Writes line protocol to a bucket and reads with Flux, through influxdb-client."""

    def __init__(self, config: InfluxConfig) -> None:
        if not (config.token and config.org and config.bucket):
            raise DeliveryError(
                "InfluxDB 2.x needs token, org and bucket in the settings", retryable=False
            )
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config = config
        self.bucket = config.bucket
        self.org = config.org
        self._client = InfluxDBClient(
            url=config.base_url,
            token=config.token,
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            verify_ssl=config.verify_ssl,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()

    def write(self, body: str) -> None:
        from influxdb_client import WritePrecision

        self._call(
            "write",
            lambda: self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=body,
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # str-valued enum
            ),
        )

    def read_range(self, reactor: str, channel: str, start_ms: int, end_ms: int) -> list[Row]:
        q = flux_range_query(
            self.bucket, self.config.measurement, reactor, channel, start_ms, end_ms
        )
        rows: list[Row] = []
        for table in self._query(q):
            for record in table.records:
                values: dict[str, Any] = record.values
                rows.append(
                    (
                        _ms(record.get_time()),
                        values.get("value"),
                        values.get("quality"),
                        values.get("unit"),
                    )
                )
        rows.sort(key=lambda row: row[0])
        return rows

    def read_windows(
        self, reactor: str, channel: str, start_ms: int, end_ms: int, window_ms: int
    ) -> list[WindowRow]:
        q = flux_windows_query(
            self.bucket, self.config.measurement, reactor, channel, start_ms, end_ms, window_ms
        )
        windows: dict[int, dict[str, Any]] = {}
        for table in self._query(q):
            for record in table.records:
                # Flux clips the first window's _start to the range start: re-align to the epoch.
                slot = math.floor(_ms(record.get_time()) / window_ms) * window_ms
                windows.setdefault(slot, {})[record.values.get("result")] = record.get_value()
        rows: list[WindowRow] = []
        for slot in sorted(windows):
            found = windows[slot]
            if found.get("count"):
                rows.append(
                    (
                        slot,
                        float(found["mean"]),
                        float(found["min"]),
                        float(found["max"]),
                        float(found["last"]),
                        int(found["count"]),
                    )
                )
        return rows

    def list_channels(self, reactor: str | None) -> list[tuple[str, str]]:
        q = flux_channels_query(self.bucket, self.config.measurement, reactor)
        pairs = {
            (record.values["reactor"], record.values["channel"])
            for table in self._query(q)
            for record in table.records
        }
        return sorted(pairs)

    def last_times(self, since_ms: int) -> dict[tuple[str, str], int]:
        q = flux_last_times_query(self.bucket, self.config.measurement, since_ms)
        return {
            (record.values["reactor"], record.values["channel"]): _ms(record.get_time())
            for table in self._query(q)
            for record in table.records
        }

    def points_between(self, start_ms: int, end_ms: int) -> StoredPoints:
        q = flux_points_query(self.bucket, self.config.measurement, start_ms, end_ms)
        found: StoredPoints = {}
        for table in self._query(q):
            for record in table.records:
                values: dict[str, Any] = record.values
                value = values.get("value")
                key = (values["reactor"], values["channel"], _ms(record.get_time()))
                found[key] = (None if value is None else float(value), str(values.get("quality")))
        return found

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _query(self, q: str) -> list[Any]:
        tables: list[Any] = self._call("query", lambda: self._query_api.query(q, org=self.org))
        return tables

    def _call(self, what: str, action: Any) -> Any:
        import urllib3
        from influxdb_client.rest import ApiException

        try:
            return action()
        except ApiException as exc:
            status = int(exc.status or 0)
            retryable = status >= 500 or status in (0, 401, 403, 404, 408, 429)
            raise DeliveryError(
                f"InfluxDB {what} on {self.config.target()} failed ({status}): "
                f"{(exc.body or exc.reason or '')!s:.300}",
                retryable=retryable,
                status=status,
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DeliveryError(
                f"InfluxDB at {self.config.base_url} does not answer: {exc}"
            ) from exc


def _ms(moment: Any) -> int:
    return round(float(moment.timestamp()) * 1000.0)
