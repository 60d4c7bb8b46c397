"""The advisory controller's rules on hand-made process-state sequences."""

from __future__ import annotations

import itertools
import math

import pytest

from bptwin.twin.control import (
    O2_FLOW,
    RULE_CASCADE_EXHAUSTED,
    RULE_DEPLETED_O2_OFF,
    RULE_DO_FALLING_STIRRER,
    RULE_DO_HIGH_O2,
    RULE_DO_HIGH_STIRRER,
    RULE_DO_LOW_O2,
    RULE_DO_LOW_STIRRER,
    RULE_DO_MISSING,
    RULE_RQ_HIGH,
    STIRRER,
    AdvisoryController,
    ControlConfig,
    Setpoints,
)
from tests.control_states import WINDOW_S, make_state, with_changes


def follow(setpoints: Setpoints, recommendations) -> Setpoints:
    """An operator who does what the advice says."""
    values = {"stirrer_speed": setpoints.stirrer_speed, "o2_flow": setpoints.o2_flow}
    for rec in recommendations:
        if rec.is_change:
            values[rec.parameter] = rec.recommended
    return Setpoints(**values)


def test_falling_do_raises_the_stirrer_in_50_rpm_steps_at_most_once_a_minute() -> None:
    controller = AdvisoryController()
    setpoints = Setpoints(500.0, 0.0)
    steps = []
    for index in range(40):
        do = max(22.0, 45.0 - index)  # falls 1 % per window, then sits low
        recs = controller.update(make_state(index, do, do_slope=-120.0), setpoints)
        steps += [(index, rec) for rec in recs]
        setpoints = follow(setpoints, recs)
    assert steps, "a falling DO must give advice"
    stirrer = [rec for _, rec in steps if rec.parameter == STIRRER]
    assert [rec.recommended for rec in stirrer] == [550.0 + 50 * i for i in range(10)]
    assert all(rec.recommended - rec.current == 50.0 for rec in stirrer)
    # Only once the stirrer is at 1000 rpm does O2 enrichment follow.
    assert steps[len(stirrer)][1].parameter == O2_FLOW
    assert all(rec.parameter == O2_FLOW for _, rec in steps[len(stirrer) :])
    # Rate limit: consecutive steps at least 60 s (two windows) apart.
    indices = [index for index, _ in steps]
    assert all(b - a >= 2 for a, b in itertools.pairwise(indices))
    first = steps[0][1]
    assert first.rule in (RULE_DO_LOW_STIRRER, RULE_DO_FALLING_STIRRER)
    assert "500 → 550 rpm" in first.reason
    low = next(rec for _, rec in steps if rec.rule == RULE_DO_LOW_STIRRER)
    assert "below the 30 % cascade level" in low.reason
    assert 0 < first.confidence <= 1


def test_reason_quotes_the_measured_do() -> None:
    controller = AdvisoryController()
    (rec,) = controller.update(make_state(0, 24.3), Setpoints(700.0))
    assert rec.rule == RULE_DO_LOW_STIRRER
    assert "DO 24.3 %" in rec.reason
    assert "700 → 750 rpm" in rec.reason
    assert (rec.current, rec.recommended, rec.unit) == (700.0, 750.0, "rpm")


def test_at_1000_rpm_the_cascade_moves_on_to_o2_enrichment_up_to_0_3_vvm() -> None:
    controller = AdvisoryController()
    setpoints = Setpoints(1000.0, 0.0)
    sent = []
    for index in range(0, 80):
        recs = controller.update(make_state(index, 18.0, rpm=1000.0), setpoints)
        sent += [rec for rec in recs if rec.is_change]
        setpoints = follow(setpoints, recs)
    assert sent[0].parameter == O2_FLOW
    assert sent[0].rule == RULE_DO_LOW_O2
    assert "1000 rpm limit" in sent[0].reason and "0.00 → 0.02 L/min" in sent[0].reason
    assert all(rec.parameter == O2_FLOW for rec in sent)
    assert math.isclose(setpoints.o2_flow, 0.3)
    assert all(rec.recommended <= 0.3 + 1e-9 for rec in sent)
    # Below 20 % a step may follow every window (critical), so the ramp took 15 windows.
    assert len(sent) == 15
    # Then the cascade is exhausted: advice to hold, with the reason, not a change.
    (standing,) = controller.advice
    assert standing.rule == RULE_CASCADE_EXHAUSTED and not standing.is_change
    assert "exhausted" in standing.reason


def test_high_do_gives_o2_back_first_then_the_stirrer_with_hysteresis() -> None:
    controller = AdvisoryController()
    setpoints = Setpoints(1000.0, 0.06)
    changes = []
    for index in range(200):
        recs = controller.update(make_state(index, 92.0, rpm=1000.0, o2=0.06), setpoints)
        changes += [(index, rec) for rec in recs if rec.is_change]
        setpoints = follow(setpoints, recs)
    o2_steps = [rec for _, rec in changes if rec.parameter == O2_FLOW]
    rpm_steps = [rec for _, rec in changes if rec.parameter == STIRRER]
    assert [rec.recommended for rec in o2_steps] == [0.04, 0.02, 0.0]
    assert all(rec.rule == RULE_DO_HIGH_O2 for rec in o2_steps)
    assert "above 60 %" in o2_steps[0].reason and "0.06 → 0.04 L/min" in o2_steps[0].reason
    # The stirrer only after O2 is off, in 50 rpm steps, at most one per 5 min.
    first_rpm = next(i for i, rec in changes if rec.parameter == STIRRER)
    last_o2 = max(i for i, rec in changes if rec.parameter == O2_FLOW)
    assert first_rpm > last_o2
    assert all(rec.rule == RULE_DO_HIGH_STIRRER for rec in rpm_steps)
    assert [rec.current - rec.recommended for rec in rpm_steps] == [50.0] * len(rpm_steps)
    rpm_indices = [i for i, rec in changes if rec.parameter == STIRRER]
    assert all((b - a) * WINDOW_S >= 300 for a, b in itertools.pairwise(rpm_indices))
    assert setpoints.stirrer_speed >= 500.0


