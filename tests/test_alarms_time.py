"""Threat: readings stamped in the future or out of order must never silence a channel.

One pH reading stamped now + 23 h used to make the engine drop every later real reading of that
channel as out of order: a real pH excursion raised no alarm. The engine's time is the station
clock it is told (or, without one, the stream's own time); see twin/alarms/timing.py.
"""

from __future__ import annotations

import pytest

from bptwin.database.reading import Reading
from bptwin.twin.alarm_rules import DEFAULT_RULES, ClockRule, StaleRule
from bptwin.twin.alarms import AlarmEngine, AlarmState, AlarmTransition

T0 = 1_790_000_000.0
PH_HI = "R1/ph/hi"
DAY_AHEAD_S = 23 * 3600.0


class StationClock:
    """A clock the test moves by hand (the engine reads it; nothing sleeps)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ph(at: float, value: float) -> Reading:
    return Reading(at, "R1", "ph", value, "pH")


def ids(transitions: list[AlarmTransition] | tuple[AlarmTransition, ...]) -> list[str]:
    return [t.alarm_id for t in transitions if t.to_state is AlarmState.ACTIVE_UNACK]


def test_future_stamped_reading_then_45_s_of_ph_5_5_still_raises_ph_hi() -> None:
    clock = StationClock(T0)
    engine = AlarmEngine(DEFAULT_RULES, clock=clock)
    out: list[AlarmTransition] = []
    for second in range(60):  # a normal minute
        clock.now = T0 + second
        out += engine.feed(ph(clock.now, 5.0 + 0.01 * (second % 3)))
    out += engine.feed(ph(clock.now + DAY_AHEAD_S, 5.0))  # the forged reading
    for second in range(60, 105):  # 45 s of a real excursion
        clock.now = T0 + second
        out += engine.feed(ph(clock.now, 5.5))
        out += engine.evaluate(clock.now)
    assert PH_HI in ids(out)
    raised = next(t for t in out if t.alarm_id == PH_HI)
    assert T0 + 90 <= raised.at <= T0 + 91  # 30 s on-delay from the first 5.5 at 60 s
    assert engine.stats.ahead_of_clock == 1 and engine.stats.late == 0
    # Nothing is stamped tomorrow (no sensor_frozen, no stale) and no clock fault for one stamp.
    assert all(t.at <= clock.now for t in out)
    assert not [t for t in out if t.rule in {"sensor_frozen", "sensor_stale", "clock_fault"}]


def test_without_a_clock_a_future_stamp_is_held_and_discarded_when_real_readings_carry_on() -> None:
    engine = AlarmEngine(DEFAULT_RULES)  # a stream that tells the engine its time
    out: list[AlarmTransition] = []
    for second in range(60):
        out += engine.feed(ph(T0 + second, 5.0))
        out += engine.evaluate(T0 + second)
    out += engine.feed(ph(T0 + 59 + DAY_AHEAD_S, 5.5))  # held: it jumps a day ahead
    for second in range(60, 105):
        out += engine.feed(ph(T0 + second, 5.5))
        out += engine.evaluate(T0 + second)
    assert PH_HI in ids(out)
    assert engine.stats.ahead_of_clock == 1 and engine.stats.late == 0
    assert all(t.at <= T0 + 105 for t in out)


def test_without_any_time_told_a_single_future_reading_still_cannot_silence_ph() -> None:
    engine = AlarmEngine(DEFAULT_RULES)
    out = list(engine.feed_many(ph(T0 + s, 5.0) for s in range(10)))
    out += engine.feed(ph(T0 + 10 + DAY_AHEAD_S, 5.0))
    out += engine.feed_many(ph(T0 + s, 5.5) for s in range(10, 55))
    assert PH_HI in ids(out)
    assert engine.stats.ahead_of_clock == 1


def test_late_readings_are_discarded_and_counted_and_never_hide_newer_ones() -> None:
    clock = StationClock(T0 + 100)
    engine = AlarmEngine(DEFAULT_RULES, clock=clock)
    engine.feed_many(ph(T0 + s, 5.0) for s in range(90, 101))
    assert engine.feed_many(ph(T0 + s, 6.0) for s in range(0, 90)) == ()  # a late burst
    assert engine.stats.late == 90
    out: list[AlarmTransition] = []
    for second in range(101, 140):
        clock.now = T0 + second
        out += engine.feed(ph(clock.now, 5.5))
    assert PH_HI in ids(out)
    assert engine.now() == T0 + 139  # a late reading did not move time back


def test_the_allowed_skew_is_configurable() -> None:
    clock = StationClock(T0)
    tolerant = AlarmEngine(DEFAULT_RULES, clock=clock)
    strict = AlarmEngine(DEFAULT_RULES, clock=clock, max_ahead_s=2.0)
    for engine in (tolerant, strict):
        engine.feed(ph(T0 + 4.0, 5.0))  # a gateway clock 4 s fast
    assert tolerant.stats.ahead_of_clock == 0
    assert strict.stats.ahead_of_clock == 1
    with pytest.raises(ValueError, match="max_ahead_s"):
        AlarmEngine(DEFAULT_RULES, max_ahead_s=float("nan"))


def test_a_sensor_clock_that_stays_ahead_raises_a_clock_fault_until_it_is_on_time() -> None:
    clock = StationClock(T0)
    rules = [ClockRule("clock_fault", persist_s=30), StaleRule("sensor_stale", ("ph",))]
    engine = AlarmEngine(rules, clock=clock)
    out: list[AlarmTransition] = list(engine.feed(ph(T0, 5.0)))
    for second in range(1, 40):  # the gateway's clock jumped an hour ahead
        clock.now = T0 + second
        out += engine.feed(ph(clock.now + 3600, 5.0))
    assert ids(out) == ["R1/clock_fault/ph"]
    fault = next(t for t in out if t.rule == "clock_fault")
    assert fault.at == T0 + 31 and "ahead of the station clock" in fault.message
    assert engine.stats.ahead_of_clock == 39
    out += engine.evaluate(T0 + 62)  # no usable pH for a minute: stale as well
    assert "R1/sensor_stale/ph" in ids(out)
    clock.now = T0 + 63
    back = engine.feed(ph(T0 + 63, 5.0))  # fixed: on time again
    assert {(t.rule, t.to_state) for t in back} == {
        ("clock_fault", AlarmState.RETURNED_UNACK),
        ("sensor_stale", AlarmState.RETURNED_UNACK),
    }


def test_a_gap_in_a_replayed_stream_is_not_a_clock_fault() -> None:
    engine = AlarmEngine(DEFAULT_RULES)
    engine.feed_many(ph(T0 + s, 5.0) for s in range(60))
    after_gap = [ph(T0 + 600 + s, 5.5) for s in range(40)]  # the broker was away 9 min
    out = engine.feed_many(after_gap)
    assert PH_HI in ids(out)
    assert sum(engine.stats.discarded.values()) == 0


def test_future_samples_and_events_are_refused_with_a_clock_and_counted() -> None:
    clock = StationClock(T0)
    engine = AlarmEngine(DEFAULT_RULES, clock=clock)
    assert engine.feed_event("R1", "glycerol_depleted", T0 + DAY_AHEAD_S) == ()
    assert engine.feed_sample("R1", T0 + DAY_AHEAD_S, measured=10.0, predicted=20.0) == ()
    assert engine.stats.ahead_of_clock == 2
    assert ids(engine.feed_event("R1", "glycerol_depleted", T0)) == [
        "R1/glycerol_depleted/glycerol_depleted"
    ]  # the once-only event was not used up by the forged one
    assert engine.discarded() == {"late": 0, "ahead_of_clock": 2, "untimed": 0}
