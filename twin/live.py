"""The live view of a reactor: latest value per channel, handed to the UI as immutable snapshots."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from database.reading import Reading


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """What the screens draw from: never mutated after it is made."""

    taken_at: float
    latest: Mapping[tuple[str, str], Reading] = field(default_factory=dict)
    readings_total: int = 0

    def for_reactor(self, reactor: str) -> list[Reading]:
        return sorted(
            (reading for (name, _), reading in self.latest.items() if name == reactor),
            key=lambda reading: reading.channel,
        )


class LatestValues:
    """Thread-safe collector fed by the bus; ``snapshot()`` copies it for the UI."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Reading] = {}
        self._total = 0

    def add(self, reading: Reading) -> None:
        key = (reading.reactor, reading.channel)
        with self._lock:
            self._total += 1
            current = self._latest.get(key)
            if current is None or reading.timestamp >= current.timestamp:
                self._latest[key] = reading

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            latest = MappingProxyType(dict(self._latest))
            total = self._total
        return LiveSnapshot(taken_at=time.time(), latest=latest, readings_total=total)
