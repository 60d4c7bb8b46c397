"""Driver base: counters, a failing sink, rate-limited logging, DriverThread."""

from __future__ import annotations

import logging
import threading

import pytest

from bptwin.database.reading import Reading
from bptwin.drivers.base import Driver, DriverThread, RateLimitedLog


class CountingDriver(Driver):
    """Emits one reading per loop turn until stopped; turn 3 brings a bad line."""

    def __init__(self, sink, *, fail_at: int | None = None) -> None:
        super().__init__("counting", "R1", sink)
        self.fail_at = fail_at
        self.turns = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.turns += 1
            if self.turns == self.fail_at:
                raise RuntimeError("driver bug")
            if self.turns == 3:
                self._reject("format", "line 3 was garbled")
            else:
                self._emit(Reading(1.78e9 + self.turns, "R1", "ph", 5.0))
            if self.turns >= 5:
                stop.wait()  # idle until stopped
            else:
                stop.wait(0.001)


def test_counters_and_a_failing_sink() -> None:
    delivered: list[Reading] = []

    def sink(reading: Reading) -> None:
        if len(delivered) == 1 and not getattr(sink, "failed", False):
            sink.failed = True  # type: ignore[attr-defined]
            raise ConnectionError("bus full")
        delivered.append(reading)

    driver = CountingDriver(sink)
    with DriverThread(driver) as thread:
        while driver.turns < 5:
            threading.Event().wait(0.005)
    assert not thread.is_alive
    stats = driver.stats
    assert (stats.emitted, stats.rejected, stats.errors) == (3, 1, 1) == (len(delivered), 1, 1)
    assert dict(stats.rejected_by_reason) == {"format": 1}
    assert stats.last_reading_at is not None
    with pytest.raises(TypeError):
        stats.rejected_by_reason["format"] = 9  # type: ignore[index]


def test_driver_thread_records_a_crash_instead_of_raising() -> None:
    thread = DriverThread(CountingDriver(lambda r: None, fail_at=2)).start()
    assert thread.join(timeout=5)
    assert isinstance(thread.failure, RuntimeError)
    assert thread.stop()  # stopping a finished thread is fine


def test_stop_before_start_is_harmless() -> None:
    assert DriverThread(CountingDriver(lambda r: None)).stop()


def test_rate_limited_log_says_how_many_were_held_back(caplog) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for index in range(5):
            log.warning("a", "bad line %d", index)
        log.warning("b", "other reason")
    assert [r.getMessage() for r in caplog.records] == ["bad line 0", "other reason"]
    fast = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=0)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        caplog.clear()
        fast.warning("a", "x")
        fast.warning("a", "y")
    assert [r.getMessage() for r in caplog.records] == ["x", "y"]
