"""What OPC UA nodes and Modbus registers share: a *point* that feeds one channel of one reactor.

A field-bus source (``opcua``, ``modbus``) lists points, each naming its catalogue channel, its
reactor, and how its raw number becomes the catalogue unit (``value = raw * scale + offset``).
This module holds the settings those entries share (:class:`PointOptions`), the rule that makes
the source own exactly the (reactor, channel) pairs its points name
(:func:`fill_point_reactors`, :func:`check_point_ownership`), and the one way a raw value
becomes a reading (:func:`point_reading`): not a number, NaN or infinite is refused with a
counted reason; a value outside the channel's physical range is kept but marked ``bad``, as on
the MQTT path, so that cleaning sees it and raises the alarm. :func:`probe_answer` is the
one-line verdict ``bptwin doctor`` gives on a field-bus link.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bptwin.database.channels import CHANNELS_BY_NAME, is_physical
from bptwin.database.reading import Quality, Reading

# Why a raw value was refused (the labels in the driver's rejected_by_reason).
WRONG_TYPE = "wrong_type"  # text, a boolean, an array where a number belongs
NOT_FINITE = "not_finite"  # NaN or infinity from a float register or node


class PointRefused(ValueError):
    """A raw value that cannot be a reading; ``reason`` is the counted label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PointOptions(BaseModel):
    """What every point says: its channel, reactor and scaling into the catalogue unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str
    reactor: str | None = Field(None, min_length=1, max_length=64)
    scale: float = Field(1.0, allow_inf_nan=False)
    offset: float = Field(0.0, allow_inf_nan=False)
    # The unit after scale and offset; bptwin does not convert units, so it must be the
    # catalogue's (saying it documents the conversion; another unit is refused).
    unit: str | None = None

    @field_validator("channel")
    @classmethod
    def _catalogue_channel(cls, channel: str) -> str:
        if channel not in CHANNELS_BY_NAME:
            raise ValueError(f"unknown channel {channel!r} (known: {', '.join(CHANNELS_BY_NAME)})")
        return channel

    @field_validator("scale")
    @classmethod
    def _nonzero_scale(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("scale 0 would turn every value into the offset")
        return scale

    def check_unit(self) -> None:
        """ValueError when ``unit`` is given and is not the channel's catalogue unit."""
        expected = CHANNELS_BY_NAME[self.channel].unit
        if self.unit is not None and self.unit != expected:
            raise ValueError(
                f"unit {self.unit!r}: {self.channel} is stored in {expected!r}; convert with "
                "scale and offset (bptwin does not convert units)"
            )


def fill_point_reactors(data: Any, points_key: str) -> Any:
    """Before validation: a source without ``reactors`` reads the reactors its points name.

    A point without ``reactor`` belongs to the source's only reactor; with several (or none
    given and none named) the point must name its reactor: ValueError says which.
    """
    if not isinstance(data, Mapping):
        return data
    points = data.get(points_key)
    if not isinstance(points, list):
        return data
    reactors = data.get("reactors") or []
    named = [p.get("reactor") for p in points if isinstance(p, Mapping)]
    unnamed = [i for i, reactor in enumerate(named) if not reactor]
    if unnamed and len(reactors) != 1:
        raise ValueError(
            f"{points_key}[{unnamed[0]}]: give it a 'reactor' (or give the source exactly one "
            "in 'reactors')"
        )
    if not reactors:
        return {**data, "reactors": list(dict.fromkeys(str(r) for r in named))}
    return data


def point_reactor(point: PointOptions, reactors: Sequence[str]) -> str:
    """The reactor a point feeds (its own, else the source's only one)."""
    return point.reactor or reactors[0]


