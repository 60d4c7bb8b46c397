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
from bptwin.database.timeseries.base import field_number

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
        ms = round(float(reading.timestamp) * 1000.0)
        value = field_number(reading.value)
        if math.isfinite(value):
            return f'{prefix}value={value!r},quality="{reading.quality.value}",unit={unit} {ms}'
        return f'{prefix}quality="bad",unit={unit} {ms}'

    def lines(self, readings: Sequence[Reading]) -> list[str]:
        return [self.line(reading) for reading in readings]


# -- reading lines back (the flusher's duplicate check) -----------------------------------------


@dataclass(frozen=True, slots=True)
class LineKey:
    """What the store needs of one of its own lines: series, time, value and quality."""

    series: str
    ts_ms: int
    value: float | None
    quality: str


_FIELDS = re.compile(r'(?:value=([^,]+),)?quality="(\w+)"')


def parse_line(line: str) -> LineKey:
    """The key and reading of a line written by :class:`LineEncoder` (ValueError otherwise)."""
    space = _first_unescaped_space(line)
    stamp = line[line.rfind(" ") + 1 :]
    match = _FIELDS.match(line, space + 1)
    if space < 0 or match is None or not stamp.isdigit():
        raise ValueError(f"not a line of this store: {line[:120]!r}")
    raw_value = match.group(1)
    return LineKey(
        line[:space], int(stamp), None if raw_value is None else float(raw_value), match.group(2)
    )


def _first_unescaped_space(line: str) -> int:
    """End of the series key: the first space not escaped by an odd run of backslashes."""
    index = line.find(" ")
    while index > 0:
        before = index
        while before > 0 and line[before - 1] == "\\":
            before -= 1
        if (index - before) % 2 == 0:
            return index
        index = line.find(" ", index + 1)
    return index


def series_tags(series: str) -> dict[str, str]:
    """``readings,channel=ph,reactor=R1`` -> {"channel": "ph", "reactor": "R1"}, unescaped."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in series:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    tags: dict[str, str] = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        tags[name] = value
    return tags


def lines_named_in(message: str, candidates: Sequence[str]) -> set[str]:
    """Which of ``candidates`` a 1.x server quotes as unparsable in ``message``.

    InfluxDB 1.x refuses a body with bad lines as a partial write, naming each one as
    ``unable to parse '<line>': <why>`` and writing the others; the names let the store set
    aside exactly those lines.
    """
    wanted = set(candidates)
    named: set[str] = set()
    for fragment in message.split("unable to parse '")[1:]:
        end = fragment.find("': ")
        while end >= 0:
            if fragment[:end] in wanted:
                named.add(fragment[:end])
                break
            end = fragment.find("': ", end + 1)
    return named


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
