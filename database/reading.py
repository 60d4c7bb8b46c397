"""The one reading type shared by drivers, bus and stores, with its JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any

# Readings older than this or further in the future than MAX_FUTURE_S are refused:
# a clock that far off is a fault, not a measurement.
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
MAX_FUTURE_S = 24 * 3600.0
MAX_NAME_LENGTH = 64


class Quality(str, Enum):
    """OPC-style quality of a value."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class ReadingError(ValueError):
    """A payload or field that cannot be a reading; the message says which part."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one channel of one reactor at one instant.

    ``timestamp`` is Unix time in seconds (UTC); ``value`` is NaN when the sensor
    reported no usable value (then quality is BAD).
    """

    timestamp: float
    reactor: str
    channel: str
    value: float
    unit: str = ""
    quality: Quality = Quality.GOOD

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz=timezone.utc)

    def with_value(self, value: float, quality: Quality | None = None) -> Reading:
        return replace(self, value=value, quality=quality or self.quality)

    def to_payload(self) -> dict[str, Any]:
        """The JSON object of the MQTT contract (reactor and channel live in the topic)."""
        return {
            "ts": format_timestamp(self.timestamp),
            "value": None if math.isnan(self.value) else self.value,
            "unit": self.unit,
            "quality": self.quality.value,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"reactor": self.reactor, "channel": self.channel, **self.to_payload()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(
        cls,
        data: Any,
        *,
        reactor: str | None = None,
        channel: str | None = None,
        now: float | None = None,
    ) -> Reading:
        """Build a reading from a decoded JSON object (reactor, channel may come from the topic)."""
        if not isinstance(data, dict):
            raise ReadingError(f"payload must be a JSON object, got {type(data).__name__}")
        reactor = reactor if reactor is not None else data.get("reactor")
        channel = channel if channel is not None else data.get("channel")
        return cls(
            timestamp=parse_timestamp(data.get("ts", data.get("timestamp")), now=now),
            reactor=check_name("reactor", reactor),
            channel=check_name("channel", channel),
            value=parse_value(data.get("value")),
            unit=check_unit(data.get("unit", "")),
            quality=parse_quality(data.get("quality", "good"), data.get("value")),
        )

    @classmethod
    def from_json(cls, text: str | bytes, **overrides: Any) -> Reading:
        return cls.from_dict(decode_json(text), **overrides)


def decode_json(text: str | bytes, max_bytes: int = 64 * 1024) -> Any:
    """Decode a JSON payload, refusing oversized, non-UTF-8 or non-finite input."""
    if len(text) > max_bytes:
        raise ReadingError(f"payload of {len(text)} bytes exceeds the {max_bytes} byte limit")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReadingError("payload is not UTF-8") from exc
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ReadingError(f"payload is not valid JSON: {exc.msg} at position {exc.pos}") from exc


def _refuse_constant(name: str) -> float:
    raise ReadingError(f"payload holds {name}, which JSON does not allow")


def format_timestamp(timestamp: float) -> str:
    """ISO 8601 in UTC with millisecond resolution, e.g. ``2026-11-23T22:42:50.123Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(raw: Any, *, now: float | None = None) -> float:
    """Accept ISO 8601 text (with zone) or Unix seconds; refuse absurd instants."""
    if isinstance(raw, bool) or raw is None:
        raise ReadingError("timestamp 'ts' is missing")
    if isinstance(raw, (int, float)):
        value = float(raw)
        # Milliseconds since the epoch are common from PLC gateways and Telegraf.
        if value > 1e11:
            value /= 1000.0
    elif isinstance(raw, str):
        text = raw.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ReadingError(f"timestamp {raw!r} is not ISO 8601") from exc
        if moment.tzinfo is None:
            raise ReadingError(f"timestamp {raw!r} has no time zone (add Z for UTC)")
        value = moment.timestamp()
    else:
        raise ReadingError(f"timestamp must be text or a number, got {type(raw).__name__}")
    if not math.isfinite(value) or value < EARLIEST_TIMESTAMP:
        raise ReadingError(f"timestamp {raw!r} is before 2000-01-01")
    reference = now if now is not None else datetime.now(tz=timezone.utc).timestamp()
    if value > reference + MAX_FUTURE_S:
        raise ReadingError(f"timestamp {raw!r} is more than a day in the future")
    return value


def parse_value(raw: Any) -> float:
    if raw is None:
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ReadingError(f"value must be a number or null, got {type(raw).__name__}")
    value = float(raw)
    if not math.isfinite(value):
        raise ReadingError("value must be finite")
    return value


def parse_quality(raw: Any, raw_value: Any) -> Quality:
    if raw_value is None:
        return Quality.BAD
    try:
        return Quality(str(raw).lower())
    except ValueError as exc:
        raise ReadingError(f"quality {raw!r} is not one of good, uncertain, bad") from exc


def check_name(field: str, raw: Any) -> str:
    """A reactor or channel name: 1-64 letters, digits, '_', '-' or '.' (ValueError names it)."""
    if not isinstance(raw, str) or not raw:
        raise ReadingError(f"{field} is missing")
    if len(raw) > MAX_NAME_LENGTH or not all(c.isalnum() or c in "_-." for c in raw):
        raise ReadingError(f"{field} {raw[:80]!r} must be 1-64 letters, digits, '_', '-' or '.'")
    return raw


def check_unit(raw: Any) -> str:
    """A unit: text of at most 32 characters (ReadingError otherwise)."""
    if not isinstance(raw, str) or len(raw) > 32:
        raise ReadingError("unit must be text of at most 32 characters")
    return raw
