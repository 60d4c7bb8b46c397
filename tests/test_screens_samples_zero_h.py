"""The 0 h sample taken right after the start, with the form's prefilled time (cut to the
minute), is stored: not refused as "before the inoculation"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import Input

from bptwin.database.relational import make_engine
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.screens.samples import SampleEntryScreen
from tests.screens_harness import (
    INOCULATED_AT,
    SUPERVISOR,
    SUPERVISOR_PIN,
    ScreenHarness,
    settle,
    type_into,
)

STARTED = INOCULATED_AT + timedelta(seconds=42, microseconds=500_000)


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


async def test_the_prefilled_0_h_sample_is_taken(notebook_url: str) -> None:
    clock = {"now": STARTED}
    notebook = NotebookService(make_engine(notebook_url), clock=lambda: clock["now"])
    notebook.operators.create_operator("setup", SUPERVISOR, OperatorRole.SUPERVISOR, SUPERVISOR_PIN)
    notebook.batches.create_batch(SUPERVISOR, 3, "B", strain="X-33", reactor_id="R1")
    notebook.batches.start_batch(SUPERVISOR, 3, override_reason="0 h sample test: no calibrations")
    clock["now"] = STARTED + timedelta(seconds=10)  # the sample screen opened 10 s later
    app = ScreenHarness(lambda: SampleEntryScreen(DirectNotebook(notebook), 3, SUPERVISOR))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#timepoint", Input).value == "0"
        prefilled = screen.query_one("#taken-at", Input).value
        assert prefilled == INOCULATED_AT.strftime("%Y-%m-%d %H:%M")  # before the start's second
        await type_into(pilot, "od-raw", "0.05")
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = str(screen.query_one("#sample-message").content)
        assert message.startswith("Saved sample"), message
    [sample] = notebook.samples.list_samples(3)
    assert sample.sop_timepoint_h == 0 and sample.taken_at == STARTED
