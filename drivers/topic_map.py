"""Map a lab's own MQTT topic tree onto bptwin reactors and channels, and decode its payloads.

A :class:`TopicMap` is an ordered list of :class:`TopicRule` (first match wins). A rule's
topic is an MQTT filter whose levels may also be ``{reactor}`` or ``{channel}``, capturing that
level (and matching it like ``+``)::

    bioprocess/pichia/{reactor}/sensors/offgas/co2   -> channel offgas_co2, reactor from topic
    plant/fermenter-3/ph                             -> channel ph, reactor "R3"
    bptwin/v1/{reactor}/sensors/{channel}            -> bptwin's own contract (the default)

Payloads may be a plain number (``0.82``), a JSON number, or a JSON object holding the value
at ``value_path`` (dotted, default ``value``) and optionally a timestamp (``timestamp_path``,
default ``ts``/``timestamp``/``time``; else the arrival time), ``unit`` and ``quality``.
``scale``/``offset`` convert the lab's unit into the catalogue's (e.g. ppm -> %v/v:
``scale = 1e-4``). Anything else raises :class:`PayloadError` naming what is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bptwin.database.channels import CHANNELS_BY_NAME, is_physical
from bptwin.database.reading import (
    Quality,
    Reading,
    ReadingError,
    decode_json,
    parse_quality,
    parse_timestamp,
    parse_value,
)

MAX_PAYLOAD_BYTES = 64 * 1024
_PLAIN_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_TIMESTAMP_KEYS = ("ts", "timestamp", "time")


class TopicMapError(ValueError):
    """A topic-map setting that cannot work; the message names the rule."""


class PayloadError(ValueError):
    """A payload that is not a reading; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TopicRule:
    topic: str
    channel: str | None = None
    reactor: str | None = None
    value_path: str | None = None
    timestamp_path: str | None = None
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    kind: Literal["value", "snapshot"] = "value"
    _levels: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"topic rule {self.topic!r}"
        levels = tuple(self.topic.split("/"))
        if not self.topic or any(level == "" for level in levels):
            raise TopicMapError(f"{where}: empty topic level")
        for index, level in enumerate(levels):
            if level == "#" and index != len(levels) - 1:
                raise TopicMapError(f"{where}: '#' may only be the last level")
            if level not in {"+", "#", "{reactor}", "{channel}"} and any(
                c in level for c in "+#{}"
            ):
                raise TopicMapError(f"{where}: level {level!r} mixes text and a wildcard")
        captures_channel = "{channel}" in levels
        if self.kind == "value" and not captures_channel and self.channel is None:
            raise TopicMapError(f"{where}: needs a channel or a {{channel}} level")
        if self.channel is not None and self.channel not in CHANNELS_BY_NAME:
            known = ", ".join(CHANNELS_BY_NAME)
            raise TopicMapError(f"{where}: unknown channel {self.channel!r} (known: {known})")
        if self.reactor is not None and not _NAME.fullmatch(self.reactor):
            raise TopicMapError(f"{where}: reactor {self.reactor!r} is not a plain name")
        if not math.isfinite(self.scale) or self.scale == 0 or not math.isfinite(self.offset):
            raise TopicMapError(f"{where}: scale must be finite and non-zero, offset finite")
        if self.kind not in ("value", "snapshot"):
            raise TopicMapError(f"{where}: kind must be 'value' or 'snapshot'")
        object.__setattr__(self, "_levels", levels)

    @property
    def subscription(self) -> str:
        """The MQTT filter to subscribe to (captures become ``+``)."""
        return "/".join("+" if level.startswith("{") else level for level in self._levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured levels when ``topic`` matches this rule, else None."""
        parts = topic.split("/")
        captured: dict[str, str] = {}
        for index, level in enumerate(self._levels):
            if level == "#":
                return captured
            if index >= len(parts):
                return None
            part = parts[index]
            if level == "+":
                continue
            if level.startswith("{"):
                captured[level[1:-1]] = part
            elif level != part:
                return None
        return captured if len(parts) == len(self._levels) else None


def default_rules(prefix: str = "bptwin") -> list[TopicRule]:
    """bptwin's own topic contract: one channel per topic, and the multi-channel snapshot."""
    return [
        TopicRule(f"{prefix}/v1/{{reactor}}/sensors/{{channel}}"),
        TopicRule(f"{prefix}/v1/{{reactor}}/sensors", kind="snapshot"),
    ]


class TopicMap:
    """Ordered topic rules; the first rule matching a topic decides how it is read."""

    def __init__(self, rules: Iterable[TopicRule]) -> None:
        self.rules = list(rules)
        if not self.rules:
            raise TopicMapError("the topic map has no rules")

    @classmethod
    def default(cls, prefix: str = "bptwin") -> TopicMap:
        return cls(default_rules(prefix))

    @classmethod
    def from_settings(
        cls,
        raw: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        *,
        include_default: bool = False,
        prefix: str = "bptwin",
    ) -> TopicMap:
        """Build from settings: a ``{topic: "channel" | "reactor/channel"}`` table or a list of
        rule tables.

        Rule tables take the :class:`TopicRule` fields (``topic``, ``channel``, ``reactor``,
        ``value_path``, ``timestamp_path``, ``unit``, ``scale``, ``offset``, ``kind``); unknown
        keys are refused. An empty setting gives bptwin's own contract.
        """
        rules: list[TopicRule] = []
        if isinstance(raw, Mapping):
            for topic, target in raw.items():
                if not isinstance(target, str) or target.count("/") > 1:
                    raise TopicMapError(
                        f"topic_map[{topic!r}]: must be 'channel' or 'reactor/channel' text"
                    )
                reactor, _, channel = target.rpartition("/")
                rules.append(TopicRule(str(topic), channel=channel, reactor=reactor or None))
        else:
            allowed = set(TopicRule.__dataclass_fields__) - {"_levels"}
            for index, table in enumerate(raw):
                if not isinstance(table, Mapping) or "topic" not in table:
                    raise TopicMapError(f"topic_map[{index}]: needs a table with a 'topic' key")
                unknown = set(table) - allowed
                if unknown:
                    raise TopicMapError(
                        f"topic_map[{index}] ({table['topic']!r}): unknown keys {sorted(unknown)}"
                    )
                try:
                    rules.append(TopicRule(**dict(table)))
                except TypeError as exc:
                    raise TopicMapError(f"topic_map[{index}]: {exc}") from None
        if include_default or not rules:
            rules.extend(default_rules(prefix))
        return cls(rules)

    def subscriptions(self) -> list[str]:
        """Distinct filters to subscribe to, dropping any that another one already covers.

        A message matching two of a client's subscriptions may be delivered twice; one
        filter per message keeps each reading single.
        """
        filters = list(dict.fromkeys(rule.subscription for rule in self.rules))
        return [f for f in filters if not any(o != f and filter_covers(o, f) for o in filters)]

    def overlaps_prefix(self, prefix: str) -> bool:
        """True when some rule reads bptwin's own reading topics under ``prefix``.

        Feeding such a source into ``bus.publish_reading`` on the same broker would loop.
        """
        probe = f"{prefix}/v1/R1/sensors/ph"
        return any(rule.match(probe) is not None for rule in self.rules)

    def decode(
        self, topic: str, payload: bytes, *, arrived_at: float, default_reactor: str
    ) -> list[Reading]:
        """The readings one message stands for; raises PayloadError when it holds none."""
        for rule in self.rules:
            captured = rule.match(topic)
            if captured is not None:
                break
        else:
            raise PayloadError("unmapped", f"no topic rule matches {topic[:120]!r}")
        reactor = rule.reactor or captured.get("reactor") or default_reactor
        if not _NAME.fullmatch(reactor):
            raise PayloadError("unmapped", f"reactor {reactor[:80]!r} in {topic!r} is not a name")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadError("too_large", f"{len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        data = _decode(payload)
        if rule.kind == "snapshot":
            return _snapshot(rule, data, reactor, arrived_at)
        channel = rule.channel or captured.get("channel", "")
        if channel not in CHANNELS_BY_NAME:
            raise PayloadError("unmapped", f"unknown channel {channel[:80]!r} in {topic!r}")
        return [_reading(rule, data, reactor, channel, arrived_at)]


def filter_covers(general: str, specific: str) -> bool:
    """True when every topic matching filter ``specific`` also matches ``general``."""
    g_levels, s_levels = general.split("/"), specific.split("/")
    for index, level in enumerate(g_levels):
        if level == "#":
            return True
        if index >= len(s_levels):
            return False
        other = s_levels[index]
        if other == "#" or (level != "+" and level != other):
            return False
    return len(g_levels) == len(s_levels)


def _decode(payload: bytes) -> Any:
    if _PLAIN_NUMBER.fullmatch(payload.decode("latin-1")) and len(payload) <= 64:
        return float(payload)
    try:
        return decode_json(payload, max_bytes=MAX_PAYLOAD_BYTES)
    except ReadingError as exc:
        raise PayloadError("malformed", str(exc)) from None


def _dig(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise PayloadError("missing_field", f"payload has no field {path!r}")
        node = node[key]
    return node


def _reading(rule: TopicRule, data: Any, reactor: str, channel: str, arrived_at: float) -> Reading:
    unit_in_payload: Any = None
    quality_raw: Any = "good"
    if isinstance(data, bool) or data is None:
        raise PayloadError("wrong_type", f"payload must be a number or an object, got {data!r}")
    if isinstance(data, (int, float)):
        raw_value, timestamp = data, arrived_at
    elif isinstance(data, Mapping):
        raw_value = _dig(data, rule.value_path or "value")
        timestamp = _timestamp(rule, data, arrived_at)
        unit_in_payload = data.get("unit")
        quality_raw = data.get("quality", "good")
    else:
        raise PayloadError(
            "wrong_type", f"payload must be a number or an object, not {type(data).__name__}"
        )
    try:
        value = parse_value(raw_value)
        quality = parse_quality(quality_raw, raw_value)
    except ReadingError as exc:
        raise PayloadError("wrong_type", f"{channel}: {exc}") from None
    if unit_in_payload is not None and (
        not isinstance(unit_in_payload, str) or len(unit_in_payload) > 32
    ):
        raise PayloadError("wrong_type", f"{channel}: unit must be text of at most 32 characters")
    return _finish(rule, reactor, channel, timestamp, value, quality, unit_in_payload)


def _timestamp(rule: TopicRule, data: Mapping[str, Any], arrived_at: float) -> float:
    if rule.timestamp_path is not None:
        raw = _dig(data, rule.timestamp_path)
    else:
        raw = next((data[key] for key in _TIMESTAMP_KEYS if key in data), None)
        if raw is None:
            return arrived_at
    try:
        return parse_timestamp(raw, now=arrived_at)
    except ReadingError as exc:
        raise PayloadError("timestamp", str(exc)) from None


def _snapshot(rule: TopicRule, data: Any, reactor: str, arrived_at: float) -> list[Reading]:
    if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
        raise PayloadError("wrong_type", "snapshot payload must be an object with 'values'")
    timestamp = _timestamp(rule, data, arrived_at)
    readings = []
    for channel, entry in data["values"].items():
        if channel not in CHANNELS_BY_NAME:
            raise PayloadError("unmapped", f"snapshot names unknown channel {str(channel)[:80]!r}")
        if isinstance(entry, Mapping):
            inner = {"ts": timestamp, **entry} if "ts" not in entry else dict(entry)
            readings.append(_reading(rule, inner, reactor, channel, arrived_at))
        else:
            try:
                value = parse_value(entry)
            except ReadingError as exc:
                raise PayloadError("wrong_type", f"{channel}: {exc}") from None
            quality = Quality.BAD if entry is None else Quality.GOOD
            readings.append(_finish(rule, reactor, channel, timestamp, value, quality, None))
    if not readings:
        raise PayloadError("wrong_type", "snapshot payload has no values")
    return readings


def _finish(
    rule: TopicRule,
    reactor: str,
    channel: str,
    timestamp: float,
    value: float,
    quality: Quality,
    unit_in_payload: str | None,
) -> Reading:
    scaled = value * rule.scale + rule.offset
    if math.isinf(scaled) or (math.isnan(scaled) and not math.isnan(value)):
        raise PayloadError("wrong_type", f"{channel}: value overflows after scaling")
    value = scaled
    # Physically impossible values are kept but flagged: cleaning turns them into missing
    # data and raises the alarm (docs/process.md, Alarm defaults), which needs to see them.
    if not math.isnan(value) and not is_physical(channel, value):
        quality = Quality.BAD
    unit = rule.unit or unit_in_payload or CHANNELS_BY_NAME[channel].unit
    return Reading(timestamp, reactor, channel, value, unit, quality)
