"""JSON payloads of the MQTT contract: one reading, or a snapshot of several channels.

Reactor and channel come from the topic (docs/mqtt.md). Every malformed input raises
``ReadingError`` with the reason; nothing else escapes the decoders.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading, ReadingError, decode_json, format_timestamp

# A snapshot of the 19 catalogue channels is ~1.5 kB; 64 kB leaves room for big plants
# and still refuses a runaway publisher before json.loads spends time on it.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SNAPSHOT_CHANNELS = 256


def decode_reading(
    payload: bytes | str, *, reactor: str, channel: str, now: float | None = None
) -> Reading:
    """The reading in a single-reading payload ``{"ts", "value", "unit", "quality"}``.

    A missing ``unit`` is taken from the channel catalogue.
    """
    data = _decode_object(payload)
    return _reading(data, reactor=reactor, channel=channel, default_ts=None, now=now)


def decode_snapshot(
    payload: bytes | str, *, reactor: str, now: float | None = None
) -> list[Reading]:
    """The readings of a snapshot ``{"ts", "values": {channel: number | null | object}}``.

    A bare number takes the catalogue unit and quality good; an object may carry its own
    ``value``, ``unit``, ``quality`` and ``ts``. One bad entry rejects the whole message
    (the reason names the channel), so a message is stored whole or not at all.
    """
    data = _decode_object(payload)
    values = data.get("values")
    if not isinstance(values, dict):
        raise ReadingError("snapshot needs 'values', an object of channel -> value")
    if not values:
        raise ReadingError("snapshot 'values' is empty")
    if len(values) > MAX_SNAPSHOT_CHANNELS:
        raise ReadingError(
            f"snapshot holds {len(values)} channels, more than {MAX_SNAPSHOT_CHANNELS}"
        )
    default_ts = data.get("ts", data.get("timestamp"))
    readings = []
    for channel, entry in values.items():
        item = entry if isinstance(entry, dict) else {"value": entry}
        try:
            readings.append(
                _reading(item, reactor=reactor, channel=channel, default_ts=default_ts, now=now)
            )
        except ReadingError as exc:
            raise ReadingError(f"snapshot channel {str(channel)[:64]!r}: {exc}") from None
    return readings


def decode_any(
    payload: bytes | str, *, reactor: str, channel: str | None, now: float | None = None
) -> list[Reading]:
    """Decode by topic kind: ``channel`` None means a snapshot topic."""
    if channel is None:
        return decode_snapshot(payload, reactor=reactor, now=now)
    return [decode_reading(payload, reactor=reactor, channel=channel, now=now)]


def encode_reading(reading: Reading) -> bytes:
    """The single-reading payload (reactor and channel go in the topic).

    Same JSON as ``json.dumps(reading.to_payload())``, built directly because it runs for
    every reading published (about 4x faster; the round-trip tests hold it to that).
    """
    value = reading.value
    if not math.isfinite(value):
        if not math.isnan(value):
            raise ValueError("value must be finite or NaN")
        number = "null"
    else:
        number = repr(float(value))
    return (
        f'{{"ts":"{iso_timestamp(reading.timestamp)}","value":{number},'
        f'"unit":{_json_text(reading.unit)},"quality":"{reading.quality.value}"}}'
    ).encode()


def iso_timestamp(timestamp: float) -> str:
    """Same text as ``bptwin.database.reading.format_timestamp``, with the second cached."""
    second = math.floor(timestamp)
    micro = round((timestamp - second) * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    return f"{_second_text(second)}.{micro // 1000:03d}Z"


@lru_cache(maxsize=256)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@lru_cache(maxsize=256)
def _json_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def encode_snapshot(readings: Iterable[Reading]) -> bytes:
    """One snapshot payload for readings of one reactor (usually one instant).

    Readings whose timestamp differs from the first one carry their own ``ts``.
    """
    readings = list(readings)
    if not readings:
        raise ValueError("a snapshot needs at least one reading")
    reactors = {reading.reactor for reading in readings}
    if len(reactors) != 1:
        raise ValueError(f"a snapshot holds one reactor, got {sorted(reactors)}")
    first_ts = readings[0].timestamp
    values: dict[str, Any] = {}
    for reading in readings:
        entry = reading.to_payload()
        if reading.timestamp == first_ts:
            del entry["ts"]
        values[reading.channel] = entry
    return _dumps({"ts": format_timestamp(first_ts), "values": values})


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _decode_object(payload: bytes | str) -> dict[str, Any]:
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = bytes(payload)
    elif not isinstance(payload, str):
        raise ReadingError(f"payload must be bytes or text, got {type(payload).__name__}")
    if not payload:
        raise ReadingError("payload is empty")
    try:
        data = decode_json(payload, max_bytes=MAX_PAYLOAD_BYTES)
    except ReadingError:
        raise
    except RecursionError:
        raise ReadingError("payload JSON is nested too deeply") from None
    except ValueError as exc:
        # e.g. integers beyond Python's digit limit
        raise ReadingError(f"payload is not acceptable JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise ReadingError(f"payload must be a JSON object, got {type(data).__name__}")
    return data


def _reading(
    data: dict[str, Any],
    *,
    reactor: str,
    channel: Any,
    default_ts: Any,
    now: float | None,
) -> Reading:
    if not isinstance(channel, str):
        raise ReadingError("channel name must be text")
    fields = dict(data)
    if "ts" not in fields and "timestamp" not in fields and default_ts is not None:
        fields["ts"] = default_ts
    if "unit" not in fields:
        known = CHANNELS_BY_NAME.get(channel)
        fields["unit"] = known.unit if known else ""
    _check_raw_number("ts", fields.get("ts", fields.get("timestamp")))
    _check_raw_number("value", fields.get("value"))
    if "value" not in fields:
        raise ReadingError("'value' is missing (use null for no value)")
    try:
        reading = Reading.from_dict(fields, reactor=reactor, channel=channel, now=now)
    except ReadingError:
        raise
    except (ValueError, OverflowError, TypeError) as exc:
        raise ReadingError(f"payload field out of range: {str(exc)[:120]}") from None
    return reading


def _check_raw_number(field: str, raw: Any) -> None:
    """Integers too large for a float would overflow inside float(); refuse them by name."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 1e300:
        raise ReadingError(f"{field} is an absurdly large number")
