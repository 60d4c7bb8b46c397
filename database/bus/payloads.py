"""JSON payloads of the MQTT contract: one reading, or a snapshot of several channels.

The incoming payloads are pydantic models (:class:`ReadingPayload`, :class:`SnapshotPayload`)
that say the contract of docs/mqtt.md in one place: which fields, which types, which are
required; unknown fields are ignored so a gateway may add its own. Reactor and channel come from
the topic. Every malformed input raises ``ReadingError`` naming the field and the reason (the
models' validation errors are turned into one line); nothing else escapes the decoders.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import (
    Quality,
    Reading,
    ReadingError,
    check_name,
    check_unit,
    decode_json,
    format_timestamp,
    parse_quality,
    parse_timestamp,
    parse_value,
)

# A snapshot of the 19 catalogue channels is ~1.5 kB; 64 kB leaves room for big plants
# and still refuses a runaway publisher before json.loads spends time on it.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SNAPSHOT_CHANNELS = 256

_T = TypeVar("_T")
_ModelT = TypeVar("_ModelT", bound=BaseModel)
_MISSING = {
    "ts": "timestamp 'ts' is missing",
    "value": "'value' is missing (use null for no value)",
    "values": "snapshot needs 'values', an object of channel -> value",
}


class ReadingPayload(BaseModel):
    """``{"ts", "value", "unit", "quality"}``: one reading (docs/mqtt.md, Single-reading payload).

    ``ts`` (or ``timestamp``) is ISO 8601 with a zone or Unix seconds/milliseconds between 2000
    and a day after the receiver's clock (``context={"now": ...}``); ``value`` a finite number or
    null (then quality is ``bad``); ``unit`` text of at most 32 characters; ``quality`` good,
    uncertain or bad (default good).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    ts: float = Field(validation_alias=AliasChoices("ts", "timestamp"))
    value: float
    unit: str | None = None
    quality: Quality = Quality.GOOD

    @model_validator(mode="before")
    @classmethod
    def _quality_of_null(cls, data: Any) -> Any:
        if isinstance(data, dict) and "value" in data:
            # A null value is a reading without a usable value: quality bad, whatever it says.
            quality = parse_quality(data.get("quality", "good"), data["value"])
            return {**data, "quality": quality}
        return data

    @field_validator("ts", mode="before")
    @classmethod
    def _timestamp(cls, raw: Any, info: ValidationInfo) -> float:
        _check_raw_number("ts", raw)
        now = info.context.get("now") if isinstance(info.context, dict) else None
        return parse_timestamp(raw, now=now)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, raw: Any) -> float:
        _check_raw_number("value", raw)
        return parse_value(raw)

    @field_validator("unit", mode="before")
    @classmethod
    def _unit(cls, raw: Any) -> str | None:
        return None if raw is None else check_unit(raw)

    def reading(self, *, reactor: str, channel: str) -> Reading:
        known = CHANNELS_BY_NAME.get(channel)
        unit = self.unit if self.unit is not None else (known.unit if known else "")
        return Reading(
            self.ts,
            check_name("reactor", reactor),
            check_name("channel", channel),
            self.value,
            unit,
            self.quality,
        )


class SnapshotPayload(BaseModel):
    """``{"ts", "values": {channel: number | null | reading object}}`` (docs/mqtt.md, Snapshot).

    ``ts`` is the instant of every entry without a ``ts`` of its own; at most 256 channels.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    ts: Any = Field(None, validation_alias=AliasChoices("ts", "timestamp"))
    values: dict[str, Any]

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ValueError(_MISSING["values"])
        if not raw:
            raise ValueError("snapshot 'values' is empty")
        if len(raw) > MAX_SNAPSHOT_CHANNELS:
            raise ValueError(
                f"snapshot holds {len(raw)} channels, more than {MAX_SNAPSHOT_CHANNELS}"
            )
        return raw

    def readings(self, *, reactor: str, now: float | None) -> list[Reading]:
        """Every entry as a reading; one bad entry refuses the whole snapshot, naming it."""
        readings = []
        for channel, entry in self.values.items():
            fields = dict(entry) if isinstance(entry, dict) else {"value": entry}
            if "ts" not in fields and "timestamp" not in fields and self.ts is not None:
                fields["ts"] = self.ts
            try:
                payload = _validate(ReadingPayload, fields, now)
                readings.append(payload.reading(reactor=reactor, channel=channel))
            except ReadingError as exc:
                raise ReadingError(f"snapshot channel {str(channel)[:64]!r}: {exc}") from None
        return readings


def decode_reading(
    payload: bytes | str, *, reactor: str, channel: str, now: float | None = None
) -> Reading:
    """The reading in a single-reading payload; a missing ``unit`` is the catalogue's."""
    model = _validate(ReadingPayload, _decode_object(payload), now)
    return _guarded(lambda: model.reading(reactor=reactor, channel=channel))


def decode_snapshot(
    payload: bytes | str, *, reactor: str, now: float | None = None
) -> list[Reading]:
    """The readings of a snapshot; a message is stored whole or not at all."""
    model = _validate(SnapshotPayload, _decode_object(payload), now)
    return _guarded(lambda: model.readings(reactor=reactor, now=now))


def decode_any(
    payload: bytes | str, *, reactor: str, channel: str | None, now: float | None = None
) -> list[Reading]:
    """Decode by topic kind: ``channel`` None means a snapshot topic."""
    if channel is None:
        return decode_snapshot(payload, reactor=reactor, now=now)
    return [decode_reading(payload, reactor=reactor, channel=channel, now=now)]


def _validate(model: type[_ModelT], data: dict[str, Any], now: float | None) -> _ModelT:
    """``model`` from ``data``, or ReadingError with the first problem in plain words."""
    try:
        return _guarded(lambda: model.model_validate(data, context={"now": now}))
    except ValidationError as exc:
        raise ReadingError(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "missing":
        return _MISSING.get(field, f"'{field}' is missing")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ReadingError):
        return str(cause)
    message = str(error["msg"]).removeprefix("Value error, ")
    return message if field in message or not field else f"{field}: {message}"


def _guarded(action: Callable[[], _T]) -> _T:
    """Run a decoding step; out-of-range numbers become a ReadingError too."""
    try:
        return action()
    except (ReadingError, ValidationError):
        raise
    except (OverflowError, TypeError) as exc:
        raise ReadingError(f"payload field out of range: {str(exc)[:120]}") from None
    except ValueError as exc:
        raise ReadingError(f"payload field out of range: {str(exc)[:120]}") from None


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


def _check_raw_number(field: str, raw: Any) -> None:
    """Integers too large for a float would overflow inside float(); refuse them by name."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 1e300:
        raise ReadingError(f"{field} is an absurdly large number")
