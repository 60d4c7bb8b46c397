"""The one back-off helper: growing delays, a ceiling, jitter within the upper half, reset."""

from __future__ import annotations

import pytest

from bptwin.database.backoff import Backoff


def test_delays_double_up_to_the_ceiling_without_jitter() -> None:
    backoff = Backoff(0.5, 4.0, jitter=False)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_stays_in_the_upper_half_of_each_step() -> None:
    low = Backoff(1.0, 8.0, rand=lambda: 0.0)
    high = Backoff(1.0, 8.0, rand=lambda: 0.999999)
    assert [low.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.next_delay(), 3) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_two_stations_that_failed_together_do_not_retry_in_step() -> None:
    first, second = Backoff(1.0, 60.0), Backoff(1.0, 60.0)
    delays = [(first.next_delay(), second.next_delay()) for _ in range(8)]
    assert any(abs(a - b) > 1e-6 for a, b in delays)


def test_nonsense_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="initial > 0"):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError, match="maximum >= initial"):
        Backoff(2.0, 1.0)
