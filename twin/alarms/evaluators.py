"""Rule evaluators: each turns what it is fed into :class:`ConditionChange` items.

An evaluator watches one rule. It keeps the on/off delays and trackers of that rule, and says
when a condition becomes active or returns; it never touches an alarm's state. The engine
applies each change to the alarm (and only there does ISA-18.2 come in).
Stale, frozen and clock-fault rules share :class:`ChannelWatch`: one tracker per channel.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bptwin.twin.alarm_rules import (
    ChannelRule,
    ClockRule,
    EventRule,
    FrozenRule,
    LimitLevel,
    LimitRule,
    ModelDisagreementRule,
    RateOfChangeRule,
    Rule,
    StaleRule,
)
from bptwin.twin.alarms.model import REASON_EVENT

Changes = Sequence["ConditionChange"]
NO_CHANGE: Changes = ()
_R = TypeVar("_R", bound=Rule, covariant=True)


@dataclass(frozen=True, slots=True)
class ConditionChange:
    """A rule's condition became active (``active``) or returned, at ``at``."""

    rule: Rule
    reactor: str
    condition: str
    channel: str | None
    active: bool
    at: float
    value: float | None
    message: str
    reason: str | None = None  # None: the engine's default (condition / returned)


@dataclass(slots=True)
class Delay:
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


class Evaluator(Generic[_R]):
    """One rule's condition tracking; fed under the engine's lock."""

    def __init__(self, rule: _R) -> None:
        self.rule = rule
        self._resumed: dict[tuple[str, str], bool] = {}

    def applies(self, reactor: str) -> bool:
        reactors = self.rule.reactors
        return not reactors or reactor in reactors

    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        """A reading or derived value of a watched source (``usable``: finite, not bad)."""
        return NO_CHANGE

    def check(self, now: float) -> Changes:
        """Time-driven conditions (only the stale rule has any)."""
        return NO_CHANGE

    def resume(self, reactor: str, condition: str, active: bool) -> None:
        """Start the condition from a restored alarm's state instead of inactive."""
        self._resumed[(reactor, condition)] = active
        self._forget(reactor, condition)

    def resumed(self, reactor: str, condition: str) -> bool:
        return self._resumed.get((reactor, condition), False)

    def _forget(self, reactor: str, condition: str) -> None:
        """Drop the tracker of a condition so that it restarts from the resumed state."""

    def _change(
        self,
        reactor: str,
        condition: str,
        channel: str | None,
        active: bool,
        at: float,
        value: float | None,
        message: str,
        reason: str | None = None,
    ) -> ConditionChange:
        return ConditionChange(
            self.rule, reactor, condition, channel, active, at, value, message, reason
        )


_D = TypeVar("_D", bound=LimitRule | RateOfChangeRule, covariant=True)


class DelayedEvaluator(Evaluator[_D]):
    """Conditions with on/off delays, one :class:`Delay` per reactor and condition."""

    def __init__(self, rule: _D) -> None:
        super().__init__(rule)
        self._delays: dict[str, dict[str, Delay]] = {}

    def delays(self, reactor: str) -> dict[str, Delay]:
        """The reactor's delays by condition (made at its first value)."""
        delays = self._delays.get(reactor)
        if delays is None:
            delays = self._delays[reactor] = {
                condition: Delay(self.resumed(reactor, condition))
                for condition in self.rule.conditions
            }
        return delays

    def _forget(self, reactor: str, condition: str) -> None:
        delays = self._delays.get(reactor)
        if delays is not None and condition in delays:
            delays[condition] = Delay(self.resumed(reactor, condition))


class LimitEvaluator(DelayedEvaluator[LimitRule]):
    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        rule = self.rule
        if not usable or (self.rule.reactors and reactor not in self.rule.reactors):
            return NO_CHANGE  # a missing value neither raises nor clears (stale rules watch for it)
        changes: list[ConditionChange] = []
        delays = self._delays.get(reactor) or self.delays(reactor)
        for level in rule.levels:
            condition = level.kind.value
            delay = delays[condition]
            margin = rule.deadband if delay.active else 0.0
            if level.kind.is_high:
                raw = value > level.limit - margin
            else:
                raw = value < level.limit + margin
            changed = delay.update(at, raw, level.on_delay_s, level.off_delay_s)
            if changed is not None:
                text = _limit_text(rule, level, value, changed)
                changes.append(self._change(reactor, condition, source, changed, at, value, text))
        return changes


def _limit_text(rule: LimitRule, level: LimitLevel, value: float, active: bool) -> str:
    sign = ">" if level.kind.is_high else "<"
    label = level.kind.value.replace("_", "-").upper()
    if active:
        held = f" for {level.on_delay_s:g} s" if level.on_delay_s else ""
        return f"{rule.source} {value:.4g} {sign} {level.limit:g} ({label}){held}"
    return f"{rule.source} back to {value:.4g} ({label} {level.limit:g})"


