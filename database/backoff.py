"""Exponential back-off with jitter for every loop that waits for a server to come back.

One helper instead of a doubling ``delay`` in each retry loop: the delay grows from
``initial`` by ``factor`` up to ``maximum``, and each wait is drawn at random from its upper
half ("equal jitter"), so stations that lost the same server at the same moment do not all
knock on it again in the same second when it returns.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for consecutive failed attempts; :meth:`reset` after a success."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: bool = True,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not (initial > 0 and maximum >= initial and factor >= 1):
            raise ValueError("back-off needs initial > 0, maximum >= initial and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rand = rand
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure can wait (without jitter: exactly that)."""
        return min(self.maximum, self.initial * self.factor ** min(self.failures, 64))

    def next_delay(self) -> float:
        """Seconds to wait after one more failure (counts the failure)."""
        ceiling = self.ceiling()
        self.failures += 1
        if not self.jitter:
            return ceiling
        return ceiling / 2.0 + self._rand() * ceiling / 2.0

    def reset(self) -> None:
        """The server answered: the next failure waits ``initial`` again."""
        self.failures = 0
