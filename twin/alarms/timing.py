"""Which readings the alarm engine takes, and in what order: the engine's clock.

Rules with delays and windows run forward in time only, so a reading older than the last one of
its channel is discarded (``late``). What must never happen is that one reading stamped in the
future makes every later real reading look late and silences the channel. So:

* with a station clock (``clock``), a reading stamped more than ``max_ahead_s`` past it is
  refused (``ahead_of_clock``, a clock fault) and never becomes the channel's last reading;
* without one (a replay or test that drives time by its readings), the engine's time is the
  latest ``evaluate(now)`` or the newest reading taken, whichever is later, and a reading that
  jumps more than ``max_ahead_s`` past it is held until the channel's next reading decides:
  taken if that one carries on from it (a gap in the stream), discarded as ``ahead_of_clock``
  if that one is older (a stamp from the future), or taken once the told time reaches it.

Every discard is counted by reason (``ReadingClock.discarded``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

DEFAULT_MAX_AHEAD_S = 5.0

DISCARD_LATE = "late"  # older than the last reading of its channel
DISCARD_AHEAD = "ahead_of_clock"  # stamped past the station clock (a clock fault)
DISCARD_UNTIMED = "untimed"  # no finite time
DISCARD_REASONS = (DISCARD_LATE, DISCARD_AHEAD, DISCARD_UNTIMED)


class Stamped(NamedTuple):
    """One value for the evaluators: a reading, or a derived value of the 30 s state."""

    reactor: str
    source: str
    at: float
    value: float
    usable: bool


class Admission(NamedTuple):
    """What one offered value led to: the values to evaluate, oldest first, and a value
    discarded as ahead of the clock (for the clock-fault rule) with the clock's time then."""

    taken: tuple[Stamped, ...]
    ahead: Stamped | None = None
    now: float = -math.inf


NOTHING = Admission(())


class ReadingClock:
    """The engine's notion of now, and the gate every reading passes (not thread-safe: the
    engine calls it under its lock)."""

    def __init__(
        self, clock: Callable[[], float] | None = None, max_ahead_s: float = DEFAULT_MAX_AHEAD_S
    ) -> None:
        if not (math.isfinite(max_ahead_s) and max_ahead_s >= 0):
            raise ValueError(f"max_ahead_s must be a finite number >= 0, got {max_ahead_s!r}")
        self.clock = clock
        self.max_ahead_s = max_ahead_s
        self.told = -math.inf  # the latest evaluate(now)
        self.newest = -math.inf  # the newest value taken
        self.discarded: dict[str, int] = dict.fromkeys(DISCARD_REASONS, 0)
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], Stamped] = {}

    def now(self) -> float:
        """The station clock, else the stream's own time; -inf before anything is known."""
        if self.clock is not None:
            return self.clock()
        return self.told if self.told > self.newest else self.newest

    def tell(self, now: float) -> tuple[Stamped, ...]:
        """The engine was told the time; returns held values whose time has come."""
        if now > self.told:
            self.told = now  # time never runs backwards
        if not self._held:
            return ()
        due = [held for held in self._held.values() if held.at <= self.told + self.max_ahead_s]
        taken: list[Stamped] = []
        for held in sorted(due, key=lambda item: item.at):
            del self._held[(held.reactor, held.source)]
            if self._take(held):
                taken.append(held)
        return tuple(taken)

    def offer(
        self, reactor: str, source: str, at: float, value: float, usable: bool
    ) -> Admission | None:
        """None: evaluate the value now (the path of nearly every reading); else what to
        evaluate instead, and what was discarded as ahead of the clock."""
        if at != at or at in (math.inf, -math.inf):  # NaN or infinite (isfinite, inlined)
            self.discarded[DISCARD_UNTIMED] += 1
            return NOTHING
        if self._held:
            return self._offer_beside_held(Stamped(reactor, source, at, value, usable))
        if self.clock is not None:
            now = self.clock()
        else:
            now = self.told if self.told > self.newest else self.newest
        if at > now + self.max_ahead_s and now != -math.inf:  # nothing known yet: take it
            item = Stamped(reactor, source, at, value, usable)
            if self.clock is not None:
                self.discarded[DISCARD_AHEAD] += 1
                return Admission((), item, now)
            self._held[(reactor, source)] = item
            return NOTHING
        # _take, inlined: this is the path of every reading.
        key = (reactor, source)
        last = self._last.get(key)
        if last is not None and at < last:
            self.discarded[DISCARD_LATE] += 1
            return NOTHING
        self._last[key] = at
        if at > self.newest:
            self.newest = at
        return None

    def _offer_beside_held(self, item: Stamped) -> Admission:
        """The slow path while some channel has a reading held (a jump in a clockless stream)."""
        key = (item.reactor, item.source)
        taken: list[Stamped] = []
        discarded: Stamped | None = None
        held = self._held.pop(key, None)
        if held is not None:
            if item.at >= held.at:
                if self._take(held):  # the stream really moved on: a gap, not a fault
                    taken.append(held)
            else:
                self.discarded[DISCARD_AHEAD] += 1
                discarded = held
        now = self.now()
        if item.at > now + self.max_ahead_s and now != -math.inf:
            self._held[key] = item
        elif self._take(item):
            taken.append(item)
        return Admission(tuple(taken), discarded, now)

    def _take(self, item: Stamped) -> bool:
        key = (item.reactor, item.source)
        last = self._last.get(key)
        if last is not None and item.at < last:
            self.discarded[DISCARD_LATE] += 1
            return False
        self._last[key] = item.at
        if item.at > self.newest:
            self.newest = item.at
        return True
