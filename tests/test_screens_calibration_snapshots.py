"""Looks at 80×24 of the pH wizard in its second step, a live reading settling (fixed readings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.screens.calibration import CalibrationWizardScreen
from tests.screens_harness import OPERATOR, ScreenHarness
from tests.test_screens_batch_snapshots import _notebook, _settle
from tests.test_screens_calibration import BATCH, T_START, feed, flat

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def test_ph_wizard_second_buffer_snapshot(snap_compare, tmp_path: Path) -> None:
    notebook = _notebook(tmp_path)

    async def first_buffer_taken(pilot: Pilot) -> None:
        await _settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, CalibrationWizardScreen)
        feed(screen, "temp_ph_probe", [(T_START, 25.0)])
        feed(screen, "ph", flat(T_START, 40, 7.0))
        await pilot.press("ctrl+g")
        feed(screen, "ph", flat(T_START + 41, 12, 4.1))
        await _settle(pilot)

    app = ScreenHarness(
        lambda: CalibrationWizardScreen(
            DirectNotebook(notebook), OPERATOR, "ph_two_point", batch_number=BATCH
        )
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=first_buffer_taken)
