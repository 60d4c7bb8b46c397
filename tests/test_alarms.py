"""Alarm engine: each rule type on hand-made streams with a controlled clock, ISA-18.2 cycles."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import fields, replace

import numpy as np
import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.twin.alarm_rules import (
    DEFAULT_RULES,
    EventRule,
    FrozenRule,
    LevelKind,
    LimitLevel,
    LimitRule,
    ModelDisagreementRule,
    Priority,
    RateOfChangeRule,
    StaleRule,
)
from bptwin.twin.alarms import (
    AlarmActionError,
    AlarmBoard,
    AlarmEngine,
    AlarmPayloadError,
    AlarmState,
    AlarmTransition,
    transition_payload,
)
from bptwin.twin.cleaning import CleaningEvent
from bptwin.twin.features import DEPLETION_CONFIRMED, DEPLETION_NONE, ProcessState

T0 = 1_790_000_000.0  # 2026-09-21, on a whole second so ISO payloads round-trip exactly
S = AlarmState
DO_LO = "R1/do_low/lo"
DO_LO_LO = "R1/do_low/lo_lo"


def do(t: float, value: float, reactor: str = "R1", quality: Quality = Quality.GOOD) -> Reading:
    return Reading(T0 + t, reactor, "do", value, "%sat", quality)


def feed_do(engine: AlarmEngine, start: int, stop: int, value: float, **kw) -> list:
    """DO readings at 1 Hz for t in [start, stop)."""
    out = []
    for t in range(start, stop):
        out.extend(engine.feed(do(t, value, **kw)))
    return out


def only(*names):
    """The default rules with these names."""
    return [rule for rule in DEFAULT_RULES if rule.name in names]


def do_engine() -> AlarmEngine:
    return AlarmEngine(only("do_low"))


def states(transitions) -> list[tuple[str, str, str]]:
    return [(t.alarm_id, t.from_state.value, t.to_state.value) for t in transitions]


# ---- limits, delays, deadband ---------------------------------------------------------------


def test_do_below_20_for_4_min_raises_nothing_and_after_5_min_1_s_a_warning():
    engine = do_engine()
    assert feed_do(engine, 0, 240, 18.0) == []
    assert feed_do(engine, 240, 300, 18.0) == []  # t = 299 s: 299 s below, still inside delay
    raised = feed_do(engine, 300, 302, 18.0)  # t = 300 .. 301 s
    assert states(raised) == [(DO_LO, "normal", "active_unacknowledged")]
    transition = raised[0]
    assert transition.priority is Priority.WARNING and transition.actor is None
    assert transition.at == T0 + 300 and transition.value == 18.0
    assert "20" in transition.message


def test_a_reading_back_above_the_limit_restarts_the_on_delay():
    engine = do_engine()
    feed_do(engine, 0, 200, 18.0)
    feed_do(engine, 200, 201, 20.5)
    assert feed_do(engine, 201, 480, 18.0) == []  # 279 s since the restart
    assert states(feed_do(engine, 480, 502, 18.0)) == [(DO_LO, "normal", "active_unacknowledged")]


def test_do_below_15_raises_critical_after_2_min_and_is_listed_first():
    engine = do_engine()
    out = feed_do(engine, 0, 301, 14.0)
    assert [(t.alarm_id, t.at - T0, t.priority) for t in out] == [
        (DO_LO_LO, 120.0, Priority.CRITICAL),
        (DO_LO, 300.0, Priority.WARNING),
    ]
    assert [view.alarm_id for view in engine.active_alarms()] == [DO_LO_LO, DO_LO]
    counts = engine.counts()
    assert counts.by_priority["critical"] == 1 and counts.by_priority["warning"] == 1
    assert counts.critical_unacknowledged == 1 and counts.unacknowledged == 2


def test_deadband_prevents_chattering_around_the_limit():
    engine = do_engine()
    feed_do(engine, 0, 301, 18.0)
    engine.acknowledge(DO_LO, "ana", at=T0 + 301)
    chatter = []
    for t in range(301, 900):
        chatter.extend(engine.feed(do(t, 19.6 if t % 2 else 20.6)))
    assert chatter == []  # 20.6 < 20 + deadband 1.0: not back to normal
    back = engine.feed(do(900, 21.0))
    assert states(back) == [(DO_LO, "active_acknowledged", "normal")]


def test_without_deadband_the_same_stream_would_chatter():
    rule = LimitRule("do_low", "do", (LimitLevel(LevelKind.LO, 20.0),), deadband=0.0)
    engine = AlarmEngine([rule])
    out = []
    for t in range(0, 20):
        out.extend(engine.feed(do(t, 19.6 if t % 2 else 20.6)))
    assert len(out) == 19  # every reading after the first flips it: what the deadband is for


def test_off_delay_holds_the_alarm_until_the_value_stays_back():
    level = LimitLevel(LevelKind.LO, 20.0, on_delay_s=0.0, off_delay_s=60.0)
    engine = AlarmEngine([LimitRule("do_low", "do", (level,))])
    assert len(feed_do(engine, 0, 1, 18.0)) == 1
    assert feed_do(engine, 1, 60, 25.0) == []  # 59 s back
    assert states(feed_do(engine, 60, 62, 25.0)) == [
        (DO_LO, "active_unacknowledged", "returned_unacknowledged")
    ]


def test_hi_hi_escalation_raises_both_levels_with_their_priorities():
    rule = LimitRule(
        "temperature",
        "temp_broth",
        (
            LimitLevel(LevelKind.HI_HI, 31.0, Priority.CRITICAL, on_delay_s=10),
            LimitLevel(LevelKind.HI, 30.3, Priority.WARNING, on_delay_s=10),
        ),
        deadband=0.05,
    )
    engine = AlarmEngine([rule])
    out = []
    for t in range(0, 60):
        value = 30.0 + 0.05 * t  # 30.35 at 7 s, 31.05 at 21 s
        out.extend(engine.feed(Reading(T0 + t, "R1", "temp_broth", value, "°C")))
    assert [(t.condition, t.priority, round(t.at - T0)) for t in out] == [
        ("hi", Priority.WARNING, 17),
        ("hi_hi", Priority.CRITICAL, 31),
    ]
    assert engine.active_alarms()[0].condition == "hi_hi"
    cooled = engine.feed(Reading(T0 + 61, "R1", "temp_broth", 30.0, "°C"))
    assert {t.condition for t in cooled} == {"hi", "hi_hi"}
    assert all(t.to_state is S.RETURNED_UNACK for t in cooled)


def test_nan_and_bad_values_neither_raise_nor_clear_a_limit():
    engine = do_engine()
    feed_do(engine, 0, 301, 18.0)
    assert feed_do(engine, 301, 400, math.nan, quality=Quality.BAD) == []
    assert feed_do(engine, 400, 410, 50.0, quality=Quality.BAD) == []  # bad quality ignored
    assert engine.alarm(DO_LO).state is S.ACTIVE_UNACK
    assert engine.stats.unusable == 109


def test_out_of_order_readings_are_ignored_and_counted():
    engine = do_engine()
    feed_do(engine, 100, 101, 50.0)
    assert feed_do(engine, 0, 100, 10.0) == []
    assert engine.stats.late == 100


def test_reactors_are_independent():
    engine = do_engine()
    feed_do(engine, 0, 301, 18.0, reactor="R1")
    feed_do(engine, 0, 301, 50.0, reactor="R2")
    assert [view.reactor for view in engine.active_alarms()] == ["R1"]


# ---- ISA-18.2 life cycle --------------------------------------------------------------------


def raised_engine() -> AlarmEngine:
    engine = do_engine()
    feed_do(engine, 0, 301, 18.0)
    return engine


def test_cycle_acknowledged_while_active_then_returns_to_normal():
    engine = raised_engine()
    ack = engine.acknowledge(DO_LO, "ana", at=T0 + 310)
    assert states(ack) == [(DO_LO, "active_unacknowledged", "active_acknowledged")]
    assert ack[0].actor == "ana" and ack[0].at == T0 + 310
    view = engine.alarm(DO_LO)
    assert view.acknowledged_by == "ana" and view.state is S.ACTIVE_ACK
    back = feed_do(engine, 301, 321, 30.0)
    assert states(back) == [(DO_LO, "active_acknowledged", "normal")]
    assert back[0].actor is None
    assert engine.active_alarms() == ()


def test_cycle_returned_before_acknowledgement_waits_for_the_ack():
    engine = raised_engine()
    back = feed_do(engine, 301, 321, 30.0)
    assert states(back) == [(DO_LO, "active_unacknowledged", "returned_unacknowledged")]
    assert engine.counts().unacknowledged == 1
    ack = engine.acknowledge(DO_LO, "ben", at=T0 + 400)
    assert states(ack) == [(DO_LO, "returned_unacknowledged", "normal")]
    assert engine.active_alarms() == ()


def test_returned_alarm_that_comes_back_is_raised_again():
    engine = raised_engine()
    feed_do(engine, 301, 321, 30.0)
    again = feed_do(engine, 321, 622, 18.0)
    assert states(again) == [(DO_LO, "returned_unacknowledged", "active_unacknowledged")]
    assert engine.alarm(DO_LO).raised_at == T0 + 621


def test_acknowledge_needs_an_actor_and_something_to_acknowledge():
    engine = raised_engine()
    for actor in ("", "   ", None):
        with pytest.raises(AlarmActionError, match="operator"):
            engine.acknowledge(DO_LO, actor, at=T0 + 302)  # type: ignore[arg-type]
    engine.acknowledge(DO_LO, "ana", at=T0 + 302)
    with pytest.raises(AlarmActionError, match="nothing to acknowledge"):
        engine.acknowledge(DO_LO, "ben", at=T0 + 303)
    with pytest.raises(AlarmActionError, match="unknown alarm"):
        engine.acknowledge("R1/do_low/hi", "ana", at=T0 + 303)


def test_action_time_comes_from_the_clock_or_the_latest_reading():
    engine = raised_engine()
    assert engine.acknowledge(DO_LO, "ana")[0].at == T0 + 300  # latest time seen
    clocked = AlarmEngine(only("do_low"), clock=lambda: T0 + 999)
    feed_do(clocked, 0, 301, 18.0)
    assert clocked.acknowledge(DO_LO, "ana")[0].at == T0 + 999


# ---- shelving and out of service ------------------------------------------------------------


def test_shelved_alarm_is_silent_and_unshelves_itself_at_expiry():
    engine = raised_engine()
    until = T0 + 3600
    shelved = engine.shelve(DO_LO, "ana", "probe being replaced", until, at=T0 + 305)
    assert states(shelved) == [(DO_LO, "active_unacknowledged", "shelved")]
    assert shelved[0].reason == "probe being replaced" and shelved[0].shelved_until == until
    view = engine.alarm(DO_LO)
    assert (view.shelved_by, view.shelve_reason, view.shelved_until) == (
        "ana",
        "probe being replaced",
        until,
    )
    # condition clears and returns while shelved: nothing annunciated
    assert feed_do(engine, 310, 320, 30.0) == []
    assert feed_do(engine, 320, 700, 18.0) == []
    assert engine.evaluate(until - 1) == ()
    expired = engine.evaluate(until + 5)
    assert states(expired) == [(DO_LO, "shelved", "active_unacknowledged")]
    assert expired[0].actor is None and expired[0].reason == "shelve_expired"
    assert expired[0].at == until
    assert engine.alarm(DO_LO).shelved_by is None


def test_unshelve_by_hand_returns_to_normal_when_the_condition_cleared():
    engine = raised_engine()
    engine.shelve(DO_LO, "ana", "calibration", T0 + 3600, at=T0 + 305)
    feed_do(engine, 310, 320, 30.0)
    out = engine.unshelve(DO_LO, "ben", at=T0 + 400)
    assert states(out) == [(DO_LO, "shelved", "normal")] and out[0].actor == "ben"


@pytest.mark.parametrize(
    ("reason", "until", "message"),
    [
        ("", T0 + 3600, "reason"),
        ("why", T0 + 100, "future"),
        ("why", T0 + 2 * 86400, "within 24 h"),
        ("why", math.nan, "future"),
    ],
)
def test_shelve_needs_a_reason_and_a_bounded_future_expiry(reason, until, message):
    engine = raised_engine()
    with pytest.raises(AlarmActionError, match=message):
        engine.shelve(DO_LO, "ana", reason, until, at=T0 + 305)
    assert engine.alarm(DO_LO).state is S.ACTIVE_UNACK


def test_out_of_service_hides_the_alarm_until_returned():
    engine = raised_engine()
    out = engine.remove_from_service(DO_LO, "ana", "DO probe removed", at=T0 + 305)
    assert states(out) == [(DO_LO, "active_unacknowledged", "out_of_service")]
    assert feed_do(engine, 310, 1000, 30.0) == []
    assert engine.evaluate(T0 + 100_000) == ()
    back = engine.return_to_service(DO_LO, "ana", at=T0 + 1000)
    assert states(back) == [(DO_LO, "out_of_service", "normal")]


# ---- stale, frozen, rate --------------------------------------------------------------------


def stale_engine(max_age_s: float = 60.0) -> AlarmEngine:
    return AlarmEngine([StaleRule("sensor_stale", ("do", "ph"), max_age_s=max_age_s)])


def test_stale_sensor_raises_after_max_age_and_returns_with_the_next_reading():
    engine = stale_engine()
    feed_do(engine, 0, 10, 50.0)
    assert engine.evaluate(T0 + 9 + 60) == ()
    stale = engine.evaluate(T0 + 9 + 61)
    assert states(stale) == [("R1/sensor_stale/do", "normal", "active_unacknowledged")]
    assert "no readings" in stale[0].message and stale[0].value is None
    assert engine.evaluate(T0 + 200) == ()  # raised once, not on every evaluate
    assert engine.evaluate(T0 + 300) == ()
    back = feed_do(engine, 300, 301, 50.0)
    assert states(back) == [
        ("R1/sensor_stale/do", "active_unacknowledged", "returned_unacknowledged")
    ]


def test_only_nan_or_bad_values_count_as_stale():
    engine = stale_engine()
    feed_do(engine, 0, 1, 50.0)
    feed_do(engine, 1, 100, math.nan, quality=Quality.BAD)
    stale = engine.evaluate(T0 + 100)
    assert len(stale) == 1 and "bad or NaN" in stale[0].message


def test_a_channel_never_seen_is_not_stale():
    engine = stale_engine()
    feed_do(engine, 0, 1, 50.0)
    assert [t.condition for t in engine.evaluate(T0 + 1000)] == ["do"]  # not ph


def test_frozen_sensor_raises_after_duration_and_returns_when_it_moves():
    engine = AlarmEngine([FrozenRule("sensor_frozen", ("do",), duration_s=600, epsilon=0.01)])
    out = []
    for t in range(0, 700):
        out.extend(engine.feed(do(t, 42.0 + (0.005 if t % 2 else 0.0))))  # moves < epsilon
    assert [(t.condition, t.at - T0) for t in out] == [("do", 600.0)]
    moved = engine.feed(do(700, 43.0))
    assert states(moved) == [
        ("R1/sensor_frozen/do", "active_unacknowledged", "returned_unacknowledged")
    ]


def test_a_noisy_sensor_is_not_frozen():
    engine = AlarmEngine([FrozenRule("sensor_frozen", ("do",), duration_s=600)])
    rng = np.random.default_rng(1)
    out = []
    for t in range(0, 2000):
        out.extend(engine.feed(do(t, 40.0 + float(rng.normal(0, 0.2)))))
    assert out == []


def temp(t: float, value: float) -> Reading:
    return Reading(T0 + t, "R1", "temp_broth", value, "°C")


def test_rate_of_change_raises_on_a_fast_rise_and_returns_when_it_settles():
    rule = RateOfChangeRule(
        "temperature_rate", "temp_broth", window_s=120, max_rise_per_min=0.5, deadband=0.1
    )
    engine = AlarmEngine([rule])
    assert engine.feed_many(temp(t, 30.0) for t in range(0, 200)) == ()
    ramp = engine.feed_many(temp(t, 30.0 + (t - 200) / 60.0) for t in range(200, 400))
    assert [t.condition for t in ramp] == ["rise"]
    # the 120 s window rate passes 0.5 °C/min about a minute into a 1 °C/min ramp
    assert ramp[0].value > 0.5 and 200 + 55 <= ramp[0].at - T0 <= 200 + 65
    flat = engine.feed_many(temp(t, 33.4) for t in range(400, 600))
    assert [t.to_state for t in flat] == [S.RETURNED_UNACK]


def test_rate_of_change_ignores_a_fall_when_only_rise_is_watched():
    rule = RateOfChangeRule("temperature_rate", "temp_broth", window_s=60, max_rise_per_min=0.5)
    engine = AlarmEngine([rule])
    assert engine.feed_many(temp(t, 40.0 - t / 10.0) for t in range(0, 300)) == ()


def test_limit_on_a_derived_value():
    rule = LimitRule("rq_high", "rq", (LimitLevel(LevelKind.HI, 1.3, on_delay_s=60),))
    engine = AlarmEngine([rule])
    out = []
    for k in range(5):
        out.extend(engine.feed_value("R1", "rq", T0 + 30 * k, 1.5))
    assert [(t.condition, t.at - T0) for t in out] == [("hi", 60.0)]


# ---- model disagreement and events ----------------------------------------------------------


def test_model_disagreement_raises_on_a_far_sample_and_returns_on_an_agreeing_one():
    engine = AlarmEngine([ModelDisagreementRule("od600_disagreement", max_percent=20.0)])
    assert engine.feed_sample("R1", T0, measured=10.0, predicted=11.5) == ()  # 15 %
    far = engine.feed_sample("R1", T0 + 7200, measured=10.0, predicted=13.0)
    assert states(far) == [("R1/od600_disagreement/od600", "normal", "active_unacknowledged")]
    assert far[0].value == pytest.approx(30.0) and "30.0 %" in far[0].message
    assert engine.feed_sample("R1", T0 + 7300, measured=0.5, predicted=5.0) == ()  # below min
    assert engine.feed_sample("R1", T0 + 7400, measured=math.nan, predicted=5.0) == ()
    near = engine.feed_sample("R1", T0 + 14400, measured=20.0, predicted=21.0)
    assert [t.to_state for t in near] == [S.RETURNED_UNACK]


def process_state(**values) -> ProcessState:
    """A ProcessState with every number NaN except those given."""
    defaults = {}
    for field in fields(ProcessState):
        kind = field.type
        if kind == "float":
            defaults[field.name] = math.nan
        elif kind == "int":
            defaults[field.name] = 0
        elif kind == "bool":
            defaults[field.name] = False
        elif kind == "np.ndarray":
            defaults[field.name] = np.zeros(0)
        elif kind.startswith("tuple"):
            defaults[field.name] = ()
        else:
            defaults[field.name] = None
    defaults.update(reactor="R1", phase="exponential", depletion_state=DEPLETION_NONE)
    defaults.update(values)
    return ProcessState(**defaults)


def test_glycerol_depletion_is_an_event_alarm_raised_once():
    engine = AlarmEngine([EventRule("glycerol_depleted", "glycerol_depleted")])
    state = process_state(end=T0, time_since_inoculation_h=18.0)
    assert engine.feed_state(state) == ()
    depleted = replace(
        state,
        end=T0 + 30,
        depletion_state=DEPLETION_CONFIRMED,
        depletion_time=T0 - 330,  # onset 6 min before the confirming window ended
        time_since_inoculation_h=18.5,
    )
    out = engine.feed_state(depleted)
    assert states(out) == [
        ("R1/glycerol_depleted/glycerol_depleted", "normal", "active_unacknowledged"),
        (
            "R1/glycerol_depleted/glycerol_depleted",
            "active_unacknowledged",
            "returned_unacknowledged",
        ),
    ]
    assert out[0].priority is Priority.INFO and out[0].at == T0 - 330
    assert "18.4 h" in out[0].message  # hours at the onset, not at the window end
    assert engine.feed_state(replace(depleted, end=T0 + 60)) == ()  # once
    engine.acknowledge(out[0].alarm_id, "ana", at=T0 + 100)
    assert engine.active_alarms() == ()
    engine.rearm_events("R1")
    assert len(engine.feed_state(replace(depleted, end=T0 + 90))) == 2


def test_feed_state_feeds_derived_value_rules():
    rule = LimitRule("rq_high", "rq", (LimitLevel(LevelKind.HI, 1.3),))
    engine = AlarmEngine([rule])
    out = engine.feed_state(process_state(end=T0, rq=1.6))
    assert [(t.condition, t.value) for t in out] == [("hi", 1.6)]
    assert engine.feed_state(process_state(end=T0 + 30)) == ()  # NaN rq: no change


def test_impossible_value_event_has_one_alarm_per_channel():
    engine = AlarmEngine(only("impossible_value"))
    event = CleaningEvent(T0, "R1", "ph", 1.2, "below_physical_range")
    out = engine.feed_cleaning_event(event)
    assert {t.alarm_id for t in out} == {"R1/impossible_value/ph"}
    assert out[0].channel == "ph" and out[0].value == 1.2 and "1.2" in out[0].message
    again = engine.feed_cleaning_event(replace(event, timestamp=T0 + 5))
    assert states(again) == [
        ("R1/impossible_value/ph", "returned_unacknowledged", "active_unacknowledged"),
        ("R1/impossible_value/ph", "active_unacknowledged", "returned_unacknowledged"),
    ]


# ---- payloads, board, threads ---------------------------------------------------------------


def scenario() -> tuple[AlarmEngine, list[AlarmTransition]]:
    engine = AlarmEngine(DEFAULT_RULES)
    out = list(feed_do(engine, 0, 301, 14.0))
    out += engine.acknowledge(DO_LO_LO, "ana", at=T0 + 302)
    out += engine.shelve(DO_LO, "ana", "known issue", T0 + 4000, at=T0 + 303)
    out += engine.feed_sample("R1", T0 + 310, measured=10.0, predicted=14.0)
    out += engine.evaluate(T0 + 400)  # stale DO
    return engine, out


def test_payload_round_trips_through_json():
    _, transitions = scenario()
    assert len(transitions) >= 6
    for transition in transitions:
        text = json.dumps(transition_payload(transition), allow_nan=False)
        assert AlarmTransition.from_payload(text, now=T0) == transition


def test_a_viewer_rebuilds_the_engine_state_from_the_bus_payloads():
    engine, transitions = scenario()
    board = AlarmBoard()
    for transition in transitions:
        payload = json.dumps(transition_payload(transition)).encode()
        board.apply(AlarmTransition.from_payload(payload, now=T0))
    assert board.active_alarms() == engine.active_alarms()
    assert board.counts() == engine.counts()
    assert engine.counts().by_state["shelved"] == 1


def test_viewer_ignores_a_redelivered_event_raise():
    engine = AlarmEngine(only("glycerol_depleted"))
    raised, returned = engine.feed_event("R1", "glycerol_depleted", T0)
    board = AlarmBoard()
    for transition in (raised, returned, raised):
        board.apply(transition)
    assert board.get(raised.alarm_id).state is S.RETURNED_UNACK


def test_viewer_ignores_an_older_redelivered_transition():
    _, transitions = scenario()
    board = AlarmBoard()
    for transition in transitions:
        board.apply(transition)
    first = transitions[0]
    assert board.apply(first) is None
    assert board.get(first.alarm_id).state is S.ACTIVE_ACK


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "version"),
        ({"to": "exploded"}, "'to' must be one of"),
        ({"priority": 3}, "'priority' must be one of"),
        ({"alarm_id": "R1/other/lo"}, "does not match"),
        ({"at": "yesterday"}, "'at'"),
        ({"value": "high"}, "'value' must be a finite number"),
        ({"condition_active": "yes"}, "'condition_active'"),
        ({"reactor": None}, "'reactor' must be text"),
    ],
)
def test_malformed_payloads_are_rejected_with_the_field(change, message):
    _, transitions = scenario()
    payload = {**transition_payload(transitions[0]), **change}
    with pytest.raises(AlarmPayloadError, match=message):
        AlarmTransition.from_payload(payload, now=T0)


def test_non_json_payload_is_rejected():
    with pytest.raises(AlarmPayloadError, match="JSON"):
        AlarmTransition.from_payload(b"{not json", now=T0)
    with pytest.raises(AlarmPayloadError, match="object"):
        AlarmTransition.from_payload("[1, 2]", now=T0)


def test_event_fields_fit_the_notebook_alarm_table():
    _, transitions = scenario()
    shelve = next(t for t in transitions if t.to_state is S.SHELVED)
    row = shelve.event_fields()
    assert row["rule"] == "do_low/lo" and row["state"] == "shelved" and row["actor"] == "ana"
    assert "known issue" in row["message"] and row["occurred_at"].timestamp() == T0 + 303


def test_concurrent_feeding_from_threads_gives_each_reactor_the_same_alarms():
    engine = AlarmEngine(DEFAULT_RULES)
    results: dict[str, list] = {}

    def run(reactor: str) -> None:
        results[reactor] = feed_do(engine, 0, 400, 14.0, reactor=reactor)

    threads = [threading.Thread(target=run, args=(f"R{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shapes = {
        reactor: [(t.condition, t.at, t.to_state) for t in out] for reactor, out in results.items()
    }
    assert len(shapes) == 4 and len({tuple(shape) for shape in shapes.values()}) == 1
    assert engine.counts().by_priority["critical"] == 4


def test_overlong_actor_or_reason_is_refused():
    engine = raised_engine()
    with pytest.raises(AlarmActionError, match="longer than 64"):
        engine.acknowledge(DO_LO, "x" * 65, at=T0 + 302)
    with pytest.raises(AlarmActionError, match="longer than 500"):
        engine.shelve(DO_LO, "ana", "y" * 501, T0 + 3600, at=T0 + 302)


def test_readings_without_a_finite_time_are_refused_and_counted():
    engine = do_engine()
    assert engine.feed(Reading(math.nan, "R1", "do", 5.0)) == ()
    assert engine.feed(Reading(math.inf, "R1", "do", 5.0)) == ()
    assert engine.stats.untimed == 2
    assert feed_do(engine, 0, 301, 18.0) != []  # and the stream after them still works
    with pytest.raises(AlarmActionError, match="finite"):
        engine.evaluate(math.nan)


# ---- restart --------------------------------------------------------------------------------


def test_a_restarted_engine_takes_up_the_alarms_of_the_previous_run():
    before, transitions = scenario()
    stored = [json.dumps(transition_payload(t)) for t in transitions]  # what was kept
    after = AlarmEngine(DEFAULT_RULES)
    assert after.restore(AlarmTransition.from_payload(p, now=T0) for p in stored) == 4
    assert after.active_alarms() == before.active_alarms()
    # the DO recovers: the acknowledged critical returns to normal, the stale alarm returns
    # and waits for its ack, the shelved warning stays silent until its expiry
    back = after.feed(do(500, 40.0))
    assert states(back) == [
        (DO_LO_LO, "active_acknowledged", "normal"),
        ("R1/sensor_stale/do", "active_unacknowledged", "returned_unacknowledged"),
    ]
    assert after.acknowledge("R1/sensor_stale/do", "ana", at=T0 + 501)[0].to_state is S.NORMAL
    after.feed(do(3990, 41.0))  # after a gap: taken when the engine's time reaches it
    expired = after.evaluate(T0 + 4000)
    assert states(expired) == [(DO_LO, "shelved", "normal")]


def test_a_restored_once_only_event_is_not_raised_again():
    engine = AlarmEngine([EventRule("glycerol_depleted", "glycerol_depleted")])
    raised = engine.feed_event("R1", "glycerol_depleted", T0)
    restarted = AlarmEngine([EventRule("glycerol_depleted", "glycerol_depleted")])
    restarted.restore(raised)
    assert restarted.feed_event("R1", "glycerol_depleted", T0 + 60) == ()
    assert restarted.counts().unacknowledged == 1


def test_restore_skips_rules_no_longer_configured():
    _, transitions = scenario()
    engine = AlarmEngine(only("od600_disagreement"))
    assert engine.restore(transitions) == 1
    assert [v.rule for v in engine.active_alarms()] == ["od600_disagreement"]
