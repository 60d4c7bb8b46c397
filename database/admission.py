"""Admission: which readings may enter the station, and a counted reason for every other one.

Every reading passes here before the store, the trends or the alarm engine see it, whether a
driver of this station made it or it arrived on the bus. It is admitted only when

- its reactor is one of the station's and its channel is in the catalogue (``R99``, a
  full-width ``Ｒ1`` or a Cyrillic look-alike of ``ph`` never become series of their own);
- its unit holds no control or format character (an escape sequence for the terminal);
- the source it came from owns that channel of that reactor (database/../drivers/sources.py):
  a bus reading for a channel a local driver reads is dropped as ``acquired_locally``;
- it is not more than ``max_clock_skew_s`` ahead of the station clock (a clock fault: one
  reading stamped tomorrow would otherwise make every real reading look out of order), and not
  older than ``history_horizon_s`` unless its source stamps with the station's clock (a
  simulated or replayed batch, re-based to now): nobody fills in the past of a batch.

Discards are counted per origin and reason (:meth:`Admission.stats`), so the status strip and
``/metrics`` can show them. Clock faults are also tracked per origin and reactor: one that goes
on for ``clock_fault_after_s`` is *persistent* (:meth:`Admission.clock_faults`), and
``on_clock_fault`` is called once when it becomes so (e.g. to raise an alarm).

:meth:`Admission.topic_gate` applies the checks a topic alone allows (reactor, channel, shape,
owner) before a bus message is queued or decoded, so a flood for an unknown reactor costs a
counter, not a decode, a series or a place in the queue of the real readings.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading

BUS_ORIGIN = "bus"  # readings that arrive on bptwin's own topics
DEFAULT_MAX_CLOCK_SKEW_S = 5.0
DEFAULT_HISTORY_HORIZON_S = 2 * 3600.0
DEFAULT_CLOCK_FAULT_AFTER_S = 30.0
SENSORS = "sensors"


class Discard(str, Enum):
    """Why a reading was not admitted (the label in counters and ``/metrics``)."""

    CLOCK_AHEAD = "clock_ahead"
    TOO_OLD = "too_old"
    UNKNOWN_REACTOR = "unknown_reactor"
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_UNIT = "bad_unit"
    BAD_TOPIC = "bad_topic"
    ACQUIRED_LOCALLY = "acquired_locally"
    OTHER_SOURCE = "other_source"
    NO_SOURCE = "no_source"


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """What the station accepts: its reactors, who owns which channel, and the clock limits."""

    reactors: frozenset[str]
    owners: Mapping[tuple[str, str], str]  # (reactor, channel) -> source name
    bus_sources: frozenset[str] = frozenset()  # sources whose readings come over the bus
    station_clock_sources: frozenset[str] = frozenset()  # re-based: exempt from the horizon
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    history_horizon_s: float = DEFAULT_HISTORY_HORIZON_S
    clock_fault_after_s: float = DEFAULT_CLOCK_FAULT_AFTER_S

    def __post_init__(self) -> None:
        if not self.max_clock_skew_s >= 0:
            raise ValueError(f"max_clock_skew_s must be >= 0, got {self.max_clock_skew_s!r}")
        if not self.history_horizon_s > 0:
            raise ValueError(f"history_horizon_s must be > 0, got {self.history_horizon_s!r}")
        if not self.clock_fault_after_s >= 0:
            raise ValueError(f"clock_fault_after_s must be >= 0, got {self.clock_fault_after_s!r}")


@dataclass(frozen=True, slots=True)
class ClockFault:
    """Readings of one origin and reactor stamped ahead of the station clock."""

    origin: str
    reactor: str
    first_at: float  # station clock at the first reading of this fault
    last_at: float  # ... and at the latest
    count: int
    worst_ahead_s: float
    persistent: bool

    def describe(self) -> str:
        return (
            f"clock fault: {self.count} readings of {self.reactor} from {self.origin} "
            f"stamped up to {self.worst_ahead_s:.0f} s ahead of the station clock"
        )


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    """A snapshot of the counters since start."""

    admitted: int = 0
    discarded: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (origin, reason)
    echoes: int = 0  # the station's own readings back from the in-process bus, skipped

    @property
    def discarded_total(self) -> int:
        return sum(self.discarded.values())

    def by_reason(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_origin, reason), count in self.discarded.items():
            totals[reason] += count
        return dict(totals)


class Admission:
    """Checks readings against an :class:`AdmissionPolicy`; thread-safe; cheap per reading."""

    def __init__(
        self,
        policy: AdmissionPolicy,
        *,
        clock: Callable[[], float] = time.time,
        on_clock_fault: Callable[[ClockFault], None] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_clock_fault = on_clock_fault
        self._lock = threading.Lock()
        self._admitted = 0
        self._echoes = 0
        self._discarded: Counter[tuple[str, str]] = Counter()
        self._faults: dict[tuple[str, str], ClockFault] = {}
        self._units_ok: dict[tuple[str, str], bool] = {}

    # -- the checks ----------------------------------------------------------------------------

    def admit(self, reading: Reading, origin: str) -> Discard | None:
        """None when ``reading`` from ``origin`` may enter; else the counted reason why not.

        ``origin`` is the name of the local source that made the reading, or ``BUS_ORIGIN``.
        """
        reason = self._check(reading, origin)
        with self._lock:
            if reason is None:
                self._admitted += 1
            else:
                self._discarded[(origin, reason.value)] += 1
        return reason

    def _check(self, reading: Reading, origin: str) -> Discard | None:
        policy = self.policy
        if reading.reactor not in policy.reactors:
            return Discard.UNKNOWN_REACTOR
        channel = reading.channel
        if channel not in CHANNELS_BY_NAME:
            return Discard.UNKNOWN_CHANNEL
        if not self._unit_ok(channel, reading.unit):
            return Discard.BAD_UNIT
        owner = policy.owners.get((reading.reactor, channel))
        if owner is None:
            return Discard.NO_SOURCE
        if origin == BUS_ORIGIN:
            if owner not in policy.bus_sources:
                return Discard.ACQUIRED_LOCALLY
        elif owner != origin:
            return Discard.OTHER_SOURCE
        now = self._clock()
        ahead = reading.timestamp - now
        if ahead > policy.max_clock_skew_s:
            self._clock_fault(origin, reading.reactor, now, ahead)
            return Discard.CLOCK_AHEAD
        if -ahead > policy.history_horizon_s and origin not in policy.station_clock_sources:
            return Discard.TOO_OLD
        return None

    def _unit_ok(self, channel: str, unit: str) -> bool:
        key = (channel, unit)
        known = self._units_ok.get(key)
        if known is None:
            known = unit_problem(channel, unit) is None
            if len(self._units_ok) < 4096:  # a flood of odd units must not grow the cache
                self._units_ok[key] = known
        return known

    def topic_gate(self, prefix: str, *, echo_expected: bool = False) -> Callable[[str], bool]:
        """A bus gate for ``<prefix>/v1/+/sensors/#``: False refuses the message (counted).

        Checks what the topic alone says, before the payload is decoded or even queued:
        its shape, the reactor, and for a single-reading topic the channel and its owner.
        ``echo_expected``: the bus brings back the station's own readings (the in-process
        bus); those on locally owned channels are skipped and counted as echoes, not discards.
        """
        levels = len(prefix.split("/"))

        def gate(topic: str) -> bool:
            reason = self.topic_problem(topic, levels)
            if reason is None:
                return True
            with self._lock:
                if echo_expected and reason is Discard.ACQUIRED_LOCALLY:
                    self._echoes += 1
                else:
                    self._discarded[(BUS_ORIGIN, reason.value)] += 1
            return False

        return gate

    def foreign_gate(self, prefix: str) -> Callable[[str], bool]:
        """A gate that counts readings for reactors (or topics) this station does not have.

        Refuses every message: topics of the station's own reactors are left uncounted (its
        main subscription sees them), the others are counted under their reason.
        """
        levels = len(prefix.split("/"))

        def gate(topic: str) -> bool:
            parts = topic.split("/")[levels:]
            if len(parts) >= 2 and parts[1] in self.policy.reactors:
                return False
            reason = self.topic_problem(topic, levels) or Discard.BAD_TOPIC
            with self._lock:
                self._discarded[(BUS_ORIGIN, reason.value)] += 1
            return False

        return gate

    def topic_problem(self, topic: str, prefix_levels: int) -> Discard | None:
        parts = topic.split("/")[prefix_levels:]
        # v1/<reactor>/sensors or v1/<reactor>/sensors/<channel>; nothing more, nothing less.
        if len(parts) not in (3, 4) or parts[2] != SENSORS:
            return Discard.BAD_TOPIC
        reactor = parts[1]
        if reactor not in self.policy.reactors:
            return Discard.UNKNOWN_REACTOR
        if len(parts) == 3:
            return None  # a snapshot: its channels are checked one by one once decoded
        channel = parts[3]
        if channel not in CHANNELS_BY_NAME:
            return Discard.UNKNOWN_CHANNEL
        owner = self.policy.owners.get((reactor, channel))
        if owner is None:
            return Discard.NO_SOURCE
        if owner not in self.policy.bus_sources:
            return Discard.ACQUIRED_LOCALLY
        return None

    # -- clock faults --------------------------------------------------------------------------

    def _clock_fault(self, origin: str, reactor: str, now: float, ahead: float) -> None:
        after = self.policy.clock_fault_after_s
        key = (origin, reactor)
        with self._lock:
            fault = self._faults.get(key)
            if fault is None or now - fault.last_at > after:  # a new fault after a quiet spell
                fault = ClockFault(origin, reactor, now, now, 0, 0.0, False)
            became_persistent = not fault.persistent and now - fault.first_at >= after
            fault = ClockFault(
                origin,
                reactor,
                fault.first_at,
                now,
                fault.count + 1,
                max(fault.worst_ahead_s, ahead),
                fault.persistent or became_persistent,
            )
            self._faults[key] = fault
        if became_persistent and self._on_clock_fault is not None:
            try:
                self._on_clock_fault(fault)
            except Exception:  # the listener's problem must not stop admission
                import logging

                logging.getLogger(__name__).exception("clock fault listener failed")

    def clock_faults(self) -> tuple[ClockFault, ...]:
        """Clock faults seen within the last ``clock_fault_after_s`` (persistent or not yet)."""
        now = self._clock()
        after = self.policy.clock_fault_after_s
        with self._lock:
            for key in [k for k, f in self._faults.items() if now - f.last_at > max(after, 1.0)]:
                del self._faults[key]
            return tuple(self._faults.values())

    # -- reading out ---------------------------------------------------------------------------

    def stats(self) -> AdmissionStats:
        with self._lock:
            return AdmissionStats(self._admitted, dict(self._discarded), self._echoes)

    def problems(self) -> list[str]:
        """What an operator should see now: clock faults, then the discards by reason."""
        lines = [fault.describe() for fault in self.clock_faults()]
        by_reason = self.stats().by_reason()
        if by_reason:
            shown = ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items()))
            lines.append(f"readings discarded: {sum(by_reason.values())} ({shown})")
        return lines


def unit_problem(channel: str, unit: str) -> str | None:
    """Why ``unit`` cannot be stored (control or format characters that could attack a terminal).

    Other text is data: stored and shown as sent (docs/mqtt.md says which unit each channel
    is read in; bptwin does not convert units).
    """
    bad = [c for c in unit if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    if bad:
        return f"unit {unit!r} of {channel} holds control or format characters {bad!r}"
    return None
