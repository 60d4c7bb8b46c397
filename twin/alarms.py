"""The alarm engine: rules in, ISA-18.2 alarm transitions out (pure domain code).

:class:`AlarmEngine` is fed readings, derived values (30 s
:class:`~bptwin.twin.features.ProcessState`),
offline samples and events, and told the time by :meth:`AlarmEngine.evaluate` (no wall clock
inside, so tests and replays control time). Every change of an alarm's state is returned as an
immutable :class:`AlarmTransition`; the caller stores and publishes each exactly once.

Alarm identity is ``<reactor>/<rule>/<condition>``: a limit rule's levels (``lo``, ``lo_lo``...)
are separate alarms, stale/frozen rules have one alarm per channel. State machine, rule types
and bus payload: ``docs/alarms.md``.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from bptwin.database.bus.topics import CONTRACT_VERSION, DEFAULT_PREFIX, alarm_topic
from bptwin.database.reading import (
    Quality,
    Reading,
    ReadingError,
    decode_json,
    format_timestamp,
    parse_timestamp,
)
from bptwin.twin.alarm_rules import (
    EVENT_GLYCEROL_DEPLETED,
    EVENT_IMPOSSIBLE_VALUE,
    PRIORITY_RANK,
    AlarmConfigError,
    EventRule,
    FrozenRule,
    LevelKind,
    LimitLevel,
    LimitRule,
    ModelDisagreementRule,
    Priority,
    RateOfChangeRule,
    Rule,
    StaleRule,
)
from bptwin.twin.cleaning import CleaningEvent
from bptwin.twin.features import ProcessState

PAYLOAD_VERSION = 1
DEFAULT_MAX_SHELVE_S = 24 * 3600.0
MAX_ACTOR_LENGTH = 64  # the notebook's name columns
MAX_REASON_LENGTH = 500

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
_LIVE = (_S.NORMAL, _S.ACTIVE_UNACK, _S.ACTIVE_ACK, _S.RETURNED_UNACK)
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
        *((state, _S.SHELVED) for state in _LIVE),
        (_S.SHELVED, _S.NORMAL),  # unshelved (or expired), condition inactive
        (_S.SHELVED, _S.ACTIVE_UNACK),  # unshelved (or expired), condition still active
        *((state, _S.OUT_OF_SERVICE) for state in (*_LIVE, _S.SHELVED)),
        (_S.OUT_OF_SERVICE, _S.NORMAL),
        (_S.OUT_OF_SERVICE, _S.ACTIVE_UNACK),
    }
)


class AlarmActionError(ValueError):
    """An operator action that cannot apply (unknown alarm, wrong state, missing actor...)."""


class AlarmPayloadError(ValueError):
    """A bus payload that is not an alarm transition; the message says which field."""


def alarm_id_of(reactor: str, rule: str, condition: str) -> str:
    return f"{reactor}/{rule}/{condition}"


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """One change of one alarm's state: stored once (AlarmEvent) and published once (bus)."""

    alarm_id: str
    rule: str
    reactor: str
    condition: str
    channel: str | None
    priority: Priority
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
        """Rebuild a transition from :func:`transition_payload` output (or its JSON text)."""
        if isinstance(data, (str, bytes)):
            try:
                data = decode_json(data)
            except ReadingError as exc:
                raise AlarmPayloadError(str(exc)) from exc
        if not isinstance(data, Mapping):
            raise AlarmPayloadError(
                f"alarm payload must be a JSON object, got {type(data).__name__}"
            )
        if data.get("v") != PAYLOAD_VERSION:
            raise AlarmPayloadError(
                f"alarm payload version {data.get('v')!r} is not {PAYLOAD_VERSION}"
            )
        reactor = _text(data, "reactor")
        rule = _text(data, "rule")
        condition = _text(data, "condition")
        alarm_id = _text(data, "alarm_id")
        if alarm_id != alarm_id_of(reactor, rule, condition):
            raise AlarmPayloadError(f"alarm_id {alarm_id!r} does not match reactor/rule/condition")
        at = _time(data, "at", now)
        until = data.get("shelved_until")
        return cls(
            alarm_id=alarm_id,
            rule=rule,
            reactor=reactor,
            condition=condition,
            channel=_text(data, "channel", optional=True),
            priority=_enum(Priority, data, "priority"),
            from_state=_enum(AlarmState, data, "from"),
            to_state=_enum(AlarmState, data, "to"),
            at=at,
            actor=_text(data, "actor", optional=True),
            value=_number(data, "value"),
            message=_text(data, "message", allow_empty=True),
            reason=_text(data, "reason", optional=True),
            condition_active=_flag(data, "condition_active"),
            shelved_until=None if until is None else _time(data, "shelved_until", at + 2 * 86400),
        )


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
    ordered = sorted(rows, key=lambda row: get(row, "occurred_at"))
    for row in ordered:
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
        if state in (_S.SHELVED, _S.OUT_OF_SERVICE):
            condition_active = active.get(alarm_id, False)  # hidden: as it was before
        else:
            condition_active = state in (_S.ACTIVE_UNACK, _S.ACTIVE_ACK)
        out.append(
            AlarmTransition(
                alarm_id=alarm_id,
                rule=rule,
                reactor=reactor,
                condition=condition or rule,
                channel=get(row, "channel"),
                priority=priority,
                from_state=last.get(alarm_id, _S.NORMAL),
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


def transition_message(
    transition: AlarmTransition, prefix: str = DEFAULT_PREFIX
) -> tuple[str, bytes]:
    """Topic and JSON bytes to publish (QoS 1, not retained: a rule's conditions share a topic)."""
    payload = json.dumps(transition_payload(transition), separators=(",", ":"), allow_nan=False)
    return alarm_topic(transition.reactor, transition.rule, prefix), payload.encode()


def alarms_pattern(reactor: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription pattern for the alarm transitions of one reactor (``+``: all)."""
    return f"{prefix}/{CONTRACT_VERSION}/{reactor}/alarms/+"


def _text(data: Mapping[str, Any], key: str, *, optional: bool = False, allow_empty=False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not allow_empty) or len(value) > 2000:
        raise AlarmPayloadError(f"alarm payload field {key!r} must be text, got {value!r:.80}")
    return value


def _enum(enum: type[Enum], data: Mapping[str, Any], key: str) -> Any:
    try:
        return enum(data.get(key))
    except ValueError:
        choices = ", ".join(member.value for member in enum)  # type: ignore[attr-defined]
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


# --------------------------------------------------------------------------------------------
# Views: what the UI and metrics see, rebuilt from transitions alone
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmView:
    """The current picture of one alarm (immutable snapshot for the UI)."""

    alarm_id: str
    rule: str
    reactor: str
    condition: str
    channel: str | None
    priority: Priority
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


def _sort_key(view: AlarmView) -> tuple[int, float]:
    # Most urgent first, newest first within a priority.
    return (PRIORITY_RANK[view.priority], -(view.raised_at or view.changed_at))


def _superseded(t: AlarmTransition, view: AlarmView) -> bool:
    """An older transition, or a redelivered one of the same instant (an event's raise and
    return share their time; a repeated raise must not undo the return)."""
    if t.at != view.changed_at:
        return t.at < view.changed_at
    return t.from_state is not view.state


class AlarmBoard:
    """Alarm views rebuilt from transitions: the engine's snapshot, or a viewer's from the bus."""

    def __init__(self, *, ignore_older: bool = True) -> None:
        # A viewer ignores transitions older than what it shows (bus redelivery); the engine's
        # own board takes every transition in the order made, whatever the clocks say.
        self._ignore_older = ignore_older
        self._views: dict[str, AlarmView] = {}
        self._lock = threading.Lock()

    def apply(self, transition: AlarmTransition) -> AlarmView | None:
        """Update the view of the transition's alarm (the new view, or None if ignored)."""
        t = transition
        with self._lock:
            old = self._views.get(t.alarm_id)
            if old is not None and self._ignore_older and _superseded(t, old):
                return None
            if old is None:
                old = AlarmView(
                    alarm_id=t.alarm_id,
                    rule=t.rule,
                    reactor=t.reactor,
                    condition=t.condition,
                    channel=t.channel,
                    priority=t.priority,
                    state=t.from_state,
                    condition_active=False,
                    raised_at=None,
                    changed_at=t.at,
                    value=t.value,
                    message=t.message,
                )
            view = replace(
                old,
                priority=t.priority,
                state=t.to_state,
                condition_active=t.condition_active,
                changed_at=t.at,
                value=t.value if t.value is not None else old.value,
                message=t.message,
            )
            if t.to_state is _S.ACTIVE_UNACK and not old.condition_active:
                view = replace(view, raised_at=t.at, acknowledged_by=None, acknowledged_at=None)
            if t.to_state is _S.ACTIVE_ACK:
                view = replace(view, acknowledged_by=t.actor, acknowledged_at=t.at)
            if t.to_state is _S.SHELVED:
                view = replace(
                    view, shelved_by=t.actor, shelve_reason=t.reason, shelved_until=t.shelved_until
                )
            elif old.state is _S.SHELVED:
                view = replace(view, shelved_by=None, shelve_reason=None, shelved_until=None)
            self._views[t.alarm_id] = view
            return view

    def get(self, alarm_id: str) -> AlarmView | None:
        with self._lock:
            return self._views.get(alarm_id)

    def active_alarms(self) -> tuple[AlarmView, ...]:
        """Alarms not in normal (annunciated, shelved, out of service), by priority, time."""
        with self._lock:
            views = [v for v in self._views.values() if v.state is not _S.NORMAL]
        return tuple(sorted(views, key=_sort_key))

    def counts(self) -> AlarmCounts:
        with self._lock:
            views = list(self._views.values())
        by_state = {state.value: 0 for state in AlarmState}
        by_priority = {priority.value: 0 for priority in Priority}
        for view in views:
            by_state[view.state.value] += 1
            if view.annunciated:
                by_priority[view.priority.value] += 1
        unacked = [v for v in views if v.unacknowledged]
        return AlarmCounts(
            by_state=by_state,
            by_priority=by_priority,
            unacknowledged=len(unacked),
            critical_unacknowledged=sum(v.priority is Priority.CRITICAL for v in unacked),
        )


# --------------------------------------------------------------------------------------------
# Condition tracking
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Delay:
    """On/off delay: the raw condition must hold for the delay before the state follows."""

    active: bool = False
    since: float | None = None

    def update(self, at: float, raw: bool, on_delay: float, off_delay: float) -> bool | None:
        if raw == self.active:
            self.since = None
            return None
        if self.since is None:
            self.since = at
        if at - self.since >= (on_delay if raw else off_delay):
            self.active = raw
            self.since = None
            return raw
        return None


@dataclass(slots=True)
class _Alarm:
    """The engine's mutable record of one alarm (never handed out)."""

    alarm_id: str
    rule: str
    reactor: str
    condition: str
    channel: str | None
    priority: Priority
    state: AlarmState = _S.NORMAL
    condition_active: bool = False
    value: float | None = None
    message: str = ""
    shelved_until: float | None = None
    fired: bool = False  # event rules with once=True


@dataclass(frozen=True, slots=True)
class EngineStats:
    readings: int
    unusable: int
    out_of_order: int
    transitions: int


Out = list[AlarmTransition]


class AlarmEngine:
    """Evaluates rules and keeps every alarm's ISA-18.2 state. Thread-safe (one lock).

    ``clock`` (optional) supplies the time of operator actions when the caller gives no ``at``;
    without it, the latest time the engine has seen (readings, :meth:`evaluate`) is used.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], float] | None = None,
        max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise AlarmConfigError(f"alarm rule names must be unique: {', '.join(duplicates)}")
        self._clock = clock
        self._max_shelve_s = max_shelve_s
        self._lock = threading.RLock()
        self._alarms: dict[str, _Alarm] = {}
        self._board = AlarmBoard(ignore_older=False)
        self._latest = -math.inf
        self._last_ts: dict[tuple[str, str], float] = {}
        self._readings = self._unusable = self._out_of_order = self._transitions = 0
        # source (channel or derived value) -> evaluators fed by its values
        self._by_source: dict[str, list[_Evaluator]] = {}
        self._stale: list[_StaleEvaluator] = []
        self._disagreement: list[ModelDisagreementRule] = []
        self._events: list[EventRule] = []
        for rule in self.rules:
            self._register(rule)

    def _register(self, rule: Rule) -> None:
        if isinstance(rule, LimitRule):
            self._by_source.setdefault(rule.source, []).append(_LimitEvaluator(self, rule))
        elif isinstance(rule, RateOfChangeRule):
            self._by_source.setdefault(rule.source, []).append(_RateEvaluator(self, rule))
        elif isinstance(rule, StaleRule):
            evaluator = _StaleEvaluator(self, rule)
            self._stale.append(evaluator)
            for channel in rule.channels:
                self._by_source.setdefault(channel, []).append(evaluator)
        elif isinstance(rule, FrozenRule):
            evaluator = _FrozenEvaluator(self, rule)
            for channel in rule.channels:
                self._by_source.setdefault(channel, []).append(evaluator)
        elif isinstance(rule, ModelDisagreementRule):
            self._disagreement.append(rule)
        elif isinstance(rule, EventRule):
            self._events.append(rule)
        else:
            raise TypeError(f"not an alarm rule: {rule!r}")

    # ---- inputs -----------------------------------------------------------------------------

    def feed(self, reading: Reading) -> tuple[AlarmTransition, ...]:
        """Evaluate the rules watching ``reading.channel``."""
        evaluators = self._by_source.get(reading.channel)
        if evaluators is None:
            return ()
        return self._feed(
            reading.reactor,
            reading.channel,
            reading.timestamp,
            reading.value,
            reading.quality is not Quality.BAD,
            evaluators,
        )

    def feed_many(self, readings: Iterable[Reading]) -> tuple[AlarmTransition, ...]:
        out: list[AlarmTransition] = []
        for reading in readings:
            out.extend(self.feed(reading))
        return tuple(out)

    def feed_value(
        self, reactor: str, name: str, timestamp: float, value: float
    ) -> tuple[AlarmTransition, ...]:
        """A derived value (e.g. ``rq``, ``our``) or any channel value without a Reading."""
        evaluators = self._by_source.get(name)
        if evaluators is None:
            return ()
        return self._feed(reactor, name, timestamp, value, True, evaluators)

    def feed_state(self, state: ProcessState) -> tuple[AlarmTransition, ...]:
        """The 30 s process state: derived-value rules and the glycerol-depletion event."""
        out: list[AlarmTransition] = []
        for name, evaluators in self._by_source.items():
            value = getattr(state, name, None)
            if isinstance(value, float):
                out.extend(self._feed(state.reactor, name, state.end, value, True, evaluators))
        if state.depleted:
            at = state.depletion_time if math.isfinite(state.depletion_time) else state.end
            # hours since inoculation at the onset, not at the end of the confirming window
            hours = state.time_since_inoculation_h - (state.end - at) / 3600.0
            out.extend(
                self.feed_event(
                    state.reactor,
                    EVENT_GLYCEROL_DEPLETED,
                    at,
                    message=f"glycerol depleted at {hours:.1f} h: take the depletion sample",
                )
            )
        return tuple(out)

    def feed_cleaning_event(self, event: CleaningEvent) -> tuple[AlarmTransition, ...]:
        """A physically impossible value removed by live cleaning."""
        return self.feed_event(
            event.reactor,
            EVENT_IMPOSSIBLE_VALUE,
            event.timestamp,
            channel=event.channel,
            value=event.value,
            message=event.message,
        )

    def feed_event(
        self,
        reactor: str,
        event: str,
        at: float,
        *,
        channel: str | None = None,
        value: float | None = None,
        message: str | None = None,
    ) -> tuple[AlarmTransition, ...]:
        """An event for the event rules: raised and returned at once, waiting for an ack."""
        out: Out = []
        with self._lock:
            self._see(at)
            for rule in self._events:
                if rule.event != event or not _applies(rule, reactor):
                    continue
                alarm = self._alarm(rule, reactor, channel or event, channel)
                if rule.once and alarm.fired:
                    continue
                alarm.fired = True
                text = message or f"{rule.name}: {event}"
                value = _finite_or_none(value)
                self._condition(alarm, True, at, value, text, out, REASON_EVENT)
                self._condition(alarm, False, at, value, text, out, REASON_EVENT)
        return tuple(out)

    def feed_sample(
        self, reactor: str, at: float, measured: float, predicted: float
    ) -> tuple[AlarmTransition, ...]:
        """An offline OD600 sample beside the model's prediction for that moment."""
        out: Out = []
        if not (math.isfinite(measured) and math.isfinite(predicted)):
            return ()
        with self._lock:
            self._see(at)
            for rule in self._disagreement:
                if not _applies(rule, reactor) or measured < rule.min_measured or measured <= 0:
                    continue
                percent = abs(predicted - measured) / measured * 100.0
                alarm = self._alarm(rule, reactor, "od600", None)
                active = percent > rule.max_percent
                text = (
                    f"offline OD600 {measured:.3g} vs model {predicted:.3g}: "
                    f"{percent:.1f} % apart (limit {rule.max_percent:g} %)"
                )
                self._condition(alarm, active, at, percent, text, out)
        return tuple(out)

    def rearm_events(self, reactor: str) -> None:
        """Allow once-only event alarms to fire again (call at the start of a new batch)."""
        with self._lock:
            for alarm in self._alarms.values():
                if alarm.reactor == reactor:
                    alarm.fired = False

    def evaluate(self, now: float) -> tuple[AlarmTransition, ...]:
        """Time-driven checks: stale sensors and shelves that expired by ``now``."""
        out: Out = []
        with self._lock:
            self._see(now)
            for alarm in self._alarms.values():
                until = alarm.shelved_until
                if alarm.state is _S.SHELVED and until is not None and until <= now:
                    self._unshelve(alarm, until, None, REASON_SHELVE_EXPIRED, out)
            for evaluator in self._stale:
                evaluator.check(now, out)
        return tuple(out)

    # ---- operator actions -------------------------------------------------------------------

    def acknowledge(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            actor = _actor(actor)
            moment = self._moment(at)
            if alarm.state is _S.ACTIVE_UNACK:
                self._move(alarm, _S.ACTIVE_ACK, moment, actor, None, out)
            elif alarm.state is _S.RETURNED_UNACK:
                self._move(alarm, _S.NORMAL, moment, actor, None, out)
            else:
                raise AlarmActionError(
                    f"alarm {alarm_id} is {alarm.state.value}: nothing to acknowledge"
                )
        return tuple(out)

    def shelve(
        self,
        alarm_id: str,
        actor: str,
        reason: str,
        until: float,
        *,
        at: float | None = None,
    ) -> tuple[AlarmTransition, ...]:
        """Hide an alarm until ``until`` (Unix s); it unshelves itself at expiry."""
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            actor = _actor(actor)
            reason = _reason(reason)
            moment = self._moment(at)
            if alarm.state not in _LIVE:
                raise AlarmActionError(f"alarm {alarm_id} is {alarm.state.value}: cannot shelve")
            if not math.isfinite(until) or until <= moment:
                raise AlarmActionError("shelve expiry must be in the future")
            if until - moment > self._max_shelve_s:
                raise AlarmActionError(
                    f"shelve expiry must be within {self._max_shelve_s / 3600:g} h"
                )
            alarm.shelved_until = until
            self._move(alarm, _S.SHELVED, moment, actor, reason, out, shelved_until=until)
        return tuple(out)

    def unshelve(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            actor = _actor(actor)
            if alarm.state is not _S.SHELVED:
                raise AlarmActionError(f"alarm {alarm_id} is {alarm.state.value}, not shelved")
            self._unshelve(alarm, self._moment(at), actor, REASON_UNSHELVED, out)
        return tuple(out)

    def remove_from_service(
        self, alarm_id: str, actor: str, reason: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        """Take an alarm out of service (e.g. a sensor under maintenance) until returned."""
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            actor = _actor(actor)
            reason = _reason(reason)
            if alarm.state is _S.OUT_OF_SERVICE:
                raise AlarmActionError(f"alarm {alarm_id} is already out of service")
            alarm.shelved_until = None
            self._move(alarm, _S.OUT_OF_SERVICE, self._moment(at), actor, reason, out)
        return tuple(out)

    def return_to_service(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            actor = _actor(actor)
            if alarm.state is not _S.OUT_OF_SERVICE:
                raise AlarmActionError(
                    f"alarm {alarm_id} is {alarm.state.value}, not out of service"
                )
            target = _S.ACTIVE_UNACK if alarm.condition_active else _S.NORMAL
            self._move(alarm, target, self._moment(at), actor, REASON_RETURNED_TO_SERVICE, out)
        return tuple(out)

    # ---- restart ------------------------------------------------------------------------------

    def restore(self, transitions: Iterable[AlarmTransition]) -> int:
        """Take up the alarms of a previous run (stored or bus transitions, oldest first).

        Emits nothing: each alarm resumes in the state of its last transition, so an
        unacknowledged alarm still waits for its acknowledgement after a restart, a shelve
        still expires, and a once-only event is not raised again. Transitions of rules no
        longer configured are skipped. Returns the number of alarms restored.
        """
        rules = {rule.name: rule for rule in self.rules}
        restored: set[str] = set()
        with self._lock:
            for t in transitions:
                rule = rules.get(t.rule)
                if rule is None or t.condition not in _conditions_of(rule, t.condition):
                    continue
                alarm = self._alarm(rule, t.reactor, t.condition, t.channel)
                alarm.state = t.to_state
                alarm.condition_active = t.condition_active
                alarm.value = t.value
                alarm.message = t.message
                alarm.fired = True
                if t.to_state is _S.SHELVED:
                    # Expiry unknown (a record without it): unshelve at the next evaluate(),
                    # the safe side, rather than hide the alarm for ever.
                    alarm.shelved_until = t.at if t.shelved_until is None else t.shelved_until
                elif t.to_state is not _S.OUT_OF_SERVICE:
                    alarm.shelved_until = None
                self._see(t.at)
                self._board.apply(t)
                restored.add(t.alarm_id)
        return len(restored)

    def _was_active(self, reactor: str, rule: str, condition: str) -> bool:
        """Condition state a restored alarm brings to a fresh evaluator (False if none)."""
        alarm = self._alarms.get(alarm_id_of(reactor, rule, condition))
        return alarm is not None and alarm.condition_active

    # ---- snapshots --------------------------------------------------------------------------

    def active_alarms(self) -> tuple[AlarmView, ...]:
        """Every alarm not in normal, most urgent first, newest first within a priority."""
        return self._board.active_alarms()

    def alarm(self, alarm_id: str) -> AlarmView | None:
        return self._board.get(alarm_id)

    def counts(self) -> AlarmCounts:
        return self._board.counts()

    @property
    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                self._readings, self._unusable, self._out_of_order, self._transitions
            )

    # ---- internals --------------------------------------------------------------------------

    def _feed(
        self,
        reactor: str,
        source: str,
        at: float,
        value: float,
        good: bool,
        evaluators: Sequence[_Evaluator],
    ) -> tuple[AlarmTransition, ...]:
        usable = good and math.isfinite(value)
        out: Out = []
        with self._lock:
            self._readings += 1
            if not math.isfinite(at):
                self._out_of_order += 1  # a reading without a usable time cannot be placed
                return ()
            key = (reactor, source)
            last = self._last_ts.get(key)
            if last is not None and at < last:
                # A late reading cannot rewrite the past: delays and windows run forward only.
                self._out_of_order += 1
                return ()
            self._last_ts[key] = at
            if at > self._latest:
                self._latest = at
            if not usable:
                self._unusable += 1
            for evaluator in evaluators:
                evaluator.feed(reactor, source, at, value, usable, out)
        return tuple(out)

    def _see(self, at: float) -> None:
        if not math.isfinite(at):
            raise AlarmActionError(f"time must be finite, got {at!r}")
        if at > self._latest:
            self._latest = at

    def _moment(self, at: float | None) -> float:
        if at is not None:
            if not math.isfinite(at):
                raise AlarmActionError("the time of an action must be finite")
            return at
        if self._clock is not None:
            return self._clock()
        if math.isfinite(self._latest):
            return self._latest
        raise AlarmActionError("no time known yet: pass at=")

    def _known(self, alarm_id: str) -> _Alarm:
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise AlarmActionError(f"unknown alarm {alarm_id!r}")
        return alarm

    def _alarm(self, rule: Rule, reactor: str, condition: str, channel: str | None) -> _Alarm:
        alarm_id = alarm_id_of(reactor, rule.name, condition)
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            priority = rule.priority if not isinstance(rule, LimitRule) else _level(rule, condition)
            alarm = _Alarm(alarm_id, rule.name, reactor, condition, channel, priority)
            self._alarms[alarm_id] = alarm
        return alarm

    def _condition(
        self,
        alarm: _Alarm,
        active: bool,
        at: float,
        value: float | None,
        message: str,
        out: Out,
        reason: str | None = None,
    ) -> None:
        """The alarm's condition changed (after delays); move the state if it is in service."""
        alarm.condition_active = active
        alarm.value = value
        alarm.message = message
        state = alarm.state
        if active and state in (_S.NORMAL, _S.RETURNED_UNACK):
            self._move(alarm, _S.ACTIVE_UNACK, at, None, reason or REASON_CONDITION, out)
        elif not active and state is _S.ACTIVE_UNACK:
            self._move(alarm, _S.RETURNED_UNACK, at, None, reason or REASON_RETURNED, out)
        elif not active and state is _S.ACTIVE_ACK:
            self._move(alarm, _S.NORMAL, at, None, reason or REASON_RETURNED, out)

    def _unshelve(self, alarm: _Alarm, at: float, actor: str | None, reason: str, out: Out) -> None:
        alarm.shelved_until = None
        target = _S.ACTIVE_UNACK if alarm.condition_active else _S.NORMAL
        self._move(alarm, target, at, actor, reason, out)

    def _move(
        self,
        alarm: _Alarm,
        to_state: AlarmState,
        at: float,
        actor: str | None,
        reason: str | None,
        out: Out,
        *,
        shelved_until: float | None = None,
    ) -> None:
        pair = (alarm.state, to_state)
        if pair not in ALLOWED_TRANSITIONS:
            raise RuntimeError(
                f"alarm engine bug: {alarm.alarm_id} {pair[0].value} -> {to_state.value}"
            )
        transition = AlarmTransition(
            alarm_id=alarm.alarm_id,
            rule=alarm.rule,
            reactor=alarm.reactor,
            condition=alarm.condition,
            channel=alarm.channel,
            priority=alarm.priority,
            from_state=alarm.state,
            to_state=to_state,
            at=at,
            actor=actor,
            value=alarm.value,
            message=alarm.message,
            reason=reason,
            condition_active=alarm.condition_active,
            shelved_until=shelved_until,
        )
        alarm.state = to_state
        self._transitions += 1
        self._board.apply(transition)
        out.append(transition)


def _conditions_of(rule: Rule, condition: str) -> tuple[str, ...]:
    """The conditions a rule can have (events and stale/frozen: any channel or event name)."""
    if isinstance(rule, EventRule):
        return (condition,)
    return rule.conditions


def _applies(rule: Rule, reactor: str) -> bool:
    return not rule.reactors or reactor in rule.reactors


def _level(rule: LimitRule, condition: str) -> Priority:
    for level in rule.levels:
        if level.kind.value == condition:
            return level.priority
    raise KeyError(condition)


def _actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise AlarmActionError("an operator action needs the operator's name (actor)")
    if len(actor.strip()) > MAX_ACTOR_LENGTH:
        raise AlarmActionError(f"the operator's name is longer than {MAX_ACTOR_LENGTH} characters")
    return actor.strip()


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise AlarmActionError("a reason is required")
    if len(reason.strip()) > MAX_REASON_LENGTH:
        raise AlarmActionError(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    return reason.strip()


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --------------------------------------------------------------------------------------------
# Rule evaluators (called under the engine lock)
# --------------------------------------------------------------------------------------------


class _Evaluator:
    def feed(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        raise NotImplementedError


class _LimitEvaluator(_Evaluator):
    def __init__(self, engine: AlarmEngine, rule: LimitRule) -> None:
        self.engine = engine
        self.rule = rule
        self.delays: dict[str, list[_Delay]] = {}

    def feed(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        rule = self.rule
        if not usable or (rule.reactors and reactor not in rule.reactors):
            return  # a missing value neither raises nor clears (stale rules watch for it)
        delays = self.delays.get(reactor)
        if delays is None:
            delays = self.delays[reactor] = [
                _Delay(self.engine._was_active(reactor, rule.name, level.kind.value))
                for level in rule.levels
            ]
        deadband = rule.deadband
        for level, delay in zip(rule.levels, delays):  # noqa: B905 (same length by construction)
            if level.kind.is_high:
                raw = value > (level.limit - deadband if delay.active else level.limit)
            else:
                raw = value < (level.limit + deadband if delay.active else level.limit)
            changed = delay.update(at, raw, level.on_delay_s, level.off_delay_s)
            if changed is not None:
                alarm = self.engine._alarm(rule, reactor, level.kind.value, source)
                self.engine._condition(
                    alarm, changed, at, value, _limit_text(rule, level, value, changed), out
                )


def _limit_text(rule: LimitRule, level: LimitLevel, value: float, active: bool) -> str:
    sign = ">" if level.kind.is_high else "<"
    label = level.kind.value.replace("_", "-").upper()
    if active:
        held = f" for {level.on_delay_s:g} s" if level.on_delay_s else ""
        return f"{rule.source} {value:.4g} {sign} {level.limit:g} ({label}){held}"
    return f"{rule.source} back to {value:.4g} ({label} {level.limit:g})"


class _RateEvaluator(_Evaluator):
    def __init__(self, engine: AlarmEngine, rule: RateOfChangeRule) -> None:
        self.engine = engine
        self.rule = rule
        self.history: dict[str, deque[tuple[float, float]]] = {}
        self.delays: dict[str, dict[str, _Delay]] = {}

    def feed(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        rule = self.rule
        if not usable or (rule.reactors and reactor not in rule.reactors):
            return
        history = self.history.get(reactor)
        if history is None:
            history = self.history[reactor] = deque()
            self.delays[reactor] = {
                condition: _Delay(self.engine._was_active(reactor, rule.name, condition))
                for condition in rule.conditions
            }
        history.append((at, value))
        while at - history[0][0] > rule.window_s:
            history.popleft()
        first_at, first_value = history[0]
        # Half a window of data at least, so one noisy pair cannot make a rate.
        if at - first_at < rule.window_s / 2:
            return
        rate = (value - first_value) / (at - first_at) * 60.0
        for condition, delay in self.delays[reactor].items():
            if condition == "rise":
                limit = rule.max_rise_per_min or 0.0
                raw = rate > (limit - rule.deadband if delay.active else limit)
            else:
                limit = rule.max_fall_per_min or 0.0
                raw = -rate > (limit - rule.deadband if delay.active else limit)
            changed = delay.update(at, raw, rule.on_delay_s, rule.off_delay_s)
            if changed is not None:
                alarm = self.engine._alarm(rule, reactor, condition, source)
                text = (
                    f"{source} changing at {rate:+.3g}/min (limit {limit:g}/min over "
                    f"{rule.window_s:g} s)"
                    if changed
                    else f"{source} rate back to {rate:+.3g}/min"
                )
                self.engine._condition(alarm, changed, at, rate, text, out)


@dataclass(slots=True)
class _StaleTrack:
    first_seen: float
    last_seen: float
    last_usable: float | None = None
    active: bool = False


class _StaleEvaluator(_Evaluator):
    def __init__(self, engine: AlarmEngine, rule: StaleRule) -> None:
        self.engine = engine
        self.rule = rule
        self.tracks: dict[tuple[str, str], _StaleTrack] = {}

    def feed(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        if self.rule.reactors and reactor not in self.rule.reactors:
            return
        track = self.tracks.get((reactor, source))
        if track is None:
            active = self.engine._was_active(reactor, self.rule.name, source)
            track = self.tracks[(reactor, source)] = _StaleTrack(at, at, active=active)
        track.last_seen = at
        if usable:
            track.last_usable = at
            if track.active:
                track.active = False
                alarm = self.engine._alarm(self.rule, reactor, source, source)
                self.engine._condition(alarm, False, at, value, f"{source} reporting again", out)

    def check(self, now: float, out: Out) -> None:
        rule = self.rule
        for (reactor, channel), track in self.tracks.items():
            reference = track.last_usable if track.last_usable is not None else track.first_seen
            age = now - reference
            if track.active or age <= rule.max_age_s:
                continue
            track.active = True
            if track.last_seen > reference:
                detail = "readings arrive but are bad or NaN"
            else:
                detail = "no readings"
            text = (
                f"{channel}: no usable value for {age:.0f} s ({detail}; limit {rule.max_age_s:g} s)"
            )
            alarm = self.engine._alarm(rule, reactor, channel, channel)
            self.engine._condition(alarm, True, now, None, text, out)


@dataclass(slots=True)
class _FrozenTrack:
    reference: float
    since: float
    active: bool = False


class _FrozenEvaluator(_Evaluator):
    def __init__(self, engine: AlarmEngine, rule: FrozenRule) -> None:
        self.engine = engine
        self.rule = rule
        self.tracks: dict[tuple[str, str], _FrozenTrack] = {}

    def feed(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        rule = self.rule
        if not usable or (rule.reactors and reactor not in rule.reactors):
            return
        track = self.tracks.get((reactor, source))
        if track is None:
            active = self.engine._was_active(reactor, rule.name, source)
            self.tracks[(reactor, source)] = _FrozenTrack(value, at, active=active)
            return
        if abs(value - track.reference) > rule.epsilon:
            track.reference = value
            track.since = at
            if track.active:
                track.active = False
                alarm = self.engine._alarm(rule, reactor, source, source)
                self.engine._condition(alarm, False, at, value, f"{source} moving again", out)
        elif not track.active and at - track.since >= rule.duration_s:
            track.active = True
            alarm = self.engine._alarm(rule, reactor, source, source)
            text = (
                f"{source} stuck at {value:.4g} for {at - track.since:.0f} s "
                f"(change <= {rule.epsilon:g})"
            )
            self.engine._condition(alarm, True, at, value, text, out)


__all__ = [
    "ALLOWED_TRANSITIONS",
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
