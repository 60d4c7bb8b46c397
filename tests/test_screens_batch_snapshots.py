"""Looks at 80×24 of the batch setup with the start blocked by calibrations (fixed clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from bptwin.database.migrate import upgrade
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.screens.batch import BatchSetupScreen
from tests.screens_harness import OPERATOR, ScreenHarness
from tests.test_screens_calibration import BATCH, setup_notebook

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


async def _settle(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


def _notebook(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    return setup_notebook(url)


def test_batch_setup_blocked_snapshot(snap_compare, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path)

    async def press_start(pilot: Pilot) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+r")
        await _settle(pilot)

    app = ScreenHarness(
        lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=press_start)
