"""The alarm engine: rules in, ISA-18.2 alarm transitions out (pure domain code).

:class:`AlarmEngine` is fed readings, derived values (30 s
:class:`~bptwin.twin.features.ProcessState`), offline samples and events, and told the time by
its ``clock`` or :meth:`AlarmEngine.evaluate` (no wall clock inside, so tests and replays
control time). Readings pass the engine's clock first (:mod:`.timing`); the rules' evaluators
(:mod:`.evaluators`) turn them into condition changes; the engine applies each change to its
alarm and returns every change of state as an immutable
:class:`~bptwin.twin.alarms.model.AlarmTransition`, which the caller stores and publishes
exactly once. State machine, rule types and bus payload: ``docs/alarms.md``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bptwin.database.reading import Quality, Reading
from bptwin.twin.alarm_rules import (
    EVENT_GLYCEROL_DEPLETED,
    EVENT_IMPOSSIBLE_VALUE,
    AlarmConfigError,
    EventRule,
    FrozenRule,
    LimitRule,
    Priority,
    RateOfChangeRule,
    Rule,
    StaleRule,
)
from bptwin.twin.alarms.board import AlarmBoard
from bptwin.twin.alarms.evaluators import (
    ClockWatch,
    ConditionChange,
    DisagreementEvaluator,
    Evaluator,
    EventEvaluator,
    StaleWatch,
    evaluator_for,
)
from bptwin.twin.alarms.model import (
    ALLOWED_TRANSITIONS,
    LIVE,
    REASON_CONDITION,
    REASON_RETURNED,
    REASON_RETURNED_TO_SERVICE,
    REASON_SHELVE_EXPIRED,
    REASON_UNSHELVED,
    AlarmActionError,
    AlarmCounts,
    AlarmIdentity,
    AlarmState,
    AlarmTransition,
    AlarmView,
    alarm_id_of,
    identity_of,
)
from bptwin.twin.alarms.timing import (
    DEFAULT_MAX_AHEAD_S,
    DISCARD_AHEAD,
    DISCARD_LATE,
    DISCARD_UNTIMED,
    Admission,
    ReadingClock,
)
from bptwin.twin.cleaning import CleaningEvent
from bptwin.twin.features import ProcessState

DEFAULT_MAX_SHELVE_S = 24 * 3600.0
MAX_ACTOR_LENGTH = 64  # the notebook's name columns
MAX_REASON_LENGTH = 500

_S = AlarmState
Out = list[AlarmTransition]


@dataclass(slots=True)
class _Alarm:
    """The engine's mutable record of one alarm (never handed out)."""

    identity: AlarmIdentity
    state: AlarmState = _S.NORMAL
    condition_active: bool = False
    value: float | None = None
    message: str = ""
    shelved_until: float | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What the engine took and made; ``discarded`` counts refused input by reason
    (``late``, ``ahead_of_clock``, ``untimed``: see :mod:`.timing`)."""

    readings: int
    unusable: int
    transitions: int
    discarded: Mapping[str, int]

    @property
    def late(self) -> int:
        return self.discarded.get(DISCARD_LATE, 0)

    @property
    def ahead_of_clock(self) -> int:
        """Readings, samples and events stamped past the station clock (clock faults)."""
        return self.discarded.get(DISCARD_AHEAD, 0)

    @property
    def untimed(self) -> int:
        return self.discarded.get(DISCARD_UNTIMED, 0)


class AlarmEngine:
    """Evaluates rules and keeps every alarm's ISA-18.2 state. Thread-safe (one lock).

    ``clock`` is the station clock: the time of operator actions given no ``at``, and the
    reference that readings may not run ahead of by more than ``max_ahead_s``. Without it the
    engine's time is the latest it was told (:meth:`evaluate`) or the newest reading it took.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], float] | None = None,
        max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
        max_ahead_s: float = DEFAULT_MAX_AHEAD_S,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise AlarmConfigError(f"alarm rule names must be unique: {', '.join(duplicates)}")
        self._clock = clock
        self._time = ReadingClock(clock, max_ahead_s)
        self._max_shelve_s = max_shelve_s
        self._lock = threading.RLock()
        self._alarms: dict[str, _Alarm] = {}
        self._board = AlarmBoard(ignore_older=False)
        self._latest = -math.inf  # the latest time seen: action time without a clock
        self._readings = self._unusable = self._transitions = 0
        self._evaluators: dict[str, Evaluator[Rule]] = {}
        # source (channel or derived value) -> evaluators fed by its values
        self._by_source: dict[str, list[Evaluator[Rule]]] = {}
        self._stale: list[StaleWatch] = []
        self._clock_watch: list[ClockWatch] = []
        self._clock_faults = False  # a clock watch tracks a channel that was ahead
        self._samples: list[DisagreementEvaluator] = []
        self._events: list[EventEvaluator] = []
        for rule in self.rules:
            self._register(evaluator_for(rule))

    def _register(self, evaluator: Evaluator[Rule]) -> None:
        rule = evaluator.rule
        self._evaluators[rule.name] = evaluator
        if isinstance(evaluator, ClockWatch):
            self._clock_watch.append(evaluator)
        elif isinstance(evaluator, DisagreementEvaluator):
            self._samples.append(evaluator)
        elif isinstance(evaluator, EventEvaluator):
            self._events.append(evaluator)
        else:
            if isinstance(evaluator, StaleWatch):
                self._stale.append(evaluator)
            sources = rule.channels if isinstance(rule, (StaleRule, FrozenRule)) else ()
            if isinstance(rule, (LimitRule, RateOfChangeRule)):
                sources = (rule.source,)
            for source in sources:
                self._by_source.setdefault(source, []).append(evaluator)

    # ---- inputs -----------------------------------------------------------------------------

    def feed(self, reading: Reading) -> tuple[AlarmTransition, ...]:
        """Evaluate the rules watching ``reading.channel``."""
        usable = reading.quality is not Quality.BAD
        return self._offer(
            reading.reactor, reading.channel, reading.timestamp, reading.value, usable
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
        return self._offer(reactor, name, timestamp, value, True)

    def feed_state(self, state: ProcessState) -> tuple[AlarmTransition, ...]:
        """The 30 s process state: derived-value rules and the glycerol-depletion event."""
        out: list[AlarmTransition] = []
        for name in self._by_source:
            value = getattr(state, name, None)
            if isinstance(value, float):
                out.extend(self._offer(state.reactor, name, state.end, value, True))
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
            if not self._on_time(at):
                return ()
            value = _finite_or_none(value)
            for evaluator in self._events:
                self._apply(evaluator.event(reactor, event, at, channel, value, message), out)
        return tuple(out)

    def feed_sample(
        self, reactor: str, at: float, measured: float, predicted: float
    ) -> tuple[AlarmTransition, ...]:
        """An offline OD600 sample beside the model's prediction for that moment."""
        if not (math.isfinite(measured) and math.isfinite(predicted)):
            return ()
        out: Out = []
        with self._lock:
            if not self._on_time(at):
                return ()
            for evaluator in self._samples:
                self._apply(evaluator.sample(reactor, at, measured, predicted), out)
        return tuple(out)

    def rearm_events(self, reactor: str) -> None:
        """Allow once-only event alarms to fire again (call at the start of a new batch)."""
        with self._lock:
            for evaluator in self._events:
                evaluator.rearm(reactor)

    def evaluate(self, now: float) -> tuple[AlarmTransition, ...]:
        """Time-driven checks: held readings now due, stale sensors, shelves that expired."""
        if not math.isfinite(now):
            raise AlarmActionError(f"time must be finite, got {now!r}")
        out: Out = []
        with self._lock:
            self._see(now)
            for item in self._time.tell(now):
                self._evaluate(*item, out)
            for alarm in self._alarms.values():
                until = alarm.shelved_until
                if alarm.state is _S.SHELVED and until is not None and until <= now:
                    self._reveal(alarm, until, None, REASON_SHELVE_EXPIRED, out)
            for evaluator in self._stale:
                self._apply(evaluator.check(now), out)
        return tuple(out)

    # ---- operator actions -------------------------------------------------------------------

    def acknowledge(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        def step(alarm: _Alarm, moment: float, who: str, out: Out) -> None:
            if alarm.state is _S.ACTIVE_UNACK:
                self._move(alarm, _S.ACTIVE_ACK, moment, who, None, out)
            elif alarm.state is _S.RETURNED_UNACK:
                self._move(alarm, _S.NORMAL, moment, who, None, out)
            else:
                raise AlarmActionError(
                    f"alarm {alarm_id} is {alarm.state.value}: nothing to acknowledge"
                )

        return self._act(alarm_id, actor, at, step)

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

        def step(alarm: _Alarm, moment: float, who: str, out: Out) -> None:
            why = _reason(reason)
            if alarm.state not in LIVE:
                raise AlarmActionError(f"alarm {alarm_id} is {alarm.state.value}: cannot shelve")
            if not math.isfinite(until) or until <= moment:
                raise AlarmActionError("shelve expiry must be in the future")
            if until - moment > self._max_shelve_s:
                raise AlarmActionError(
                    f"shelve expiry must be within {self._max_shelve_s / 3600:g} h"
                )
            alarm.shelved_until = until
            self._move(alarm, _S.SHELVED, moment, who, why, out, shelved_until=until)

        return self._act(alarm_id, actor, at, step)

    def unshelve(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        return self._bring_back(alarm_id, actor, at, _S.SHELVED, REASON_UNSHELVED)

    def remove_from_service(
        self, alarm_id: str, actor: str, reason: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        """Take an alarm out of service (e.g. a sensor under maintenance) until returned."""

        def step(alarm: _Alarm, moment: float, who: str, out: Out) -> None:
            why = _reason(reason)
            if alarm.state is _S.OUT_OF_SERVICE:
                raise AlarmActionError(f"alarm {alarm_id} is already out of service")
            alarm.shelved_until = None
            self._move(alarm, _S.OUT_OF_SERVICE, moment, who, why, out)

        return self._act(alarm_id, actor, at, step)

    def return_to_service(
        self, alarm_id: str, actor: str, *, at: float | None = None
    ) -> tuple[AlarmTransition, ...]:
        return self._bring_back(alarm_id, actor, at, _S.OUT_OF_SERVICE, REASON_RETURNED_TO_SERVICE)

    def _bring_back(
        self, alarm_id: str, actor: str, at: float | None, hidden: AlarmState, reason: str
    ) -> tuple[AlarmTransition, ...]:
        """Unshelve, or return to service: annunciated again if the condition is active."""

        def step(alarm: _Alarm, moment: float, who: str, out: Out) -> None:
            if alarm.state is not hidden:
                where = hidden.value.replace("_", " ")
                raise AlarmActionError(f"alarm {alarm_id} is {alarm.state.value}, not {where}")
            self._reveal(alarm, moment, who, reason, out)

        return self._act(alarm_id, actor, at, step)

    # ---- restart ------------------------------------------------------------------------------

    def restore(self, transitions: Iterable[AlarmTransition]) -> int:
        """Take up the alarms of a previous run (stored or bus transitions, oldest first).

        Emits nothing: each alarm resumes in the state of its last transition, so an
        unacknowledged alarm still waits for its acknowledgement after a restart, a shelve
        still expires, and a once-only event is not raised again. Transitions of rules no
        longer configured are skipped. Returns the number of alarms restored.
        """
        restored: set[str] = set()
        with self._lock:
            for t in transitions:
                evaluator = self._evaluators.get(t.rule)
                if evaluator is None or not _has_condition(evaluator.rule, t.condition):
                    continue
                alarm = self._alarm(evaluator.rule, t.reactor, t.condition, t.channel)
                alarm.state = t.to_state
                alarm.condition_active = t.condition_active
                alarm.value = t.value
                alarm.message = t.message
                evaluator.resume(t.reactor, t.condition, t.condition_active)
                self._clock_faults = any(watch.tracks for watch in self._clock_watch)
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
                self._readings, self._unusable, self._transitions, dict(self._time.discarded)
            )

    def discarded(self) -> dict[str, int]:
        """Input refused since start, by reason (for the status strip and /metrics)."""
        with self._lock:
            return dict(self._time.discarded)

    def now(self) -> float:
        """The engine's time: the station clock, or the stream's (-inf before any)."""
        with self._lock:
            return self._time.now()

    # ---- internals --------------------------------------------------------------------------

    def _offer(
        self, reactor: str, source: str, at: float, value: float, usable: bool
    ) -> tuple[AlarmTransition, ...]:
        watched = source in self._by_source
        if not watched and not self._clock_watch:
            return ()
        usable = usable and math.isfinite(value)
        out: Out = []
        with self._lock:
            self._readings += 1
            admission = self._time.offer(reactor, source, at, value, usable)
            if admission is None:
                if watched or self._clock_faults:  # else only its time mattered
                    self._evaluate(reactor, source, at, value, usable, out)
            else:
                for each in admission.taken:
                    self._evaluate(*each, out)
                if admission.ahead is not None:
                    self._clock_fault(admission, out)
        return tuple(out) if out else ()

    def _evaluate(
        self, reactor: str, source: str, at: float, value: float, usable: bool, out: Out
    ) -> None:
        if at > self._latest:
            self._latest = at
        if not usable:
            self._unusable += 1
        for evaluator in self._by_source.get(source, ()):
            changes = evaluator.feed(reactor, source, at, value, usable)
            if changes:
                self._apply(changes, out)
        if self._clock_faults:  # some channel was ahead: is this one on time again?
            for watch in self._clock_watch:
                changes = watch.feed(reactor, source, at, value, usable)
                if changes:
                    self._apply(changes, out)
            self._clock_faults = any(watch.tracks for watch in self._clock_watch)

    def _clock_fault(self, admission: Admission, out: Out) -> None:
        item = admission.ahead
        assert item is not None
        now = admission.now if math.isfinite(admission.now) else item.at
        for watch in self._clock_watch:
            self._apply(watch.refused(item.reactor, item.source, now, item.at), out)
        self._clock_faults = any(watch.tracks for watch in self._clock_watch)

    def _on_time(self, at: float) -> bool:
        """Events and samples: refused when stamped past the station clock (only with one)."""
        if not math.isfinite(at):
            self._time.discarded[DISCARD_UNTIMED] += 1
            return False
        if self._clock is not None and at > self._clock() + self._time.max_ahead_s:
            self._time.discarded[DISCARD_AHEAD] += 1
            return False
        self._see(at)
        return True

    def _apply(self, changes: Iterable[ConditionChange], out: Out) -> None:
        """Move the alarms whose conditions changed (after the rules' delays)."""
        for change in changes:
            alarm = self._alarm(change.rule, change.reactor, change.condition, change.channel)
            alarm.condition_active = change.active
            alarm.value = change.value
            alarm.message = change.message
            state = alarm.state
            if change.active and state in (_S.NORMAL, _S.RETURNED_UNACK):
                reason = change.reason or REASON_CONDITION
                self._move(alarm, _S.ACTIVE_UNACK, change.at, None, reason, out)
            elif not change.active and state in (_S.ACTIVE_UNACK, _S.ACTIVE_ACK):
                target = _S.RETURNED_UNACK if state is _S.ACTIVE_UNACK else _S.NORMAL
                self._move(alarm, target, change.at, None, change.reason or REASON_RETURNED, out)

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

    def _act(
        self,
        alarm_id: str,
        actor: str,
        at: float | None,
        step: Callable[[_Alarm, float, str, Out], None],
    ) -> tuple[AlarmTransition, ...]:
        """An operator action: a known alarm, a named operator, a time; ``step`` moves it."""
        out: Out = []
        with self._lock:
            alarm = self._known(alarm_id)
            step(alarm, self._moment(at), _actor(actor), out)
        return tuple(out)

    def _known(self, alarm_id: str) -> _Alarm:
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise AlarmActionError(f"unknown alarm {alarm_id!r}")
        return alarm

    def _alarm(self, rule: Rule, reactor: str, condition: str, channel: str | None) -> _Alarm:
        alarm_id = alarm_id_of(reactor, rule.name, condition)
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            priority = priority_of(rule, condition)
            identity = AlarmIdentity(alarm_id, rule.name, reactor, condition, channel, priority)
            alarm = self._alarms[alarm_id] = _Alarm(identity)
        return alarm

    def _reveal(self, alarm: _Alarm, at: float, actor: str | None, reason: str, out: Out) -> None:
        """Out of a shelve or out of service: active_unacknowledged or normal by the condition."""
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
                f"alarm engine bug: {alarm.identity.alarm_id} {pair[0].value} -> {to_state.value}"
            )
        transition = AlarmTransition(
            **identity_of(alarm.identity),
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


def priority_of(rule: Rule, condition: str) -> Priority:
    """The priority of one of a rule's alarms (a limit rule's levels have their own)."""
    if not isinstance(rule, LimitRule):
        return rule.priority
    for level in rule.levels:
        if level.kind.value == condition:
            return level.priority
    raise KeyError(condition)


def _has_condition(rule: Rule, condition: str) -> bool:
    """Whether a restored alarm's condition is one the rule can have."""
    if isinstance(rule, EventRule):
        return True  # the event name, or the channel of impossible_value
    return condition in rule.conditions or not rule.conditions


def _actor(actor: object) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise AlarmActionError("an operator action needs the operator's name (actor)")
    if len(actor.strip()) > MAX_ACTOR_LENGTH:
        raise AlarmActionError(f"the operator's name is longer than {MAX_ACTOR_LENGTH} characters")
    return actor.strip()


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise AlarmActionError("a reason is required")
    if len(reason.strip()) > MAX_REASON_LENGTH:
        raise AlarmActionError(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    return reason.strip()


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
