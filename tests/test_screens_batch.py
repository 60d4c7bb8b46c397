"""Batch setup driven through Pilot against the real notebook (SQLite and Postgres): create a
batch, record the inoculum (go and no-go), start blocked by calibrations, supervisor override."""

from __future__ import annotations

import pytest
from textual import on
from textual.widgets import Input

from bptwin.eln import calibration as cal
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import BatchStatus
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.messages import BatchSelected
from tests.screens_harness import (
    OPERATOR,
    SUPERVISOR,
    SUPERVISOR_PIN,
    ScreenHarness,
    field,
    settle,
    text_of,
)
from tests.screens_harness import enter_text as type_into
from tests.test_screens_calibration import BATCH, setup_notebook

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


class Harness(ScreenHarness):
    @on(BatchSelected)
    def _selected(self, message: BatchSelected) -> None:
        self.messages.append(message)


async def test_create_a_batch_and_record_a_go_inoculum(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    app = Harness(lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert pilot.app.screen.query_one("#number", Input).value == str(BATCH + 1)
        await type_into(pilot, "phase", "x")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "campaign phase" in field(pilot, "phase").error
        assert notebook.batches.list_batches() != [] and len(notebook.batches.list_batches()) == 1
        await type_into(pilot, "phase", "b")
        await type_into(pilot, "strain", "X-33 pPICZ")
        await type_into(pilot, "medium-lot", "BSM-0425")
        await type_into(pilot, "vessel", "V2")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Created batch 13" in text_of(pilot, "#batch-message")
        assert "Batch 13 · phase B" in text_of(pilot, "#batch-side")
        assert "✗ ph never done" in text_of(pilot, "#batch-side")
        # OD600 0.9 × 10 = 9.0 is outside 2.0–6.0: refused, said next to the field.
        await type_into(pilot, "inoculum-od", "0.9")
        await type_into(pilot, "inoculum-dilution", "10")
        await type_into(pilot, "inoculum-clean", "y")
        await pilot.pause()
        assert "9 NO-GO (2–6)" in str(pilot.app.screen.query_one("#inoculum-od-hint").content)
        await pilot.press("ctrl+g")
        await settle(pilot)
        error = field(pilot, "inoculum-od").error
        assert "outside 2.0-6.0" in error and "give an out-of-spec reason" in error
        assert notebook.preparation.get_inoculum(13) is None
        await type_into(pilot, "inoculum-od", "0.42")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert "Inoculum recorded: OD600 4.2 · GO" in text_of(pilot, "#batch-message")
        assert "Inoculum: OD600 4.2 GO" in text_of(pilot, "#batch-side")
    batch = notebook.batches.get_batch(13)
    assert (batch.phase.value, batch.strain, batch.medium_lot, batch.vessel) == (
        "B",
        "X-33 pPICZ",
        "BSM-0425",
        "V2",
    )
    assert batch.reactor_id == "R1" and batch.operator == OPERATOR
    inoculum = notebook.preparation.get_inoculum(13)
    assert inoculum is not None and inoculum.go and inoculum.od600 == pytest.approx(4.2)
    assert [m.batch.number for m in app.messages] == [13]


async def test_a_no_go_inoculum_needs_a_reason_and_logs_a_deviation(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    app = Harness(lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert pilot.app.screen.query_one("#strain", Input).value == "X-33"
        await type_into(pilot, "inoculum-od", "1.5")
        await type_into(pilot, "inoculum-clean", "")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert "answer y (yes) or n (no)" in field(pilot, "inoculum-clean").error
        await type_into(pilot, "inoculum-clean", "n")
        await type_into(pilot, "inoculum-reason", "batch 11 repeat, documented")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert "NO-GO, level-3 deviation logged" in text_of(pilot, "#batch-message")
    inoculum = notebook.preparation.get_inoculum(BATCH)
    assert inoculum is not None and not inoculum.go and not inoculum.microscopy_clean
    [deviation] = notebook.deviations.list_deviations(BATCH)
    assert deviation.level == 3 and "microscopy" in deviation.description


async def test_start_is_blocked_then_overridden_by_a_supervisor(notebook_url: str) -> None:
    notebook = setup_notebook(notebook_url)
    notebook.preparation.record_inoculum(OPERATOR, BATCH, od600_raw=0.4, dilution=10, volume_ml=100,
                             microscopy_clean=True)  # fmt: skip
    for outcome in (cal.evaluate_do(0.3, 99.5, 11.0), *_passing_offgas()):
        notebook.calibrations.record_calibration(OPERATOR, **outcome.record_fields())
    notebook.calibrations.record_calibration(
        OPERATOR, **cal.evaluate_ph(0.0, 160.0, 25.0).record_fields()
    )
    app = Harness(lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "✗ ph FAILED" in text_of(pilot, "#batch-side")
        assert "✓ do" in text_of(pilot, "#batch-side")
        assert pilot.app.screen.query_one("#batch-side").has_class("-blocked")
        await pilot.press("ctrl+r")
        await settle(pilot)
        message = text_of(pilot, "#batch-message")
        assert message.startswith("BLOCKED")
        assert message == (
            "BLOCKED: ph last calibration failed. A supervisor may override: name, PIN and "
            "reason below, then ctrl+r."
        )
        assert notebook.batches.get_batch(BATCH).status is BatchStatus.SETUP
        # An operator is not a supervisor, even with the right PIN.
        await type_into(pilot, "supervisor", OPERATOR)
        await type_into(pilot, "pin", "1234")
        await type_into(pilot, "override-reason", "spare probe verified against buffer 4")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert "needs a supervisor" in field(pilot, "supervisor").error
        await type_into(pilot, "supervisor", SUPERVISOR)
        await type_into(pilot, "pin", "0000")
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert field(pilot, "pin").error == "unknown supervisor or wrong PIN"
        assert notebook.batches.get_batch(BATCH).status is BatchStatus.SETUP
        await type_into(pilot, "pin", SUPERVISOR_PIN)
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert "is running since" in text_of(pilot, "#batch-message")
        assert "override by sam, audited" in text_of(pilot, "#batch-message")
        assert pilot.app.screen.query_one("#pin", Input).value == ""
    batch = notebook.batches.get_batch(BATCH)
    assert batch.status is BatchStatus.RUNNING
    [note] = notebook.notes.list_notes(BATCH)
    assert note.author == SUPERVISOR and "spare probe verified" in note.text
    assert "no passing calibration for ph" in note.text
    [started] = [
        entry
        for entry in notebook.audit.audit_trail(table_name="batch", record_id=batch.id)
        if entry.after and entry.after.get("status") == "running"
    ]
    assert started.actor == SUPERVISOR


def _passing_offgas() -> tuple[cal.CalibrationOutcome, cal.CalibrationOutcome]:
    return cal.evaluate_offgas(cal.OffgasReadings(0.02, 0.01, 20.9, 0.04))
