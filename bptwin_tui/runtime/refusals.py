"""Refused commands counted by reason and logged at a rate limit (setpoints, operators' commands).

Whoever can publish on the bus can send refusals at line rate; each reason gets one log line
every :data:`REFUSAL_LOG_INTERVAL_S` at most, saying how many more were refused meanwhile,
while the counts (``/metrics``, the status strip) keep every one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

REFUSAL_LOG_INTERVAL_S = 10.0  # one log line per refusal reason at most this often


class Refusal(Protocol):
    """A refused command: an exception with the counted ``reason``."""

    reason: str


class RefusalTally:
    """Counts refusals by reason (thread-safe) and logs them as ``<what> refused [reason]``."""

    def __init__(self, what: str, logger: logging.Logger, reasons: Iterable[str] = ()) -> None:
        self._what = what
        self._logger = logger
        self._refused: dict[str, int] = dict.fromkeys(reasons, 0)
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, refusal: Refusal) -> None:
        now = time.monotonic()
        reason = refusal.reason
        with self._lock:
            self._refused[reason] = self._refused.get(reason, 0) + 1
            last = self._logged_at.get(reason)
            if last is not None and now - last < REFUSAL_LOG_INTERVAL_S:
                self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
                return
            self._logged_at[reason] = now
            skipped = self._unlogged.pop(reason, 0)
        more = f" ({skipped} more refused for {reason} since the last line)" if skipped else ""
        self._logger.warning("%s refused [%s]: %s%s", self._what, reason, refusal, more)

    def counts(self) -> dict[str, int]:
        """Refusals since start, by reason (the reasons never refused left out)."""
        with self._lock:
            return {reason: count for reason, count in self._refused.items() if count}
