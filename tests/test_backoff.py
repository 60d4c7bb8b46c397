"""The one back-off helper of the retry loops (database/backoff.py)."""

from __future__ import annotations

import threading
import time

import pytest

from bptwin.database.backoff import Backoff


def test_waits_double_up_to_the_limit_and_reset_after_a_success() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_shortens_each_wait_by_at_most_its_share() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(1.0, 10.0, jitter=0.2, rng=lambda: next(draws))
    assert backoff.next_delay() == pytest.approx(1.0)
    assert backoff.next_delay() == pytest.approx(1.6)
    assert backoff.next_delay() == pytest.approx(3.6)


def test_spread_keeps_clients_apart() -> None:
    delays = {round(Backoff(1.0, 1.0).next_delay(), 6) for _ in range(50)}
    assert len(delays) > 40 and all(0.8 <= d <= 1.0 for d in delays)


def test_wait_returns_at_once_when_asked_to_stop() -> None:
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert Backoff(30.0, 60.0).wait(stop) is True
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("initial", "maximum", "named"),
    [(0.0, 1.0, "initial_s"), (1.0, 0.5, "max_s"), (float("nan"), 1.0, "initial_s")],
)
def test_bad_limits_are_refused_by_name(initial: float, maximum: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Backoff(initial, maximum)
