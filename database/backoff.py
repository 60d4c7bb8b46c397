"""One exponential back-off with jitter for every loop that waits for a server to come back.

The drivers (serial port, the MQTT source's bus), the bus outbox, the stores' flushers, the
notebook replay, the notification channels and the station's link keeper all retry through it.
A link that is down is retried after ``initial_s``, then ``factor`` times as long each time up
to ``max_s`` (the *ceiling*); each wait is shortened by a random part of up to ``jitter`` of
itself (the default 0.5 draws it from the upper half of the ceiling, "equal jitter"), so
stations that lost the same server at the same moment do not all knock on it again in the same
second when it returns. Loops wait on their stop event, never ``time.sleep``, so stopping stays
instant::

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
    """Growing, jittered waits between failed attempts; :meth:`reset` after a success."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not (math.isfinite(initial_s) and initial_s > 0):
            raise ValueError(f"initial_s must be a positive number of seconds, got {initial_s!r}")
        if not (math.isfinite(max_s) and max_s >= initial_s):
            raise ValueError(f"max_s must be at least initial_s ({initial_s}), got {max_s!r}")
        if not (math.isfinite(factor) and factor >= 1):
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        # Failed attempts since the last success (or the start).
        self.failures = 0

    def ceiling(self) -> float:
        """The longest the next failure can wait (with ``jitter=0``: exactly that)."""
        return min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))

    def next_delay(self) -> float:
        """Seconds to wait after one more failure (counts the failure)."""
        ceiling = self.ceiling()
        self.failures += 1
        return ceiling * (1.0 - self.jitter * self._rng())

    def wait(self, stop: threading.Event) -> bool:
        """Wait the next delay unless ``stop`` is set meanwhile; True when asked to stop."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        """The server answered: the next failure waits ``initial_s`` again."""
        self.failures = 0
