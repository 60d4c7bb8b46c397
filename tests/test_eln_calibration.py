"""Calibration rules of eln.calibration, checked against numbers worked out by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from bptwin.eln import calibration as cal
from bptwin.eln import calibration_validity as validity
from bptwin.eln.errors import NotebookValidationError
from bptwin.twin import units

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def test_nernst_slope_matches_the_twin_units_formula() -> None:
    # 59.16 mV × 303.15 K / 298.15 K = 60.152 mV per pH at 30 °C.
    assert cal.nernst_slope_mv(30.0) == pytest.approx(60.1521, abs=1e-4)
    for temperature in (5.0, 25.0, 37.0):
        assert cal.nernst_slope_mv(temperature) == pytest.approx(units.nernst_slope_mv(temperature))


def test_ph_two_point_passes_with_the_temperature_corrected_slope() -> None:
    # (168 − (−5)) mV / (2.99 × 60.152 mV) = 96.19 % at 30 °C.
    outcome = cal.evaluate_ph(-5.0, 168.0, 30.0)
    assert outcome.results["slope_percent"] == pytest.approx(96.189, abs=1e-3)
    assert outcome.results["offset_mv"] == -5.0
    assert outcome.passed and outcome.channel == "ph"
    assert outcome.kind is cal.CalibrationKind.PH
    # The same potentials at 25 °C would have given 97.8 %: the correction matters.
    assert cal.evaluate_ph(-5.0, 168.0, 25.0).results["slope_percent"] == pytest.approx(
        97.80, abs=0.01
    )


def test_ph_two_point_fails_below_95_percent_and_says_why() -> None:
    # 165 mV / (2.99 × 59.16 mV) = 93.28 %.
    outcome = cal.evaluate_ph(0.0, 165.0, 25.0)
    assert outcome.results["slope_percent"] == pytest.approx(93.279, abs=1e-3)
    assert not outcome.passed
    assert outcome.failures() == ["FAIL  slope 93.28 % (≥ 95 %)"]
    # A wizard and the ph_from_mv inverse agree at both buffers.
    good = cal.evaluate_ph(3.0, 172.0, 30.0).results
    for mv, ph in ((3.0, 7.0), (172.0, 4.01)):
        assert cal.ph_from_mv(mv, good["slope_percent"], good["offset_mv"], 30.0) == (
            pytest.approx(ph, abs=1e-3)
        )


def test_ph_remarks_on_untypical_offset_and_refuses_nonsense() -> None:
    outcome = cal.evaluate_ph(45.0, 220.0, 25.0)
    assert outcome.passed  # 98.9 %: the offset is a remark, not a fail
    assert any("offset beyond" in note for note in outcome.notes)
    with pytest.raises(NotebookValidationError) as caught:
        cal.evaluate_ph(0.0, 170.0, 95.0)
    assert caught.value.field == "buffer temperature"
    with pytest.raises(NotebookValidationError):
        cal.evaluate_ph(math.nan, 170.0, 25.0)


def test_mv_from_ph_inverts_ph_from_mv() -> None:
    mv = cal.mv_from_ph(5.2, 98.0, -4.0, 30.0)
    assert cal.ph_from_mv(mv, 98.0, -4.0, 30.0) == pytest.approx(5.2)


def test_t63_is_interpolated_between_readings() -> None:
    # 0 → 100 %: 63.21 % is crossed between (10 s, 50 %) and (20 s, 80 %): 10 + 13.21/30 × 10.
    readings = [(100.0, 0.0), (110.0, 50.0), (120.0, 80.0), (130.0, 95.0)]
    assert cal.t63_seconds(readings, 100.0, 0.0, 100.0) == pytest.approx(14.404, abs=1e-3)
    # A falling step works the same way; a signal that never gets there gives None.
    falling = [(0.0, 100.0), (5.0, 20.0)]
    # 100 → 0 %: 36.79 % is reached 63.21/80 of the way through 5 s = 3.951 s.
    assert cal.t63_seconds(falling, 0.0, 100.0, 0.0) == pytest.approx(3.951, abs=1e-3)
    assert cal.t63_seconds([(1.0, 10.0), (2.0, 20.0)], 0.0, 0.0, 100.0) is None


def test_t63_of_a_first_order_probe_is_its_time_constant() -> None:
    recorder = cal.StepRecorder(step_at=50.0, start_value=0.4)
    for second in range(50, 200):
        value = 0.4 + (100.0 - 0.4) * (1 - math.exp(-(second - 50) / 12.0))
        recorder.add(float(second), value)
    assert recorder.t63(100.0) == pytest.approx(12.0, abs=0.1)


def test_do_passes_under_30_s_and_fails_slow_or_dead_probes() -> None:
    good = cal.evaluate_do(0.4, 99.2, 12.0)
    assert good.passed
    assert good.results["gain"] == pytest.approx(100.0 / 98.8, abs=1e-5)
    slow = cal.evaluate_do(0.4, 99.2, 45.0)
    assert not slow.passed and "t63 45 s" in slow.failures()[0]
    dead = cal.evaluate_do(2.0, 30.0, 5.0)
    assert not dead.passed and "span − zero 28 %" in dead.failures()[0]
    assert not cal.evaluate_do(0.4, 99.2, None).passed


def test_stability_needs_the_whole_window_within_tolerance() -> None:
    detector = cal.StabilityDetector(window_s=60.0, tolerance=0.5)
    # Settling: 10 % dropping to 1 %, then flat at 1.0 ± 0.2.
    for t in range(0, 30):
        state = detector.add(float(t), 10.0 - 0.3 * t)
    assert not state.stable
    for t in range(30, 89):
        state = detector.add(float(t), 1.0 + (0.2 if t % 2 else -0.2))
    assert not state.stable  # the window still holds the tail of the fall
    state = detector.add(90.0, 1.0)
    assert state.stable and state.mean == pytest.approx(1.0, abs=0.01)
    assert state.covered_s >= 60.0
    held = detector.held_s
    detector.add(100.0, 1.1)
    assert detector.held_s == pytest.approx(held + 10.0)
    # One reading outside ± 0.5 of the mean breaks it; NaN and old timestamps are ignored.
    assert not detector.add(101.0, 3.0).stable
    count = detector.state().count
    assert detector.add(102.0, math.nan).count == count
    assert detector.add(50.0, 1.0).count == count


def test_offgas_zero_span_and_drift() -> None:
    readings = cal.OffgasReadings(o2_zero=0.05, co2_zero=0.02, o2_span=20.85, co2_span=0.045)
    held = {"o2_zero": 300.0, "o2_span": 310.0, "co2_zero": 300.0, "co2_span": 305.0}
    o2, co2 = cal.evaluate_offgas(readings, stable_for_s=held)
    assert o2.passed and co2.passed
    assert any("drift not assessed" in note for note in o2.notes)
    # Span drifted 0.25 % from the previous O₂ span: over the 0.2 % limit.
    previous = {"o2_zero": 0.0, "o2_span": 20.6, "co2_zero": 0.01, "co2_span": 0.05}
    o2, co2 = cal.evaluate_offgas(readings, previous=previous, stable_for_s=held)
    assert not o2.passed and o2.results["drift_percent"] == pytest.approx(0.25)
    assert co2.passed and co2.results["drift_percent"] == pytest.approx(0.01)
    # Out of the span window, and held for only 4 min.
    bad = cal.OffgasReadings(o2_zero=0.15, co2_zero=0.0, o2_span=21.2, co2_span=0.04)
    o2, _ = cal.evaluate_offgas(bad, stable_for_s={**held, "o2_span": 240.0})
    failed = " / ".join(o2.failures())
    assert "O₂ zero 0.15" in failed and "O₂ span 21.2" in failed and "span stable 4 min" in failed
    # Typed by hand: no stability check, a remark instead.
    o2, _ = cal.evaluate_offgas(readings)
    assert o2.passed and any("typed by hand" in note for note in o2.notes)


def test_previous_offgas_readings_come_from_the_measured_tables() -> None:
    found = cal.previous_offgas_readings(
        {"zero_percent": 0.02, "span_percent": 20.9}, {"zero_percent": 0.0, "span_percent": None}
    )
    assert found == {"o2_zero": 0.02, "o2_span": 20.9, "co2_zero": 0.0}


def test_pressure_zero_and_od_blank() -> None:
    assert cal.evaluate_pressure_zero(0.004).passed
    assert cal.evaluate_pressure_zero(-0.005).passed
    assert not cal.evaluate_pressure_zero(0.006).passed
    blank = cal.evaluate_od_blank(0.031)
    assert blank.passed and blank.results == {"blank_au": 0.031}
    with pytest.raises(NotebookValidationError):
        cal.evaluate_od_blank(7.0)


@dataclass
class Record:
    id: int
    performed_at: datetime
    passed: bool
    valid_until: datetime | None = None
    override_reason: str | None = None
    channel: str = "ph"
    kind: str = "ph_two_point"


def test_validity_periods_end_by_expiry_or_the_next_calibration() -> None:
    policy = validity.CalibrationPolicy.from_settings(["ph"], {"ph": 72})
    a = Record(1, T0, True, valid_until=T0 + timedelta(hours=72))
    b = Record(2, T0 + timedelta(hours=24), False)
    c = Record(3, T0 + timedelta(hours=48), True)  # no valid_until: the policy's 72 h
    periods = validity.validity_periods([c, a, b], policy)
    assert [(p.record.id, p.ended_by) for p in periods] == [
        (1, "superseded"),
        (2, "not accepted"),
        (3, "expired"),
    ]
    assert periods[0].valid_to == b.performed_at
    assert periods[2].valid_to == T0 + timedelta(hours=120)
    # Seen before its expiry, the last one is in force (until its expiry), not "expired".
    now = T0 + timedelta(hours=60)
    in_force = validity.validity_periods([c, a, b], policy, now)[2]
    assert (in_force.ended_by, in_force.valid_to) == ("", T0 + timedelta(hours=120))
    past = validity.validity_periods([c, a, b], policy, T0 + timedelta(hours=120))[2]
    assert past.ended_by == "expired"
    # A reading at 30 h was taken after the failed calibration: no calibration in force.
    assert validity.period_at(b, c, T0 + timedelta(hours=30), policy) is None
    at_50h = validity.period_at(c, None, T0 + timedelta(hours=50), policy)
    assert at_50h is not None and at_50h.record is c
    assert validity.period_at(c, None, T0 + timedelta(hours=121), policy) is None
    # A supervisor's override makes a failed one count.
    b.override_reason = "slope 94.8 %, new probe ordered"
    assert validity.period_at(b, c, T0 + timedelta(hours=30), policy) is not None


def test_blocking_problems_and_policy_channels() -> None:
    policy = validity.CalibrationPolicy.from_settings(["ph", "offgas"], {"ph": 24})
    assert policy.mandatory_channels == ("ph", "offgas_o2", "offgas_co2")
    assert validity.blocking_problem(None, T0, policy) == "never calibrated"
    assert validity.blocking_problem(Record(1, T0, False), T0, policy) == "last calibration failed"
    old = Record(1, T0 - timedelta(hours=25), True)
    assert validity.blocking_problem(old, T0, policy) == "expired 2026-03-01 07:00 UTC"
    assert validity.blocking_problem(Record(1, T0 - timedelta(hours=2), True), T0, policy) is None
    with pytest.raises(ValueError, match="unknown calibration kind 'foo'"):
        validity.CalibrationPolicy.from_settings(["foo"], {})


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_notebook_traces_readings_to_the_calibration_in_force(
    notebook_url: str, monkeypatch
) -> None:
    """Against the real store: history with intervals, in-force lookup, start blocked by policy."""
    from bptwin.database.relational import make_engine
    from bptwin.eln.services import NotebookService

    monkeypatch.setattr("bptwin.eln.pins.SCRYPT_N", 2**10)
    clock = Clock(T0)
    policy = validity.CalibrationPolicy.from_settings(["ph"], {"ph": 24})
    notebook = NotebookService(make_engine(notebook_url), clock=clock, calibration_policy=policy)
    notebook.operators.create_operator("setup", "sam", "supervisor", "4321")
    notebook.batches.create_batch("sam", 3, "A")
    first = cal.evaluate_ph(-2.0, 170.0, 25.0)
    notebook.calibrations.record_calibration(
        "sam", **first.record_fields(), valid_until=policy.valid_until(first.kind, T0)
    )
    clock.now = T0 + timedelta(hours=10)
    failed = cal.evaluate_ph(0.0, 160.0, 25.0)
    notebook.calibrations.record_calibration("sam", **failed.record_fields())
    assert notebook.calibrations.calibration_blockers(3) == [("ph", "last calibration failed")]
    in_force = notebook.calibrations.calibration_in_force("ph", T0 + timedelta(hours=5))
    assert in_force is not None and in_force.record.results["offset_mv"] == -2.0
    assert in_force.valid_to == T0 + timedelta(hours=10) and in_force.ended_by == "superseded"
    assert notebook.calibrations.calibration_in_force("ph", T0 + timedelta(hours=11)) is None
    assert notebook.calibrations.calibration_in_force("ph", T0 - timedelta(hours=1)) is None
    history = notebook.calibrations.calibration_history("ph")
    assert [p.ended_by for p in history] == ["not accepted", "superseded"]
    # DO and off-gas are not mandatory under this policy: only pH blocks.
    clock.now = T0 + timedelta(hours=11)
    notebook.calibrations.record_calibration(
        "sam", **cal.evaluate_ph(1.0, 172.0, 25.0).record_fields()
    )
    assert notebook.calibrations.missing_calibrations(3) == []
    clock.now = T0 + timedelta(hours=36)  # 25 h after 19:00: past the policy's 24 h
    assert notebook.calibrations.calibration_blockers(3) == [("ph", "expired 2026-03-02 19:00 UTC")]


def test_calibration_settings_make_the_policy_and_refuse_unknown_kinds(tmp_path) -> None:
    from bptwin.tui.settings import SettingsError, load_settings

    path = tmp_path / "bptwin.toml"
    path.write_text(
        '[calibration]\nmandatory = ["ph", "pressure"]\n\n[calibration.validity_hours]\nph = 48\n'
    )
    policy = load_settings(path).calibration.policy()
    assert policy.mandatory_channels == ("ph", "pressure")
    assert policy.validity[cal.CalibrationKind.PH] == timedelta(hours=48)
    assert policy.validity[cal.CalibrationKind.PRESSURE] == timedelta(hours=720)
    path.write_text('[calibration]\nmandatory = ["ph", "redox"]\n')
    with pytest.raises(SettingsError, match=r"calibration\.mandatory"):
        load_settings(path)
    path.write_text("[calibration.validity_hours]\nph = 0\n")
    with pytest.raises(SettingsError, match=r"calibration\.validity_hours\.ph"):
        load_settings(path)


def test_stability_detector_agrees_with_a_brute_force_window() -> None:
    """The O(1) running sum and min/max queues give what recomputing the window gives."""
    import random

    rng = random.Random(3)
    detector = cal.StabilityDetector(window_s=30.0, tolerance=0.5)
    window: list[tuple[float, float]] = []
    for i in range(1500):
        t = i * 0.7 + rng.random() * 0.3
        value = rng.gauss(5.0, 0.2 if i % 200 > 50 else 3.0)
        state = detector.add(t, value)
        window.append((t, value))
        while len(window) > 1 and window[1][0] <= t - 30.0:
            window.pop(0)
        values = [v for _, v in window]
        mean = sum(values) / len(values)
        assert state.mean == pytest.approx(mean, abs=1e-9)
        assert state.spread == pytest.approx(max(abs(v - mean) for v in values), abs=1e-9)
        assert state.stable == (
            t - window[0][0] >= 30.0 - 1e-9 and max(abs(v - mean) for v in values) <= 0.5
        )
