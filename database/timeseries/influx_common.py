"""Shared pieces of the InfluxDB store: configuration, schema, line protocol, errors.

Schema (both 1.x and 2.x): measurement ``readings``; tags ``reactor`` and ``channel``; fields
``value`` (float; absent when the reading's value is NaN), ``quality`` (string: good, uncertain,
bad) and ``unit`` (string). The unit is a field, not a tag: a point's identity in InfluxDB is
measurement + tag set + time, and the store's idempotency key is (reactor, channel, timestamp), so
a unit change must not create a second series holding a second point at the same instant.
Timestamps are written with millisecond precision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal
from urllib.parse import urlsplit

from bptwin.database.reading import Reading

MEASUREMENT = "readings"
ApiVersion = Literal["auto", "1", "2"]


class InfluxConfigError(ValueError):
    """A bad InfluxDB setting; the message names the key."""


class DeliveryError(Exception):
    """A write or query failed. ``retryable`` is False when resending the same data cannot help."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where and how to reach InfluxDB.

    2.x needs ``token``, ``org`` and ``bucket``; 1.x needs ``database`` (plus ``username`` and
    ``password`` when auth is on, ``retention_policy`` to write somewhere else than the default).
    ``api_version="auto"`` asks the server (GET /ping, header X-Influxdb-Version).
    """

    url: str
    api_version: ApiVersion = "auto"
    token: str | None = None
    org: str | None = None
    bucket: str | None = None
    database: str | None = None
    username: str | None = None
    password: str | None = None
    retention_policy: str | None = None
    measurement: str = MEASUREMENT
    timeout_s: float = 10.0
    verify_ssl: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise InfluxConfigError(
                f"influx url {self.url!r} must look like http://host:8086 or https://host:8086"
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise InfluxConfigError(f"influx url {self.url!r} has a bad port: {exc}") from exc
        if self.api_version not in ("auto", "1", "2"):
            raise InfluxConfigError(
                f"influx api_version must be 'auto', '1' or '2', got {self.api_version!r}"
            )
        if self.api_version == "2":
            for key in ("token", "org", "bucket"):
                if not getattr(self, key):
                    raise InfluxConfigError(f"influx {key} is required for api_version 2")
        if self.api_version == "1" and not self.database:
            raise InfluxConfigError("influx database is required for api_version 1")
        if self.api_version == "auto" and not self.database and not self.bucket:
            raise InfluxConfigError(
                "influx needs database (1.x) or token, org and bucket (2.x); none is set"
            )
        if not self.measurement or "\n" in self.measurement:
            raise InfluxConfigError(f"influx measurement {self.measurement!r} is not a valid name")
        if not (self.timeout_s > 0):
            raise InfluxConfigError(f"influx timeout_s must be > 0, got {self.timeout_s!r}")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    def target(self) -> str:
        """Human name of the destination, for status lines and errors (never the token)."""
        where = self.bucket if self.api_version == "2" else (self.database or self.bucket)
        return f"{self.base_url} [{where}]"


def parse_server_version(header: str | None) -> Literal["1", "2"]:
    """Major API version from the X-Influxdb-Version header (``1.6.7~rc0``, ``v2.7.4``, ``2.7``)."""
    match = re.match(r"\s*v?(\d+)\.", header or "")
    if match is None:
        raise DeliveryError(f"server did not say its InfluxDB version (header {header!r})")
    major = int(match.group(1))
    if major == 1:
        return "1"
    if major >= 2:
        return "2"
    raise DeliveryError(f"unsupported InfluxDB version {header!r}")


# -- line protocol -------------------------------------------------------------------------------

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})


def _tag(text: str) -> str:
    if "\n" in text or "\r" in text or not text:
        raise ValueError(f"reactor/channel name {text!r} is empty or holds a line break")
    return text.translate(_TAG_ESCAPES)


def _string_field(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"unit {text!r} holds a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LineEncoder:
    """Readings to line protocol, caching the escaped prefix of each series (the hot path)."""

    def __init__(self, measurement: str = MEASUREMENT) -> None:
        self._measurement = measurement.translate(_MEASUREMENT_ESCAPES)
        self._prefixes: dict[tuple[str, str], str] = {}
        self._units: dict[str, str] = {}

    def line(self, reading: Reading) -> str:
        key = (reading.reactor, reading.channel)
        prefix = self._prefixes.get(key)
        if prefix is None:
            # Tags in sorted key order, as InfluxDB stores them.
            prefix = f"{self._measurement},channel={_tag(key[1])},reactor={_tag(key[0])} "
            self._prefixes[key] = prefix
        unit = self._units.get(reading.unit)
        if unit is None:
            unit = self._units[reading.unit] = _string_field(reading.unit)
        ms = round(reading.timestamp * 1000.0)
        value = reading.value
        if math.isfinite(value):
            return f'{prefix}value={value!r},quality="{reading.quality.value}",unit={unit} {ms}'
        return f'{prefix}quality="bad",unit={unit} {ms}'

    def lines(self, readings: Sequence[Reading]) -> list[str]:
        return [self.line(reading) for reading in readings]


# -- query helpers -------------------------------------------------------------------------------


def influxql_string(text: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_identifier(text: str) -> str:
    """A double-quoted InfluxQL identifier."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flux_string(text: str) -> str:
    """A double-quoted Flux string literal (``$`` escaped: ``${`` starts interpolation)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return '"' + escaped.replace("\n", "\\n") + '"'


def flux_time(ms: int) -> str:
    """An RFC 3339 Flux time literal with millisecond precision."""
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"
