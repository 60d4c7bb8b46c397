"""Calibration wizards driven through Pilot against the real notebook (SQLite and Postgres),
with live readings fed as the app feeds them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from textual.widgets import DataTable

from bptwin.database.reading import Reading
from bptwin.database.relational import make_engine
from bptwin.eln import calibration as cal
from bptwin.eln.calibration_validity import CalibrationPolicy
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.screens.calibration import (
    CalibrationHistoryScreen,
    CalibrationMenuScreen,
    CalibrationSaved,
    CalibrationWizardScreen,
)
from bptwin.screens.entry_widgets import LabelledField
from bptwin.twin.live import LiveSnapshot
from tests.screens_harness import (
    OPERATOR,
    OPERATOR_PIN,
    SUPERVISOR,
    SUPERVISOR_PIN,
    ScreenHarness,
    settle,
    text_of,
)
from tests.screens_harness import (
    enter_text as type_into,
)

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
BATCH = 12
T_START = NOW.timestamp() - 600.0  # readings of the last ten minutes


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def setup_notebook(url: str, now: datetime = NOW) -> NotebookService:
    """Operators and batch 12 in setup; validity 72 h for every calibration kind."""
    policy = CalibrationPolicy.from_settings(
        ["ph", "do", "offgas"], dict.fromkeys(cal.KIND_BY_SETTING, 72.0)
    )
    notebook = NotebookService(make_engine(url), clock=lambda: now, calibration_policy=policy)
    notebook.operators.create_operator("setup", SUPERVISOR, OperatorRole.SUPERVISOR, SUPERVISOR_PIN)
    notebook.operators.create_operator(SUPERVISOR, OPERATOR, OperatorRole.OPERATOR, OPERATOR_PIN)
    notebook.batches.create_batch(OPERATOR, BATCH, "B", strain="X-33", vessel="V1", reactor_id="R1")
    return notebook


class Harness(ScreenHarness):
    def on_calibration_saved(self, message: CalibrationSaved) -> None:
        self.messages.append(message)


def wizard(notebook: NotebookService, kind: str) -> Harness:
    """The app showing the ``kind`` wizard for batch BATCH, written straight to ``notebook``."""
    return Harness(
        lambda: CalibrationWizardScreen(
            DirectNotebook(notebook), OPERATOR, kind, batch_number=BATCH
        )
    )


def feed(screen: CalibrationWizardScreen, channel: str, values: list[tuple[float, float]]) -> None:
    unit = {"ph": "pH", "temp_ph_probe": "°C", "do": "%sat"}.get(channel, "")
    for t, value in values:
        screen.show_reading(Reading(t, "R1", channel, value, unit))


def flat(start: float, seconds: int, value: float) -> list[tuple[float, float]]:
    return [(start + i, value + (0.001 if i % 2 else -0.001)) for i in range(seconds)]


async def test_ph_wizard_passes_from_live_readings_taken_when_stable(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    app = wizard(notebook, "ph_two_point")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CalibrationWizardScreen)
        # The app hands over whole snapshots: only this reactor's channels count.
        screen.show_snapshot(
            LiveSnapshot(
                taken_at=T_START,
                latest={
                    ("R1", "temp_ph_probe"): Reading(T_START, "R1", "temp_ph_probe", 25.0, "°C"),
                    ("R2", "ph"): Reading(T_START, "R2", "ph", 3.0, "pH"),
                },
            )
        )
        assert (
            screen.live_temperature_c == 25.0 and screen.detectors["e_first_mv"].state().count == 0
        )
        # Still settling after 10 s: taking is refused, next to the field.
        feed(screen, "ph", [(T_START + i, 7.3 - 0.03 * i) for i in range(10)])
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert "not stable yet" in screen.query_one("#e_first_mv-field", LabelledField).error
        assert "e_first_mv" not in screen.values
        # Then 35 s flat at pH 7.00: 0 mV through the ideal electrode (no calibration in force).
        feed(screen, "ph", flat(T_START + 10, 35, 7.0))
        assert "STABLE" in text_of(pilot, "#live-e_first_mv")
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert screen.values["e_first_mv"] == pytest.approx(0.0, abs=0.1)
        assert "step 2 of 2" in text_of(pilot, "#wizard-title")
        # A 97 % electrode in pH 4.01 shows 7 − 0.97 × 2.99 = 4.0997 on an ideal transmitter.
        feed(screen, "ph", flat(T_START + 50, 35, 4.0997))
        await pilot.press("ctrl+g")
        await settle(pilot)
        result = text_of(pilot, "#wizard-result")
        assert result.startswith("PASS") and "slope 97" in result
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Stored calibration" in text_of(pilot, ".entry-status")
    [record] = notebook.calibrations.list_calibrations(channel="ph")
    assert record.passed and record.kind == "ph_two_point" and record.performed_by == OPERATOR
    assert record.results["slope_percent"] == pytest.approx(97.0, abs=0.1)
    assert record.measured["temperature_c"] == 25.0
    assert record.measured["e_first_mv_source"] == "live" and record.measured["reactor"] == "R1"
    valid_until = record.valid_until.replace(tzinfo=timezone.utc)  # SQLite gives naive UTC
    assert valid_until == NOW + timedelta(hours=72)
    assert [type(m).__name__ for m in app.messages] == ["CalibrationSaved"]
    assert notebook.calibrations.calibration_in_force("ph", NOW + timedelta(hours=1)) is not None


async def test_ph_wizard_fails_a_weak_electrode_typed_by_hand(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    app = wizard(notebook, "ph_two_point")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await type_into(pilot, "e_first_mv", "abc")
        await pilot.press("ctrl+g")
        await pilot.pause()
        field = pilot.app.screen.query_one("#e_first_mv-field", LabelledField)
        assert "'abc' is not a number" in field.error
        await type_into(pilot, "e_first_mv", "2")
        await pilot.press("ctrl+g")
        await type_into(pilot, "temperature", "25")
        await type_into(pilot, "e_second_mv", "162")
        await pilot.press("ctrl+g")
        await settle(pilot)
        # (162 − 2) / (2.99 × 59.16) = 90.45 %.
        result = text_of(pilot, "#wizard-result")
        assert result.startswith("FAIL") and "slope 90.45 % (≥ 95 %)" in result
        assert "FAILED" in text_of(pilot, ".entry-status")
        await pilot.press("ctrl+s")
        await settle(pilot)
    [record] = notebook.calibrations.list_calibrations(channel="ph")
    assert not record.passed and record.measured["e_second_mv_source"] == "typed by hand"
    assert ("ph", "last calibration failed") in notebook.calibrations.calibration_blockers(BATCH)


async def test_do_wizard_measures_t63_from_the_fed_step(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    app = wizard(notebook, "do_zero_span")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CalibrationWizardScreen)
        feed(screen, "do", flat(T_START, 70, 0.3))
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert screen.values["zero"] == pytest.approx(0.3, abs=0.01)
        # Without marking the gas switch there is no t63 to take.
        step_at = T_START + 69
        await pilot.press("ctrl+r")
        # First-order probe, τ = 12 s: t63 = 12 s.
        response = [
            (step_at + i, 0.3 + (99.6 - 0.3) * (1 - math.exp(-i / 12.0))) for i in range(1, 200)
        ]
        feed(screen, "do", response)
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert screen.t63_s == pytest.approx(12.0, abs=0.3)
        assert text_of(pilot, "#wizard-result").startswith("PASS")
        await pilot.press("ctrl+s")
        await settle(pilot)
    [record] = notebook.calibrations.list_calibrations(channel="do")
    assert record.passed and record.results["t63_s"] == pytest.approx(12.0, abs=0.3)
    assert record.measured["span_raw_percent"] == pytest.approx(99.6, abs=0.05)


async def test_menu_lists_state_and_history_shows_validity_intervals(tmp_path) -> None:
    from bptwin.database.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = setup_notebook(url)
    earlier = NOW - timedelta(hours=30)
    outcome = cal.evaluate_ph(1.0, 172.0, 25.0)
    notebook.calibrations.record_calibration(
        OPERATOR,
        **outcome.record_fields(),
        performed_at=earlier,
        valid_until=earlier + timedelta(hours=24),
    )
    notebook.calibrations.record_calibration(
        OPERATOR, **cal.evaluate_ph(0.0, 150.0, 25.0).record_fields(), performed_at=NOW
    )
    do_outcome = cal.evaluate_do(0.2, 99.8, 12.0)  # passed 2 h ago, valid 72 h: in force
    notebook.calibrations.record_calibration(
        OPERATOR, **do_outcome.record_fields(), performed_at=NOW - timedelta(hours=2)
    )
    app = Harness(
        lambda: CalibrationMenuScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = pilot.app.screen.query_one(DataTable)
        assert table.get_row_at(0)[:4] == ["ph", "yes", "03-02 07:00", "FAIL"]
        assert table.get_row_at(1)[2:5] == ["03-02 05:00", "pass", "03-05 05:00"]
        assert table.get_row_at(2)[2] == "never"
        assert "ph: last calibration failed" in text_of(pilot, "#calibration-detail")
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CalibrationHistoryScreen)
        history = pilot.app.screen.query_one(DataTable)
        assert history.row_count == 2
        assert history.get_row_at(0)[3] == "FAIL" and history.get_row_at(0)[6] == "not accepted"
        assert history.get_row_at(1)[4:] == ["03-01 01:00", "03-02 01:00", "expired"]
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("down")
        await pilot.press("h")
        await settle(pilot)
        history = pilot.app.screen.query_one(DataTable)
        assert history.get_row_at(0)[3:] == ["pass", "03-02 05:00", "03-05 05:00", "in force"]
        await pilot.press("escape")
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(pilot.app.screen, CalibrationWizardScreen)
        assert pilot.app.screen.kind is cal.CalibrationKind.DO


def feed_offgas(screen: CalibrationWizardScreen, start: float, o2: float, co2: float) -> None:
    """Five minutes and a bit of analyser readings at 1 Hz, ± 0.01 % noise."""
    for i in range(310):
        wobble = 0.01 if i % 2 else -0.01
        screen.show_reading(Reading(start + i, "R1", "offgas_o2", o2 + wobble, "%v/v"))
        screen.show_reading(Reading(start + i, "R1", "offgas_co2", co2 + wobble / 10, "%v/v"))


async def test_offgas_wizard_checks_zero_span_stability_and_drift(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    earlier = NOW - timedelta(days=7)
    for outcome in cal.evaluate_offgas(cal.OffgasReadings(0.0, 0.0, 20.9, 0.04)):
        notebook.calibrations.record_calibration(
            OPERATOR, **outcome.record_fields(), performed_at=earlier
        )
    app = wizard(notebook, "offgas_zero_span")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CalibrationWizardScreen)
        assert screen.previous_offgas["o2_span"] == 20.9
        feed_offgas(screen, T_START - 1000, 0.03, 0.01)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert screen.values["o2_zero"] == pytest.approx(0.03, abs=0.005)
        # The O₂ span reads 20.65 %: outside 20.9 ± 0.2 %, and 0.25 % off the last one.
        feed_offgas(screen, T_START - 600, 20.65, 0.045)
        await pilot.press("ctrl+g")
        await settle(pilot)
        result = text_of(pilot, "#wizard-result")
        assert result.startswith("FAIL")
        assert "FAIL  O₂ span 20.65 %" in result and "FAIL  O₂ drift 0.25 %" in result
        assert "PASS  CO₂ span 0.045 %" in result and "PASS  O₂ span stable" in result
        await pilot.press("ctrl+s")
        await settle(pilot)
        # Each record with its own verdict: the CO₂ channel passed.
        stored = text_of(pilot, ".entry-status")
        assert "offgas_o2 FAIL" in stored and "offgas_co2 pass" in stored
    o2 = notebook.calibrations.list_calibrations(channel="offgas_o2")[0]
    co2 = notebook.calibrations.list_calibrations(channel="offgas_co2")[0]
    assert not o2.passed and co2.passed
    assert o2.results["drift_percent"] == pytest.approx(0.25, abs=0.01)
    assert o2.measured["span_stable_s"] >= 300.0
    assert {c for c, _ in notebook.calibrations.calibration_blockers(BATCH)} == {
        "ph",
        "do",
        "offgas_o2",
    }


async def test_pressure_zero_and_od_blank_typed_by_hand(tmp_path) -> None:
    from bptwin.database.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = setup_notebook(url)
    for kind, field_id, typed, passed in (
        ("pressure_zero", "zero", "0.007", False),
        ("od_probe_blank", "blank", "0.03", True),
    ):
        app = Harness(
            lambda kind=kind: CalibrationWizardScreen(DirectNotebook(notebook), OPERATOR, kind)
        )
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await type_into(pilot, field_id, typed)
            await pilot.press("ctrl+g")
            await settle(pilot)
            verdict = text_of(pilot, "#wizard-result").split(" ")[0]
            assert verdict == ("PASS" if passed else "FAIL")
            await pilot.press("ctrl+s")
            await settle(pilot)
    pressure = notebook.calibrations.list_calibrations(channel="pressure")[0]
    assert not pressure.passed and pressure.batch_id is None  # a bench calibration
    assert pressure.results["zero_offset_bar"] == pytest.approx(0.007)
    assert notebook.calibrations.list_calibrations(channel="od_probe")[0].results == {
        "blank_au": 0.03
    }


async def test_a_supervisor_accepts_a_failed_calibration_with_pin_and_reason(
    notebook_url: str,
) -> None:
    notebook = setup_notebook(notebook_url)
    app = wizard(notebook, "do_zero_span")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await type_into(pilot, "zero", "0.5")
        await pilot.press("ctrl+g")
        await type_into(pilot, "span", "99")
        await type_into(pilot, "t63", "38")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert "FAIL  t63 38 s (< 30 s)" in text_of(pilot, "#wizard-result")
        assert pilot.app.screen.query_one("#accept-box").has_class("-shown")
        await type_into(pilot, "accept-supervisor", OPERATOR)
        await type_into(pilot, "accept-pin", OPERATOR_PIN)
        await type_into(pilot, "accept-reason", "slow membrane, replacement on order")
        await pilot.press("ctrl+s")
        await settle(pilot)
        field = pilot.app.screen.query_one("#accept-supervisor-field", LabelledField)
        assert "needs a supervisor" in field.error
        assert notebook.calibrations.list_calibrations(channel="do") == []
        await type_into(pilot, "accept-supervisor", SUPERVISOR)
        await type_into(pilot, "accept-pin", SUPERVISOR_PIN)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "accepted by sam" in text_of(pilot, ".entry-status")
    [record] = notebook.calibrations.list_calibrations(channel="do")
    assert not record.passed and record.override_reason == "slow membrane, replacement on order"
    assert record.performed_by == SUPERVISOR and "performed by ana" in record.notes
    assert "do" not in {channel for channel, _ in notebook.calibrations.calibration_blockers(BATCH)}
