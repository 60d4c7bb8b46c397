"""What every sensor driver shares: the Driver loop contract, its counters and its thread.

A driver turns one source (simulator, MQTT topics, serial analyser, recorded file) into
:class:`~bptwin.database.reading.Reading` objects handed to a *sink*, a plain callable. The wiring
connects the sink to ``bus.publish_reading``; a driver never knows who listens.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bptwin.database.reading import Reading

ReadingSink = Callable[[Reading], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriverStats:
    """An immutable snapshot of a driver's counters, safe to hand to the UI thread."""

    emitted: int = 0
    rejected: int = 0
    errors: int = 0
    reconnects: int = 0
    last_reading_at: float | None = None
    connected: bool = False
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)


class RateLimitedLog:
    """Logs a message at most once per ``interval_s`` per key, saying how many were held back.

    Bad input can arrive at line rate; one warning per key and interval is enough to notice
    it without flooding the log.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held_back: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._held_back[key] += 1
                return
            self._last[key] = now
            held_back = self._held_back.pop(key, 0)
        suffix = f" ({held_back} similar messages suppressed)" if held_back else ""
        self._logger.warning(message + suffix, *args)


class Driver(ABC):
    """A sensor source whose :meth:`run` loop lives in a worker thread.

    Subclasses call :meth:`_emit` for every good reading and :meth:`_reject` for every piece
    of input they refuse; both are thread-safe. Loops wait on the ``stop`` event
    (``stop.wait(period)``), never ``time.sleep``, so that stopping is immediate.
    """

    def __init__(self, name: str, reactor: str, sink: ReadingSink) -> None:
        self.name = name
        self.reactor = reactor
        self._sink = sink
        self._lock = threading.Lock()
        self._emitted = 0
        self._errors = 0
        self._reconnects = 0
        self._connected = False
        self._last_reading_at: float | None = None
        self._rejected: Counter[str] = Counter()
        self._log = RateLimitedLog(logging.getLogger(f"drivers.{name}"))

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Acquire until ``stop`` is set (or the source is exhausted), then return promptly."""

    @property
    def stats(self) -> DriverStats:
        with self._lock:
            return DriverStats(
                emitted=self._emitted,
                rejected=sum(self._rejected.values()),
                errors=self._errors,
                reconnects=self._reconnects,
                last_reading_at=self._last_reading_at,
                connected=self._connected,
                rejected_by_reason=MappingProxyType(dict(self._rejected)),
            )

    def _emit(self, reading: Reading) -> bool:
        """Hand one reading to the sink; a failing sink is counted and logged, never raised."""
        try:
            self._sink(reading)
        except Exception as exc:  # the sink belongs to someone else: keep acquiring
            self._count_error("sink", f"sink refused a reading of {reading.channel}: {exc!r}")
            return False
        with self._lock:
            self._emitted += 1
            self._last_reading_at = time.time()
        return True

    def _reject(self, reason: str, detail: str) -> None:
        """Count a refused piece of input under ``reason`` and log it at a rate limit."""
        with self._lock:
            self._rejected[reason] += 1
        self._log.warning(
            f"reject:{reason}", "%s: rejected input (%s): %s", self.name, reason, detail
        )

    def _count_error(self, key: str, detail: str) -> None:
        with self._lock:
            self._errors += 1
        self._log.warning(f"error:{key}", "%s: %s", self.name, detail)

    def _set_connected(self, connected: bool, *, reconnect: bool = False) -> None:
        with self._lock:
            self._connected = connected
            if reconnect:
                self._reconnects += 1


class DriverThread:
    """Runs one driver in a daemon thread and stops it cleanly.

    >>> thread = DriverThread(driver).start()
    >>> ...
    >>> thread.stop()  # sets the stop event and joins
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"driver-{driver.name}", daemon=True)

    def _run(self) -> None:
        try:
            self.driver.run(self.stop_event)
        except Exception as exc:  # recorded for whoever supervises the thread
            self.failure = exc
            log.exception("driver %s stopped on an error", self.driver.name)

    def start(self) -> DriverThread:
        self._thread.start()
        return self

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop to end by itself (e.g. a replay that ran out); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to stop and wait up to ``timeout`` s; True when the thread has ended."""
        self.stop_event.set()
        if self._thread.ident is None:
            return True
        return self.join(timeout)

    def __enter__(self) -> DriverThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
