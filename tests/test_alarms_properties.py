"""Property: random streams and operator actions never produce a transition the state machine
does not allow, every alarm's transitions chain, and a viewer rebuilds the same picture."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

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
    ALLOWED_TRANSITIONS,
    AlarmActionError,
    AlarmBoard,
    AlarmEngine,
    AlarmState,
    AlarmTransition,
    transition_payload,
)

T0 = 1_790_000_000.0
ENGINE_REASONS = {"condition", "returned", "event", "shelve_expired"}

# Short delays so random streams of a few dozen steps reach every state.
RULES = (
    LimitRule(
        "do_low",
        "do",
        (
            LimitLevel(LevelKind.LO, 20.0, Priority.WARNING, on_delay_s=20, off_delay_s=5),
            LimitLevel(LevelKind.LO_LO, 15.0, Priority.CRITICAL, on_delay_s=10),
        ),
        deadband=1.0,
    ),
    RateOfChangeRule("do_rate", "do", window_s=20, max_rise_per_min=10, max_fall_per_min=10),
    StaleRule("sensor_stale", ("do",), max_age_s=30),
    FrozenRule("sensor_frozen", ("do",), duration_s=40),
    ModelDisagreementRule("od600_disagreement", max_percent=20),
    EventRule("glycerol_depleted", "glycerol_depleted", once=False),
)

values = st.one_of(
    st.floats(min_value=5.0, max_value=30.0, allow_nan=False),
    st.sampled_from([14.0, 19.5, 20.5, 25.0, math.nan]),
)
steps = st.one_of(
    st.tuples(st.just("read"), st.integers(1, 15), values, st.integers(1, 30)),
    st.tuples(st.just("evaluate"), st.integers(0, 120)),
    st.tuples(st.just("ack"), st.integers(0, 9)),
    st.tuples(st.just("shelve"), st.integers(0, 9), st.integers(1, 200)),
    st.tuples(st.just("unshelve"), st.integers(0, 9)),
    st.tuples(st.just("oos"), st.integers(0, 9)),
    st.tuples(st.just("return"), st.integers(0, 9)),
    st.tuples(st.just("sample"), st.floats(1.0, 30.0), st.floats(0.0, 40.0)),
    st.tuples(
        st.just("event"),
    ),
)


def run(engine: AlarmEngine, program) -> list[AlarmTransition]:
    now = T0
    out: list[AlarmTransition] = []
    for step in program:
        kind = step[0]
        ids = sorted({t.alarm_id for t in out})
        try:
            if kind == "read":
                _, dt, value, count = step
                for _ in range(count):
                    now += dt
                    quality = Quality.BAD if math.isnan(value) else Quality.GOOD
                    out += engine.feed(Reading(now, "R1", "do", value, "%sat", quality))
            elif kind == "evaluate":
                now += step[1]
                out += engine.evaluate(now)
            elif kind == "sample":
                out += engine.feed_sample("R1", now, step[1], step[2])
            elif kind == "event":
                out += engine.feed_event("R1", "glycerol_depleted", now)
            elif ids:
                alarm_id = ids[step[1] % len(ids)]
                if kind == "ack":
                    out += engine.acknowledge(alarm_id, "ana", at=now)
                elif kind == "shelve":
                    out += engine.shelve(alarm_id, "ana", "test", now + step[2], at=now)
                elif kind == "unshelve":
                    out += engine.unshelve(alarm_id, "ben", at=now)
                elif kind == "oos":
                    out += engine.remove_from_service(alarm_id, "ana", "maintenance", at=now)
                elif kind == "return":
                    out += engine.return_to_service(alarm_id, "ana", at=now)
        except AlarmActionError:
            pass  # refusing an action that does not apply is correct behaviour
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(steps, min_size=1, max_size=40))
def test_random_streams_only_make_allowed_transitions(program):
    engine = AlarmEngine(RULES)
    out = run(engine, program)
    last: dict[str, AlarmState] = {}
    for t in out:
        assert (t.from_state, t.to_state) in ALLOWED_TRANSITIONS, t
        assert t.from_state is last.get(t.alarm_id, AlarmState.NORMAL), t
        last[t.alarm_id] = t.to_state
        # the engine's own transitions carry nobody; every operator action carries the operator
        assert (t.actor is None) == (t.reason in ENGINE_REASONS), t
    for alarm_id, state in last.items():
        assert engine.alarm(alarm_id).state is state
    assert sum(engine.counts().by_state.values()) == len(last)
    assert engine.stats.transitions == len(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(steps, min_size=1, max_size=40))
def test_a_viewer_fed_the_payloads_sees_what_the_engine_sees(program):
    engine = AlarmEngine(RULES)
    board = AlarmBoard(ignore_older=False)
    for t in run(engine, program):
        board.apply(AlarmTransition.from_payload(json.dumps(transition_payload(t)), now=T0))
    assert board.counts() == engine.counts()
    assert [(v.alarm_id, v.state) for v in board.active_alarms()] == [
        (v.alarm_id, v.state) for v in engine.active_alarms()
    ]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=200))
def test_the_default_rules_accept_any_float_stream(stream):
    engine = AlarmEngine(DEFAULT_RULES)
    for index, value in enumerate(stream):
        for channel in ("do", "ph", "temp_broth"):
            engine.feed(Reading(T0 + index, "R1", channel, value))
    engine.evaluate(T0 + len(stream) + 3600)
    for view in engine.active_alarms():
        assert view.state is not AlarmState.NORMAL


@settings(max_examples=60, deadline=None)
@given(st.lists(steps, min_size=1, max_size=40), st.lists(steps, min_size=1, max_size=20))
def test_a_restored_engine_carries_on_by_the_state_machine(program, more):
    engine = AlarmEngine(RULES)
    before = run(engine, program)
    restarted = AlarmEngine(RULES)
    restarted.restore(before)
    assert restarted.active_alarms() == engine.active_alarms()
    last = {t.alarm_id: t.to_state for t in before}
    for t in run(restarted, more):
        assert (t.from_state, t.to_state) in ALLOWED_TRANSITIONS, t
        assert t.from_state is last.get(t.alarm_id, AlarmState.NORMAL), t
        last[t.alarm_id] = t.to_state
