"""Alarms: rules in, ISA-18.2 alarm transitions out (pure domain code; docs/alarms.md).

Where things are:

* ``model`` — states, allowed transitions, the immutable transition / view / counts records;
* ``payloads`` — a transition's bus payload (JSON), topic, and stored notebook rows;
* ``board`` — the operator's picture of the alarms, rebuilt from transitions (engine, viewer);
* ``timing`` — the engine's clock: which readings it takes, late and future ones counted;
* ``evaluators`` — one per rule, turning readings and events into condition changes;
* ``engine`` — :class:`AlarmEngine`, which applies condition changes and operator actions to
  each alarm's state.

The rules themselves are in :mod:`bptwin.twin.alarm_rules`. Import the public names from here.
"""

from bptwin.twin.alarm_rules import LevelKind, Priority
from bptwin.twin.alarms.board import AlarmBoard
from bptwin.twin.alarms.engine import AlarmEngine, EngineStats
from bptwin.twin.alarms.model import (
    ALLOWED_TRANSITIONS,
    AlarmActionError,
    AlarmCounts,
    AlarmState,
    AlarmTransition,
    AlarmView,
    alarm_id_of,
)
from bptwin.twin.alarms.payloads import (
    AlarmPayloadError,
    alarms_pattern,
    transition_message,
    transition_payload,
    transitions_from_events,
)
from bptwin.twin.alarms.timing import DEFAULT_MAX_AHEAD_S

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_MAX_AHEAD_S",
    "AlarmActionError",
    "AlarmBoard",
    "AlarmCounts",
    "AlarmEngine",
    "AlarmPayloadError",
    "AlarmState",
    "AlarmTransition",
    "AlarmView",
    "EngineStats",
    "LevelKind",
    "Priority",
    "alarm_id_of",
    "alarms_pattern",
    "transition_message",
    "transition_payload",
    "transitions_from_events",
]
