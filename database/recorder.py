"""The recorder: takes readings one at a time from the bus, writes them to a store in batches.

Each store write is a transaction; at accelerated simulation speed one transaction per
reading would fall behind. The recorder gathers readings for at most ``max_delay_s`` (or
``max_batch`` readings) and writes them in one call on its own thread, so the bus thread
never waits on the disk or the network.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from bptwin.database.reading import Reading
from bptwin.database.timeseries.base import TimeSeriesError, TimeSeriesStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecorderStats:
    received: int
    written: int
    failed: int
    buffered: int
    last_error: str | None


class Recorder:
    """Batches readings into ``store.write``; ``close()`` writes what is left."""

    def __init__(
        self, store: TimeSeriesStore, *, max_batch: int = 5000, max_delay_s: float = 0.2
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._buffer: list[Reading] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._received = 0
        self._written = 0
        self._failed = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def add(self, reading: Reading) -> None:
        with self._lock:
            self._buffer.append(reading)
            self._received += 1
            full = len(self._buffer) >= self.max_batch
        if full:
            self._wake.set()

    def _take(self) -> list[Reading]:
        """At most ``max_batch`` readings: a flood (a batch replayed as fast as possible) is
        written in bounded transactions that become visible one after the other, not in one
        that grows for as long as the previous one took."""
        with self._lock:
            batch = self._buffer[: self.max_batch]
            del self._buffer[: self.max_batch]
            if self._buffer:
                self._wake.set()  # more is waiting: no pause before the next write
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.max_delay_s)
            self._wake.clear()
            self._write(self._take())
        while (batch := self._take()) and self._write(batch):
            pass  # what the store refuses at close stays in the buffer (stats say how much)

    def _write(self, batch: list[Reading]) -> bool:
        """True when the store took the batch (an empty one too)."""
        if not batch:
            return True
        try:
            self.store.write(batch)
        except TimeSeriesError as exc:
            # The store could not take them: keep them for the next round, never drop.
            with self._lock:
                self._buffer[:0] = batch
                self._failed += 1
                self._last_error = str(exc)
            log.error("recorder: %s; %d readings kept for retry", exc, len(batch))
            self._stop.wait(1.0)
            return False
        with self._lock:
            self._written += len(batch)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything received so far is written; False on timeout."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            with self._lock:
                if self._written >= self._received:
                    return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            pause.wait(0.02)

    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                received=self._received,
                written=self._written,
                failed=self._failed,
                buffered=len(self._buffer),
                last_error=self._last_error,
            )

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
