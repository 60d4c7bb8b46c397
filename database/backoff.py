"""One exponential back-off with jitter for the retry loops of the drivers, bus and stores.

A link that is down (a broker, a serial port, InfluxDB) is retried after ``initial_s``, then
twice as long each time up to ``max_s``; each wait is shortened by a random part of up to
``jitter`` of itself, so that several clients that lost the same server do not come back in
lock-step. Loops wait on their stop event, never ``time.sleep``, so stopping stays instant::

    backoff = Backoff(0.5, 30.0)
    while not stop.is_set():
        try:
            connect()
        except OSError:
            if backoff.wait(stop):
                return  # asked to stop
            continue
        backoff.reset()
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable


class Backoff:
    """Growing, jittered waits between retries; :meth:`reset` after a success."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not (math.isfinite(initial_s) and initial_s > 0):
            raise ValueError(f"initial_s must be a positive number of seconds, got {initial_s!r}")
        if not (math.isfinite(max_s) and max_s >= initial_s):
            raise ValueError(f"max_s must be at least initial_s ({initial_s}), got {max_s!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._base = initial_s
        self.attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt (and the one after grows)."""
        base = self._base
        self._base = min(self._base * self.factor, self.max_s)
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng())

    def wait(self, stop: threading.Event) -> bool:
        """Wait the next delay unless ``stop`` is set meanwhile; True when asked to stop."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        """After a success: the next failure waits ``initial_s`` again."""
        self._base = self.initial_s
        self.attempts = 0
