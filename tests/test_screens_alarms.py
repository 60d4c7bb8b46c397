"""The alarm screen and banner driven through Pilot with a real AlarmEngine fed with readings
that raise DO-low, and the real notebook for deviations and the alarm history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from bptwin.database.reading import Reading
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.services import NotebookService
from bptwin.screens.alarm_banner import AlarmBanner
from bptwin.screens.alarms import (
    AlarmHistoryScreen,
    AlarmScreen,
    ConfirmDeviationScreen,
    ShelveScreen,
    deviation_draft,
)
from bptwin.screens.deviations import DeviationFormScreen
from bptwin.screens.entry_widgets import LabelledField
from bptwin.twin.alarm_rules import DEFAULT_RULES
from bptwin.twin.alarms import AlarmEngine, AlarmState, AlarmTransition, AlarmView
from bptwin.twin.live import LiveSnapshot
from tests.screens_harness import BATCH, INOCULATED_AT, OPERATOR, ScreenHarness, running_notebook

T0 = (INOCULATED_AT + timedelta(hours=3)).timestamp()
NOW = T0 + 500.0
CRITICAL = "R1/do_low/lo_lo"
WARNING = "R1/do_low/lo"


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


class RecordedAlarms:
    """AlarmActions as the station provides them: the engine, each transition stored."""

    def __init__(self, engine: AlarmEngine, notebook: NotebookService) -> None:
        self.engine = engine
        self.notebook = notebook

    def _store(self, transitions: Sequence[AlarmTransition]) -> tuple[AlarmTransition, ...]:
        for transition in transitions:
            self.notebook.alarms.record_alarm_event(**transition.event_fields(), batch_number=BATCH)
        return tuple(transitions)

    def acknowledge(self, alarm_id: str, actor: str) -> object:
        return self._store(self.engine.acknowledge(alarm_id, actor))

    def shelve(self, alarm_id: str, actor: str, reason: str, until: float) -> object:
        return self._store(self.engine.shelve(alarm_id, actor, reason, until))

    def unshelve(self, alarm_id: str, actor: str) -> object:
        return self._store(self.engine.unshelve(alarm_id, actor))

    def active_alarms(self) -> Sequence[AlarmView]:
        return self.engine.active_alarms()


def do_low_engine(notebook: NotebookService | None = None) -> AlarmEngine:
    """DO at 14 % for 400 s: the critical lo_lo (after 2 min) and the warning lo (5 min)."""
    engine = AlarmEngine(DEFAULT_RULES)
    for second in range(400):
        reading = Reading(T0 + second, "R1", "do", 14.0, "%")
        for transition in engine.feed(reading):
            if notebook is not None:
                notebook.alarms.record_alarm_event(**transition.event_fields(), batch_number=BATCH)
    return engine


def live_snapshot() -> LiveSnapshot:
    latest = {
        ("R1", "do"): Reading(T0 + 399, "R1", "do", 14.0, "%"),
        ("R1", "stirrer_speed"): Reading(T0 + 399, "R1", "stirrer_speed", 1000.0, "rpm"),
        ("R1", "o2_flow"): Reading(T0 + 399, "R1", "o2_flow", 0.0, "L/min"),
    }
    return LiveSnapshot(taken_at=T0 + 400, latest=latest)


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def rows(pilot: Pilot) -> list[list[object]]:
    table = pilot.app.screen.query_one("#alarms", DataTable)
    return [table.get_row_at(index) for index in range(table.row_count)]


async def test_acknowledge_a_critical_do_alarm_and_log_the_offered_deviation(
    notebook_url: str,
) -> None:
    notebook = running_notebook(notebook_url)
    engine = do_low_engine(notebook)
    actions = RecordedAlarms(engine, notebook)
    app = ScreenHarness(
        lambda: AlarmScreen(
            actions,
            OPERATOR,
            notebook=DirectNotebook(notebook),
            batch_number=BATCH,
            reactor="R1",
            clock=lambda: NOW,
        ),
        snapshot=live_snapshot(),
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        listed = rows(pilot)
        assert [str(row[3]) for row in listed] == [CRITICAL, WARNING]  # critical first
        assert "ACTIVE UNACK" in str(listed[0][2])
        banner = app.screen.query_one(AlarmBanner)
        assert banner.has_class("-on") and app.bells == 1
        assert "CRITICAL R1 11:02:00 do 14 < 15 (LO-LO)" in str(banner.content)

        await pilot.press("enter")
        await settle(pilot)
        assert engine.alarm(CRITICAL).state is AlarmState.ACTIVE_ACK
        assert engine.alarm(CRITICAL).acknowledged_by == OPERATOR
        assert isinstance(app.screen, ConfirmDeviationScreen)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, DeviationFormScreen)
        assert app.screen.query_one("#level", Input).value == "2"
        assert app.screen.query_one("#category", Input).value == "alarm"
        assert app.screen.query_one("#start", Input).value == "2026-03-02 11:02"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        assert not app.screen.query_one(AlarmBanner).has_class("-on")  # nothing unacked critical
        assert "active ack" in str(rows(pilot)[0][2])
        assert "logged" in str(app.screen.query_one("#alarm-detail", Static).content)

        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, AlarmHistoryScreen)
        history = app.screen.query_one(DataTable)
        assert history.row_count == 3  # two raised, one acknowledged
        newest = history.get_row_at(0)
        assert newest[1] == CRITICAL and newest[3] == "active_acknowledged"
        assert newest[4] == OPERATOR
    [deviation] = notebook.deviations.list_deviations(BATCH)
    assert deviation.level == 2 and deviation.category == "alarm"
    assert CRITICAL in deviation.description
    assert "do 14 %" in deviation.description and "stirrer_speed 1000 rpm" in deviation.description
    assert deviation.ended_at is None  # the condition is still active


async def test_shelve_needs_a_reason_then_hides_the_alarm_until_unshelved() -> None:
    engine = do_low_engine()
    app = ScreenHarness(lambda: AlarmScreen(engine, OPERATOR, clock=lambda: NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ShelveScreen)
        await pilot.press("ctrl+s")
        await pilot.pause()
        reason = app.screen.query_one("#shelve-reason-field", LabelledField)
        assert "give the reason" in reason.error
        await pilot.press(*"probe recalibration")
        minutes = app.screen.query_one("#shelve-minutes", Input)
        minutes.value = "30"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        view = engine.alarm(WARNING)
        assert view is not None and view.state is AlarmState.SHELVED
        assert view.shelve_reason == "probe recalibration" and view.shelved_by == OPERATOR
        assert view.shelved_until == NOW + 1800
        shelved = [row for row in rows(pilot) if str(row[3]) == WARNING]
        assert "shelved" in str(shelved[0][2])

        await pilot.press("u")
        await settle(pilot)
        assert engine.alarm(WARNING).state is AlarmState.ACTIVE_UNACK
        # Acknowledging without a notebook offers no deviation; a second ack is refused.
        await pilot.press("up", "enter")
        await settle(pilot)
        assert isinstance(app.screen, AlarmScreen)
        await pilot.press("enter")
        await settle(pilot)
        detail = str(app.screen.query_one("#alarm-detail", Static).content)
        assert "needs no acknowledgement" in detail


async def test_banner_rings_once_per_new_critical_alarm() -> None:
    engine = AlarmEngine(DEFAULT_RULES)
    app = ScreenHarness(lambda: AlarmScreen(engine, OPERATOR, clock=lambda: NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        banner = app.screen.query_one(AlarmBanner)
        assert not banner.has_class("-on") and app.bells == 0
        for second in range(200):
            engine.feed(Reading(T0 + second, "R1", "do", 10.0, "%"))
        app.screen.refresh_alarms()
        app.screen.refresh_alarms()  # the same alarm again: no second bell
        await pilot.pause()
        assert banner.has_class("-on") and app.bells == 1


def test_deviation_draft_spans_a_returned_alarm() -> None:
    engine = do_low_engine()
    engine.evaluate(T0 + 450)  # the engine's time: a reading after a gap waits for it
    engine.feed(Reading(T0 + 450, "R1", "do", 40.0, "%"))
    view = engine.alarm(CRITICAL)
    assert view is not None and view.state is AlarmState.RETURNED_UNACK
    draft = deviation_draft(view, None, NOW)
    assert draft.started_at is not None and draft.ended_at is not None
    assert draft.started_at.timestamp() == pytest.approx(T0 + 120, abs=1)
    assert draft.ended_at.timestamp() == pytest.approx(T0 + 450)
    assert draft.level == 2 and "Channels" not in draft.description
