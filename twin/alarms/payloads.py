"""The outside forms of a transition: the bus payload (JSON), its topic, and the notebook's
stored ``alarm_event`` rows read back after a restart. Contract: docs/alarms.md, "Bus payload".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar

from bptwin.database.bus.topics import CONTRACT_VERSION, DEFAULT_PREFIX, alarm_topic
from bptwin.database.reading import ReadingError, decode_json, format_timestamp, parse_timestamp
from bptwin.twin.alarm_rules import Priority
from bptwin.twin.alarms.model import AlarmState, AlarmTransition, alarm_id_of

PAYLOAD_VERSION = 1
MAX_TEXT_LENGTH = 2000  # longest text field a payload may carry

_E = TypeVar("_E", bound=Enum)


class AlarmPayloadError(ValueError):
    """A bus payload that is not an alarm transition; the message says which field."""


def transition_payload(transition: AlarmTransition) -> dict[str, Any]:
    """The JSON-ready bus payload of a transition (topic ``bptwin/v1/<reactor>/alarms/<rule>``)."""
    t = transition
    return {
        "v": PAYLOAD_VERSION,
        "alarm_id": t.alarm_id,
        "reactor": t.reactor,
        "rule": t.rule,
        "condition": t.condition,
        "channel": t.channel,
        "priority": t.priority.value,
        "from": t.from_state.value,
        "to": t.to_state.value,
        "at": format_timestamp(t.at),
        "actor": t.actor,
        "value": t.value,
        "message": t.message,
        "reason": t.reason,
        "condition_active": t.condition_active,
        "shelved_until": None if t.shelved_until is None else format_timestamp(t.shelved_until),
    }


def transition_from_payload(data: Any, *, now: float | None = None) -> AlarmTransition:
    """Rebuild a transition from :func:`transition_payload` output (or its JSON text)."""
    if isinstance(data, (str, bytes)):
        try:
            data = decode_json(data)
        except ReadingError as exc:
            raise AlarmPayloadError(str(exc)) from exc
    if not isinstance(data, Mapping):
        raise AlarmPayloadError(f"alarm payload must be a JSON object, got {type(data).__name__}")
    if data.get("v") != PAYLOAD_VERSION:
        raise AlarmPayloadError(f"alarm payload version {data.get('v')!r} is not {PAYLOAD_VERSION}")
    reactor = _text(data, "reactor")
    rule = _text(data, "rule")
    condition = _text(data, "condition")
    alarm_id = _text(data, "alarm_id")
    if alarm_id != alarm_id_of(reactor, rule, condition):
        raise AlarmPayloadError(f"alarm_id {alarm_id!r} does not match reactor/rule/condition")
    at = _time(data, "at", now)
    until = data.get("shelved_until")
    return AlarmTransition(
        alarm_id=alarm_id,
        rule=rule,
        reactor=reactor,
        condition=condition,
        channel=_optional_text(data, "channel"),
        priority=_enum(Priority, data, "priority"),
        from_state=_enum(AlarmState, data, "from"),
        to_state=_enum(AlarmState, data, "to"),
        at=at,
        actor=_optional_text(data, "actor"),
        value=_number(data, "value"),
        message=_text(data, "message", allow_empty=True),
        reason=_optional_text(data, "reason"),
        condition_active=_flag(data, "condition_active"),
        shelved_until=None if until is None else _time(data, "shelved_until", at + 2 * 86400),
    )


def transition_message(
    transition: AlarmTransition, prefix: str = DEFAULT_PREFIX
) -> tuple[str, bytes]:
    """Topic and JSON bytes to publish (QoS 1, not retained: a rule's conditions share a topic)."""
    payload = json.dumps(transition_payload(transition), separators=(",", ":"), allow_nan=False)
    return alarm_topic(transition.reactor, transition.rule, prefix), payload.encode()


def alarms_pattern(reactor: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription pattern for the alarm transitions of one reactor (``+``: all)."""
    return f"{prefix}/{CONTRACT_VERSION}/{reactor}/alarms/+"


def transitions_from_events(rows: Iterable[Any]) -> list[AlarmTransition]:
    """Best-effort transitions from stored notebook AlarmEvent rows (objects or dicts), for
    :meth:`AlarmEngine.restore` after a restart.

    The rows hold each alarm's state but not the previous state, the condition or a shelve's
    expiry: the previous state is taken from the alarm's previous row, the condition from the
    state (active while active_*; kept from the row before while shelved or out of service),
    and a shelve without expiry ends at the next evaluate().
    """

    def get(row: Any, key: str) -> Any:
        return row.get(key) if isinstance(row, Mapping) else getattr(row, key, None)

    last: dict[str, AlarmState] = {}
    active: dict[str, bool] = {}
    out: list[AlarmTransition] = []
    for row in sorted(rows, key=lambda row: get(row, "occurred_at")):
        rule, _, condition = str(get(row, "rule")).partition("/")
        reactor = str(get(row, "reactor"))
        try:
            state = AlarmState(get(row, "state"))
            priority = Priority(get(row, "priority"))
        except ValueError:
            continue  # not a row this engine wrote
        alarm_id = alarm_id_of(reactor, rule, condition or rule)
        value = get(row, "value")
        actor = get(row, "actor")
        if state in (AlarmState.SHELVED, AlarmState.OUT_OF_SERVICE):
            condition_active = active.get(alarm_id, False)  # hidden: as it was before
        else:
            condition_active = state in (AlarmState.ACTIVE_UNACK, AlarmState.ACTIVE_ACK)
        out.append(
            AlarmTransition(
                alarm_id=alarm_id,
                rule=rule,
                reactor=reactor,
                condition=condition or rule,
                channel=get(row, "channel"),
                priority=priority,
                from_state=last.get(alarm_id, AlarmState.NORMAL),
                to_state=state,
                at=get(row, "occurred_at").timestamp(),
                actor=None if actor in (None, "system") else actor,
                value=None if value is None or not math.isfinite(value) else float(value),
                message=get(row, "message") or "",
                reason=None,
                condition_active=condition_active,
            )
        )
        last[alarm_id] = state
        active[alarm_id] = condition_active
    return out


# ---- field readers: each names the field it refuses ---------------------------------------


def _text(data: Mapping[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = data.get(key)
    if (
        not isinstance(value, str)
        or (not value and not allow_empty)
        or len(value) > MAX_TEXT_LENGTH
    ):
        raise AlarmPayloadError(f"alarm payload field {key!r} must be text, got {value!r:.80}")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _text(data, key)


def _enum(enum: type[_E], data: Mapping[str, Any], key: str) -> _E:
    try:
        return enum(data.get(key))
    except ValueError:
        choices = ", ".join(str(member.value) for member in enum)
        raise AlarmPayloadError(
            f"alarm payload field {key!r} must be one of {choices}, got {data.get(key)!r:.80}"
        ) from None


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AlarmPayloadError(f"alarm payload field {key!r} must be a finite number or null")
    return float(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise AlarmPayloadError(f"alarm payload field {key!r} must be true or false")
    return value


def _time(data: Mapping[str, Any], key: str, now: float | None) -> float:
    try:
        return parse_timestamp(data.get(key), now=now)
    except ReadingError as exc:
        raise AlarmPayloadError(f"alarm payload field {key!r}: {exc}") from exc