def check_point_ownership(
    points: Sequence[PointOptions],
    reactors: Sequence[str],
    channels: Sequence[str],
    points_key: str,
) -> None:
    """ValueError unless the source owns exactly what its points feed.

    Every point's reactor is one of the source's, no (reactor, channel) has two points, and
    each reactor has a point for every channel the source owns (an owned channel without a
    point would stay silent while no other source may fill it).
    """
    if "*" in channels:
        raise ValueError(
            f"channels: a source with {points_key} owns the channels its points name, not '*'"
        )
    seen: dict[tuple[str, str], int] = {}
    for index, point in enumerate(points):
        try:
            point.check_unit()
        except ValueError as exc:
            raise ValueError(f"{points_key}[{index}]: {exc}") from None
        reactor = point_reactor(point, reactors)
        if reactor not in reactors:
            raise ValueError(
                f"{points_key}[{index}]: reactor {reactor!r} is not one of this source's "
                f"reactors {list(reactors)}"
            )
        key = (reactor, point.channel)
        if key in seen:
            raise ValueError(
                f"{points_key}[{index}]: {point.channel} of {reactor} is already read by "
                f"{points_key}[{seen[key]}]"
            )
        seen[key] = index
    owned = set(channels) or {point.channel for point in points}
    for reactor in reactors:
        for channel in sorted(owned):
            if (reactor, channel) not in seen:
                raise ValueError(
                    f"{points_key}: no point reads {channel} of {reactor}, which this source "
                    "would own (add one, or list the source's 'channels' without it)"
                )
    extra = sorted({c for (_r, c) in seen} - owned)
    if extra:
        raise ValueError(f"{points_key}: points read {extra}, which 'channels' does not list")


def point_channels(points: Sequence[PointOptions]) -> list[str]:
    """The channels the points name, in order, each once (a field source's default claim)."""
    return list(dict.fromkeys(point.channel for point in points))


def as_number(raw: object, where: str) -> float:
    """A raw value as a float; PointRefused for text, booleans, arrays, NaN and infinity."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PointRefused(WRONG_TYPE, f"{where}: a {type(raw).__name__}, not a number")
    value = float(raw)
    if not math.isfinite(value):
        raise PointRefused(NOT_FINITE, f"{where}: {value!r} is not a finite number")
    return value


def point_reading(
    point: PointOptions,
    reactor: str,
    timestamp: float,
    raw: float,
    quality: Quality = Quality.GOOD,
) -> Reading:
    """The reading of one finite raw value (scaled; marked bad outside the physical range).

    PointRefused when scaling overflows. A ``bad`` quality carries no value (NaN), as the
    other drivers do when the instrument says its value cannot be used.
    """
    channel = point.channel
    unit = CHANNELS_BY_NAME[channel].unit
    if quality is Quality.BAD:
        return Reading(timestamp, reactor, channel, math.nan, unit, Quality.BAD)
    value = raw * point.scale + point.offset
    if not math.isfinite(value):
        raise PointRefused(NOT_FINITE, f"{channel}: {raw!r} overflows after scaling")
    # Physically impossible values are kept but flagged: cleaning turns them into gaps and
    # raises the alarm (docs/process.md, Alarm defaults), which needs to see them.
    if not is_physical(channel, value):
        quality = Quality.BAD
    return Reading(timestamp, reactor, channel, value, unit, quality)


def bad_reading(point: PointOptions, reactor: str, timestamp: float) -> Reading:
    """No usable value now (the device says so): NaN with quality ``bad``."""
    unit = CHANNELS_BY_NAME[point.channel].unit
    return Reading(timestamp, reactor, point.channel, math.nan, unit, Quality.BAD)


def probe_answer(
    link: str,
    readings: Sequence[Reading],
    points: int,
    noun: str,
    problems: Mapping[str, str],
    answers: str = "answers",
) -> tuple[bool, str]:
    """``bptwin doctor``'s verdict on one poll of every point of a link that answered.

    Not ok while any point has a problem (each named); ok otherwise, naming the points whose
    reading is not good now.
    """
    readable = f"{len(readings)} of {points} {noun} read"
    if problems:
        named = "; ".join(f"{k}: {v}" for k, v in problems.items())
        return False, f"{link} answers, {readable}; {named}"
    bad = sorted(f"{r.reactor}/{r.channel}" for r in readings if r.quality is not Quality.GOOD)
    flagged = f" ({', '.join(bad)} not good now)" if bad else ""
    return True, f"{link} {answers}, {readable}{flagged}"