def test_do_in_the_band_gives_no_advice() -> None:
    controller = AdvisoryController()
    for index in range(30):
        assert controller.update(make_state(index, 45.0, rpm=800.0), Setpoints(800.0)) == []
    assert controller.advice == ()


def test_no_step_down_right_after_a_step_up_so_it_does_not_chatter() -> None:
    config = ControlConfig()
    controller = AdvisoryController(config)
    setpoints = Setpoints(1000.0, 0.1)
    (up,) = controller.update(make_state(0, 25.0, rpm=1000.0, o2=0.1), setpoints)
    assert up.direction == 1
    setpoints = follow(setpoints, [up])
    hold_windows = int(config.reversal_hold_s / WINDOW_S)
    downs = []
    for index in range(1, 60):
        recs = controller.update(make_state(index, 75.0, rpm=1000.0, o2=0.12), setpoints)
        downs += [(index, rec) for rec in recs if rec.direction == -1]
        setpoints = follow(setpoints, recs)
    assert downs, "DO stays high: O2 must be given back eventually"
    assert downs[0][0] >= hold_windows


def test_standing_advice_is_emitted_once_then_repeated_after_repeat_s() -> None:
    config = ControlConfig(repeat_s=300.0)
    controller = AdvisoryController(config)
    setpoints = Setpoints(600.0)  # the operator does not follow the advice
    emitted = []
    for index in range(25):
        emitted += controller.update(make_state(index, 25.0, rpm=600.0), setpoints)
        assert [rec.recommended for rec in controller.advice] == [650.0]
    assert [rec.recommended for rec in emitted] == [650.0, 650.0, 650.0]
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(emitted)]
    assert all(gap >= 300.0 for gap in gaps)


def test_high_rq_with_low_do_is_explained_as_o2_limitation() -> None:
    controller = AdvisoryController()
    recs = []
    for index in range(8):
        state = make_state(index, 60.0 if index < 7 else 25.0, rq=0.93, rpm=700.0)
        recs = controller.update(state, Setpoints(700.0))
    (rec,) = recs
    assert rec.parameter == STIRRER and rec.is_change
    assert "RQ 0.93 above the glycerol band 0.65–0.75" in rec.reason
    assert "O2 limitation" in rec.reason


def test_high_rq_with_comfortable_do_is_a_watch_not_a_change() -> None:
    controller = AdvisoryController()
    recs = []
    for index in range(8):
        recs += controller.update(make_state(index, 55.0, rq=0.9, rpm=700.0), Setpoints(700.0))
    (rec,) = recs
    assert rec.rule == RULE_RQ_HIGH and not rec.is_change
    assert "RQ 0.90" in rec.reason and "overfeeding" in rec.reason
    assert rec.confidence < 0.9


def test_rq_watch_ignores_gated_or_short_excursions() -> None:
    controller = AdvisoryController()
    for index in range(10):
        state = make_state(index, 55.0, rq=0.9)
        if index % 3 == 0:
            state = with_changes(state, low_signal=True)
        assert controller.update(state, Setpoints(500.0)) == []
    short = AdvisoryController()
    for index in range(5):  # fewer than rq_persist_windows
        assert short.update(make_state(index, 55.0, rq=0.9), Setpoints(500.0)) == []


def test_missing_do_holds_and_says_so() -> None:
    controller = AdvisoryController()
    state = make_state(0, math.nan, rpm=800.0)
    (rec,) = controller.update(state, Setpoints(800.0))
    assert rec.rule == RULE_DO_MISSING and not rec.is_change
    assert "DO probe" in rec.reason


def test_confirmed_depletion_closes_the_o2_at_once() -> None:
    controller = AdvisoryController()
    (rec,) = controller.update(make_state(0, 85.0, rpm=1000.0, o2=0.2, depleted=True),
                               Setpoints(1000.0, 0.2))  # fmt: skip
    assert rec.rule == RULE_DEPLETED_O2_OFF
    assert (rec.current, rec.recommended) == (0.2, 0.0)
    assert "depletion" in rec.reason


def test_setpoints_come_from_the_window_when_not_given() -> None:
    controller = AdvisoryController()
    (rec,) = controller.update(make_state(0, 25.0, rpm=649.6, o2=0.0))
    assert (rec.current, rec.recommended) == (650.0, 700.0)
    assert Setpoints.from_state(make_state(0, 50.0, rpm=math.nan)) is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"stirrer_speed": -1.0}, "stirrer_speed"),
        ({"stirrer_speed": 500.0, "o2_flow": math.nan}, "o2_flow"),
        ({"stirrer_speed": "fast"}, "must be a number"),
    ],
)
def test_bad_setpoints_are_refused_by_name(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        Setpoints(**kwargs)


def test_inconsistent_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="do_critical_pct < do_low_pct"):
        ControlConfig(do_low_pct=15.0)
    with pytest.raises(ValueError, match="stirrer_min_rpm"):
        ControlConfig(stirrer_min_rpm=1200.0)
