"""What the driver tests share: a sink that collects readings across threads, and a wait.

``wait_for`` waits on a condition (never a fixed time) and fails the test naming what it
waited for; its timeout is an upper bound for a condition to become true, not a speed claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bptwin.database.reading import Reading

WAIT_S = 30.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


class Collector:
    """A driver's sink: keeps every reading, read safely from the test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.readings: list[Reading] = []

    def __call__(self, reading: Reading) -> None:
        with self._lock:
            self.readings.append(reading)

    def snapshot(self) -> list[Reading]:
        with self._lock:
            return list(self.readings)

    def of(self, channel: str, reactor: str = "R1") -> list[Reading]:
        with self._lock:
            return [r for r in self.readings if r.channel == channel and r.reactor == reactor]
