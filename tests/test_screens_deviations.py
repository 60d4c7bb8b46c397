"""Deviation logging and supervisor review through Pilot, against the real notebook."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import DeviationStatus
from bptwin.screens.deviations import DeviationFormScreen, DeviationReviewScreen, DeviationsScreen
from bptwin.screens.entry_widgets import LabelledField
from tests.screens_harness import (
    BATCH,
    OPERATOR,
    OPERATOR_PIN,
    SUPERVISOR,
    SUPERVISOR_PIN,
    ScreenHarness,
    running_notebook,
    settle,
    type_into,
)

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def error_of(pilot: Pilot, field_id: str) -> str:
    return pilot.app.screen.query_one(f"#{field_id}-field", LabelledField).error


async def test_log_a_level_2_deviation_and_review_it_as_supervisor(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(lambda: DeviationsScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "No deviations" in str(app.screen.query_one("#deviation-detail", Static).content)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, DeviationFormScreen)
        await type_into(pilot, "level", "2")
        guidance = str(app.screen.query_one("#level-guidance", Static).content)
        assert "Level 2 major" in guidance and "any O2 enrichment" in guidance
        await type_into(pilot, "category", "process")
        await type_into(pilot, "title", "O2 enrichment at 14 h")
        await type_into(pilot, "corrective-action", "cascade limits checked")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, DeviationsScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        assert table.get_row_at(0)[1:6] == [
            "2",
            "process",
            "O2 enrichment at 14 h",
            "03-02 12:05",
            "open",
        ]

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DeviationReviewScreen)
        await type_into(pilot, "pin", OPERATOR_PIN)
        await type_into(pilot, "root-cause", "late-batch oxygen demand")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "needs a supervisor" in error_of(pilot, "reviewer")

        await type_into(pilot, "reviewer", SUPERVISOR)
        await type_into(pilot, "pin", "0000")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "wrong PIN" in error_of(pilot, "pin")

        await type_into(pilot, "pin", SUPERVISOR_PIN)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, DeviationsScreen)
        row = app.screen.query_one(DataTable).get_row_at(0)
        assert row[5:] == ["reviewed", SUPERVISOR]
    [deviation] = notebook.deviations.list_deviations(BATCH)
    assert deviation.level == 2 and deviation.status is DeviationStatus.REVIEWED
    assert deviation.reported_by == OPERATOR and deviation.reviewed_by == SUPERVISOR
    assert deviation.root_cause == "late-batch oxygen demand"
    assert deviation.corrective_action == "cascade limits checked"


async def test_bad_level_and_missing_title_are_shown_at_their_fields(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(lambda: DeviationFormScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await type_into(pilot, "level", "5")
        assert "Level: 1 minor" in str(app.screen.query_one("#level-guidance", Static).content)
        await type_into(pilot, "category", "process")
        await type_into(pilot, "title", "x")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "level 5 is outside 1-3" in error_of(pilot, "level")
        status = app.screen.query_one(".entry-status", Static)
        assert status.has_class("-error")
        await type_into(pilot, "level", "1")
        await pilot.pause()
        # The corrected value no longer carries the complaint, nor does the status line.
        assert error_of(pilot, "level") == "" and not status.has_class("-error")
        await type_into(pilot, "title", "")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "title must not be empty" in error_of(pilot, "title")
        assert error_of(pilot, "level") == ""
        await type_into(pilot, "end", "2026-03-02 09:00")
        await type_into(pilot, "start", "2026-03-02 10:00")
        await type_into(pilot, "title", "late sample")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "ends before it starts" in error_of(pilot, "end")
    assert notebook.deviations.list_deviations(BATCH) == []
