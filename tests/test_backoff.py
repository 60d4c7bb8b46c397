"""The one back-off helper of the retry loops (database/backoff.py): growing waits up to a
ceiling, jitter that only shortens them, reset after a success, a wait that stops at once."""

from __future__ import annotations

import threading
import time

import pytest

from bptwin.database.backoff import Backoff


def test_waits_double_up_to_the_ceiling_and_reset_after_a_success() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.failures == 6
    assert backoff.ceiling() == 4.0
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 0.5


def test_jitter_shortens_each_wait_by_at_most_its_share() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(1.0, 10.0, jitter=0.2, rng=lambda: next(draws))
    assert backoff.next_delay() == pytest.approx(1.0)
    assert backoff.next_delay() == pytest.approx(1.6)
    assert backoff.next_delay() == pytest.approx(3.6)


def test_the_default_jitter_stays_in_the_upper_half_of_each_step() -> None:
    high = Backoff(1.0, 8.0, rng=lambda: 0.0)
    low = Backoff(1.0, 8.0, rng=lambda: 0.999999)
    assert [high.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [round(low.next_delay(), 3) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_spread_keeps_clients_apart() -> None:
    delays = {round(Backoff(1.0, 1.0).next_delay(), 6) for _ in range(50)}
    assert len(delays) > 40 and all(0.5 <= d <= 1.0 for d in delays)


def test_two_stations_that_failed_together_do_not_retry_in_step() -> None:
    first, second = Backoff(1.0, 60.0), Backoff(1.0, 60.0)
    delays = [(first.next_delay(), second.next_delay()) for _ in range(8)]
    assert any(abs(a - b) > 1e-6 for a, b in delays)


def test_wait_returns_at_once_when_asked_to_stop() -> None:
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert Backoff(30.0, 60.0).wait(stop) is True
    assert time.monotonic() - started < 1.0


def test_many_failures_keep_the_ceiling_without_overflow() -> None:
    backoff = Backoff(1.0, 30.0, jitter=0.0)
    for _ in range(2000):
        backoff.next_delay()
    assert backoff.next_delay() == 30.0


@pytest.mark.parametrize(
    ("initial", "maximum", "options", "named"),
    [
        (0.0, 1.0, {}, "initial_s"),
        (float("nan"), 1.0, {}, "initial_s"),
        (1.0, 0.5, {}, "max_s"),
        (1.0, float("inf"), {}, "max_s"),
        (1.0, 2.0, {"factor": 0.5}, "factor"),
        (1.0, 2.0, {"jitter": 1.0}, "jitter"),
    ],
)
def test_bad_parameters_are_refused_by_name(
    initial: float, maximum: float, options: dict[str, float], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        Backoff(initial, maximum, **options)