class RateEvaluator(DelayedEvaluator[RateOfChangeRule]):
    def __init__(self, rule: RateOfChangeRule) -> None:
        super().__init__(rule)
        self._history: dict[str, deque[tuple[float, float]]] = {}

    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        rule = self.rule
        if not usable or (self.rule.reactors and reactor not in self.rule.reactors):
            return NO_CHANGE
        history = self._history.setdefault(reactor, deque())
        history.append((at, value))
        while at - history[0][0] > rule.window_s:
            history.popleft()
        first_at, first_value = history[0]
        # Half a window of data at least, so one noisy pair cannot make a rate.
        if at - first_at < rule.window_s / 2:
            return NO_CHANGE
        rate = (value - first_value) / (at - first_at) * 60.0
        changes: list[ConditionChange] = []
        for condition, delay in (self._delays.get(reactor) or self.delays(reactor)).items():
            margin = rule.deadband if delay.active else 0.0
            if condition == "rise":
                limit = rule.max_rise_per_min or 0.0
                raw = rate > limit - margin
            else:
                limit = rule.max_fall_per_min or 0.0
                raw = -rate > limit - margin
            changed = delay.update(at, raw, rule.on_delay_s, rule.off_delay_s)
            if changed is not None:
                text = (
                    f"{source} changing at {rate:+.3g}/min (limit {limit:g}/min over "
                    f"{rule.window_s:g} s)"
                    if changed
                    else f"{source} rate back to {rate:+.3g}/min"
                )
                changes.append(self._change(reactor, condition, source, changed, at, rate, text))
        return changes


# ---- one tracker per channel: stale, frozen, clock fault -----------------------------------


@dataclass(slots=True)
class ChannelTrack:
    """What a per-channel rule remembers of one channel of one reactor."""

    since: float  # stale: last usable reading; frozen: last move; clock: first reading ahead
    seen: float  # the channel's latest reading of any kind
    value: float  # frozen: the value it last moved to
    active: bool = False


_W = TypeVar("_W", bound=ChannelRule, covariant=True)


class ChannelWatch(Evaluator[_W]):
    """One alarm per channel (condition = channel name), raised and returned from a tracker."""

    def __init__(self, rule: _W) -> None:
        super().__init__(rule)
        self.tracks: dict[tuple[str, str], ChannelTrack] = {}

    def track(self, reactor: str, channel: str, at: float, value: float) -> ChannelTrack:
        key = (reactor, channel)
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = ChannelTrack(
                at, at, value, active=self.resumed(reactor, channel)
            )
        return track

    def set_active(
        self,
        track: ChannelTrack,
        reactor: str,
        channel: str,
        active: bool,
        at: float,
        value: float | None,
        message: str,
    ) -> Changes:
        """The change when the tracker's condition flips, nothing when it already is so."""
        if track.active == active:
            return NO_CHANGE
        track.active = active
        return [self._change(reactor, channel, channel, active, at, value, message)]

    def _forget(self, reactor: str, condition: str) -> None:
        self.tracks.pop((reactor, condition), None)


class StaleWatch(ChannelWatch[StaleRule]):
    """No usable value for ``max_age_s``: checked on the engine's time (``check``)."""

    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        if self.rule.reactors and reactor not in self.rule.reactors:
            return NO_CHANGE
        track = self.tracks.get((reactor, source)) or self.track(reactor, source, at, value)
        track.seen = at
        if not usable:
            return NO_CHANGE
        track.since = at
        if not track.active:
            return NO_CHANGE
        return self.set_active(
            track, reactor, source, False, at, value, f"{source} reporting again"
        )

    def check(self, now: float) -> Changes:
        limit = self.rule.max_age_s
        changes: list[ConditionChange] = []
        for (reactor, channel), track in self.tracks.items():
            age = now - track.since
            if track.active or age <= limit:
                continue
            detail = (
                "readings arrive but are bad or NaN" if track.seen > track.since else "no readings"
            )
            text = f"{channel}: no usable value for {age:.0f} s ({detail}; limit {limit:g} s)"
            changes += self.set_active(track, reactor, channel, True, now, None, text)
        return changes


