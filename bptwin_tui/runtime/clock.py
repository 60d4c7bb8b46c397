"""One clock per reactor: the time the station's records of that reactor are stamped with.

A real acquisition lives on the wall clock. A simulated or replayed batch stamps its readings on
its own time line (re-based behind the wall clock, and running faster at ``speed`` > 1); its
alarms, acknowledgements, notebook entries and the dashboard's ages must use that same time line,
or an acknowledgement made within seconds reads "after 90 min" and a deviation prefilled from an
alarm is refused as "in the future". The clock follows each reactor's stream: its newest reading
stamp, moving on in real time until the next one (so it still notices when the stream stops).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone


class StationClock:
    """``now(reactor)``: the wall clock, or (``follow_stream``) the reactor's stream time."""

    def __init__(self, *, follow_stream: bool = False) -> None:
        self.follow_stream = follow_stream
        self._lock = threading.Lock()
        # reactor -> (newest reading stamp, monotonic time it was seen)
        self._anchors: dict[str, tuple[float, float]] = {}

    def observe(self, reactor: str, timestamp: float) -> None:
        """A reading of ``reactor`` stamped ``timestamp`` reached the station."""
        with self._lock:
            anchor = self._anchors.get(reactor)
            if anchor is None or timestamp > anchor[0]:
                self._anchors[reactor] = (timestamp, time.monotonic())

    def now(self, reactor: str | None = None) -> float:
        """Unix seconds on ``reactor``'s clock (None: the first reactor with a stream)."""
        if not self.follow_stream:
            return time.time()
        with self._lock:
            if reactor is None:
                anchor = next(iter(self._anchors.values()), None)
            else:
                anchor = self._anchors.get(reactor)
        if anchor is None:  # before the first reading
            return time.time()
        stamp, seen = anchor
        return stamp + (time.monotonic() - seen)

    def now_utc(self, reactor: str | None = None) -> datetime:
        """``now`` as an aware UTC datetime (the notebook's clock)."""
        return datetime.fromtimestamp(self.now(reactor), tz=timezone.utc)
