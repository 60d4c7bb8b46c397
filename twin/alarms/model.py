"""What an alarm is: its ISA-18.2 states, the allowed transitions, and the immutable records
(transition, view, counts) that the engine hands out. No logic beyond the state machine's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from bptwin.twin.alarm_rules import Priority

# Reasons the engine gives for the transitions it makes on its own.
REASON_CONDITION = "condition"
REASON_RETURNED = "returned"
REASON_EVENT = "event"
REASON_SHELVE_EXPIRED = "shelve_expired"
REASON_UNSHELVED = "unshelved"
REASON_RETURNED_TO_SERVICE = "returned_to_service"


class AlarmState(str, Enum):
    NORMAL = "normal"
    ACTIVE_UNACK = "active_unacknowledged"
    ACTIVE_ACK = "active_acknowledged"
    RETURNED_UNACK = "returned_unacknowledged"
    SHELVED = "shelved"
    OUT_OF_SERVICE = "out_of_service"


_S = AlarmState
# In service and not shelved: the states a condition change moves.
LIVE = (_S.NORMAL, _S.ACTIVE_UNACK, _S.ACTIVE_ACK, _S.RETURNED_UNACK)
ANNUNCIATED = frozenset({_S.ACTIVE_UNACK, _S.ACTIVE_ACK, _S.RETURNED_UNACK})
UNACKNOWLEDGED = frozenset({_S.ACTIVE_UNACK, _S.RETURNED_UNACK})

# Every (from, to) pair the engine may emit; anything else is a bug (checked on each transition).
ALLOWED_TRANSITIONS: frozenset[tuple[AlarmState, AlarmState]] = frozenset(
    {
        (_S.NORMAL, _S.ACTIVE_UNACK),  # condition became active
        (_S.ACTIVE_UNACK, _S.ACTIVE_ACK),  # acknowledged while active
        (_S.ACTIVE_UNACK, _S.RETURNED_UNACK),  # condition cleared before acknowledgement
        (_S.ACTIVE_ACK, _S.NORMAL),  # condition cleared after acknowledgement
        (_S.RETURNED_UNACK, _S.NORMAL),  # acknowledged after it cleared
        (_S.RETURNED_UNACK, _S.ACTIVE_UNACK),  # came back before acknowledgement
        *((state, _S.SHELVED) for state in LIVE),
        (_S.SHELVED, _S.NORMAL),  # unshelved (or expired), condition inactive
        (_S.SHELVED, _S.ACTIVE_UNACK),  # unshelved (or expired), condition still active
        *((state, _S.OUT_OF_SERVICE) for state in (*LIVE, _S.SHELVED)),
        (_S.OUT_OF_SERVICE, _S.NORMAL),
        (_S.OUT_OF_SERVICE, _S.ACTIVE_UNACK),
    }
)


class AlarmActionError(ValueError):
    """An operator action that cannot apply (unknown alarm, wrong state, missing actor...)."""


def alarm_id_of(reactor: str, rule: str, condition: str) -> str:
    return f"{reactor}/{rule}/{condition}"


@dataclass(frozen=True, slots=True)
class AlarmIdentity:
    """Which alarm: ``<reactor>/<rule>/<condition>``, with its channel and priority."""

    alarm_id: str
    rule: str
    reactor: str
    condition: str
    channel: str | None
    priority: Priority


IDENTITY_FIELDS = tuple(f.name for f in fields(AlarmIdentity))


def identity_of(alarm: AlarmIdentity) -> dict[str, Any]:
    """The identity fields of an alarm record, as keyword arguments for another record."""
    return {name: getattr(alarm, name) for name in IDENTITY_FIELDS}


@dataclass(frozen=True, slots=True)
class AlarmTransition(AlarmIdentity):
    """One change of one alarm's state: stored once (AlarmEvent) and published once (bus)."""

    from_state: AlarmState
    to_state: AlarmState
    at: float  # Unix seconds UTC
    actor: str | None  # None when the engine made the transition
    value: float | None
    message: str
    reason: str | None
    condition_active: bool
    shelved_until: float | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.at, tz=timezone.utc)

    def event_fields(self) -> dict[str, Any]:
        """Column values for the notebook's AlarmEvent table (batch_id is the caller's)."""
        message = self.message if not self.reason else f"{self.message} [{self.reason}]"
        return {
            "reactor": self.reactor,
            "rule": f"{self.rule}/{self.condition}",
            "priority": self.priority.value,
            "state": self.to_state.value,
            "channel": self.channel,
            "value": self.value,
            "message": message,
            "occurred_at": self.occurred_at,
            "actor": self.actor,
        }

    @classmethod
    def from_payload(cls, data: Any, *, now: float | None = None) -> AlarmTransition:
        """Rebuild a transition from its bus payload (dict, JSON text or bytes).

        AlarmPayloadError names the field that is wrong (see ``payloads``).
        """
        from bptwin.twin.alarms.payloads import transition_from_payload

        return transition_from_payload(data, now=now)


@dataclass(frozen=True, slots=True)
class AlarmView(AlarmIdentity):
    """The current picture of one alarm (immutable snapshot for the UI)."""

    state: AlarmState
    condition_active: bool
    raised_at: float | None  # the latest onset of the condition
    changed_at: float
    value: float | None
    message: str
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    shelved_until: float | None = None

    @property
    def unacknowledged(self) -> bool:
        return self.state in UNACKNOWLEDGED

    @property
    def annunciated(self) -> bool:
        """Shown to the operator as an alarm (active or waiting for acknowledgement)."""
        return self.state in ANNUNCIATED


@dataclass(frozen=True, slots=True)
class AlarmCounts:
    """Counts for the status strip and metrics; ``by_priority`` counts annunciated alarms."""

    by_state: Mapping[str, int]
    by_priority: Mapping[str, int]
    unacknowledged: int
    critical_unacknowledged: int