class FrozenWatch(ChannelWatch[FrozenRule]):
    """A value that moves no more than ``epsilon`` for ``duration_s``."""

    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        rule = self.rule
        if not usable or (self.rule.reactors and reactor not in self.rule.reactors):
            return NO_CHANGE
        track = self.tracks.get((reactor, source))
        if track is None:
            self.track(reactor, source, at, value)
            return NO_CHANGE
        if abs(value - track.value) > rule.epsilon:
            track.value, track.since = value, at
            return self.set_active(
                track, reactor, source, False, at, value, f"{source} moving again"
            )
        held = at - track.since
        if held < rule.duration_s:
            return NO_CHANGE
        text = f"{source} stuck at {value:.4g} for {held:.0f} s (change <= {rule.epsilon:g})"
        return self.set_active(track, reactor, source, True, at, value, text)


class ClockWatch(ChannelWatch[ClockRule]):
    """A channel whose readings keep arriving stamped ahead of the station clock.

    ``refused`` is told of each reading the engine refused as ahead; one alone raises nothing
    (it is counted), readings still ahead after ``persist_s`` raise the channel's alarm, and the
    channel's next reading on time returns it.
    """

    def watches(self, channel: str) -> bool:
        return not self.rule.channels or channel in self.rule.channels

    def resume(self, reactor: str, condition: str, active: bool) -> None:
        if active:  # a restored clock fault returns with the channel's next reading on time
            self.tracks[(reactor, condition)] = ChannelTrack(-math.inf, -math.inf, math.nan, True)

    def feed(self, reactor: str, source: str, at: float, value: float, usable: bool) -> Changes:
        """A value on time: its channel's clock fault, if any, returns."""
        track = self.tracks.pop((reactor, source), None)
        if track is None:
            return NO_CHANGE
        text = f"{source} readings on time again"
        return self.set_active(track, reactor, source, False, at, None, text)

    def refused(self, reactor: str, channel: str, now: float, stamped: float) -> Changes:
        if not self.applies(reactor) or not self.watches(channel):
            return NO_CHANGE
        track = self.track(reactor, channel, now, stamped)
        track.seen = now
        if now - track.since < self.rule.persist_s:
            return NO_CHANGE
        text = (
            f"{channel} readings stamped {stamped - now:.0f} s ahead of the station clock for "
            f"{now - track.since:.0f} s (the sensor's or gateway's clock is wrong)"
        )
        return self.set_active(track, reactor, channel, True, now, None, text)


class EventEvaluator(Evaluator[EventRule]):
    """An event raises the alarm and returns it at once, so it waits for an acknowledgement."""

    def __init__(self, rule: EventRule) -> None:
        super().__init__(rule)
        self._fired: set[tuple[str, str]] = set()

    def event(
        self,
        reactor: str,
        event: str,
        at: float,
        channel: str | None,
        value: float | None,
        message: str | None,
    ) -> Changes:
        rule = self.rule
        if rule.event != event or not self.applies(reactor):
            return NO_CHANGE
        condition = channel or event
        if rule.once and (reactor, condition) in self._fired:
            return NO_CHANGE
        self._fired.add((reactor, condition))
        text = message or f"{rule.name}: {event}"
        return [
            self._change(reactor, condition, channel, True, at, value, text, REASON_EVENT),
            self._change(reactor, condition, channel, False, at, value, text, REASON_EVENT),
        ]

    def resume(self, reactor: str, condition: str, active: bool) -> None:
        self._fired.add((reactor, condition))  # a restored event alarm has fired already

    def rearm(self, reactor: str) -> None:
        self._fired = {key for key in self._fired if key[0] != reactor}


class DisagreementEvaluator(Evaluator[ModelDisagreementRule]):
    """An offline OD600 sample against the model's prediction for that moment."""

    def sample(self, reactor: str, at: float, measured: float, predicted: float) -> Changes:
        rule = self.rule
        if not self.applies(reactor) or measured < rule.min_measured or measured <= 0:
            return NO_CHANGE
        percent = abs(predicted - measured) / measured * 100.0
        text = (
            f"offline OD600 {measured:.3g} vs model {predicted:.3g}: "
            f"{percent:.1f} % apart (limit {rule.max_percent:g} %)"
        )
        active = percent > rule.max_percent
        return [self._change(reactor, "od600", None, active, at, percent, text)]


_EVALUATORS: dict[type[Rule], type[Evaluator[Rule]]] = {
    LimitRule: LimitEvaluator,
    RateOfChangeRule: RateEvaluator,
    StaleRule: StaleWatch,
    FrozenRule: FrozenWatch,
    ClockRule: ClockWatch,
    ModelDisagreementRule: DisagreementEvaluator,
    EventRule: EventEvaluator,
}


def evaluator_for(rule: Rule) -> Evaluator[Rule]:
    """The evaluator of a rule."""
    evaluator = _EVALUATORS.get(type(rule))
    if evaluator is None:
        raise TypeError(f"not an alarm rule: {rule!r}")
    return evaluator(rule)
