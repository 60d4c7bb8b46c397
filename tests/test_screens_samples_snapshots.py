"""Looks of the sample entry screen with a fixed clock, batch and prediction, at 100×30 and
80×24."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from bptwin.database.migrate import upgrade
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.screens.samples import SampleEntryScreen
from tests.screens_harness import BATCH, OPERATOR, ScreenHarness, running_notebook
from tests.test_screens_samples import snapshot_with_prediction

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


async def _type_a_sample(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.press(*"0.42")
    dilution = pilot.app.screen.query_one("#dilution", Input)
    dilution.value = "20"
    await pilot.pause()


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_sample_entry_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = running_notebook(url)
    app = ScreenHarness(
        lambda: SampleEntryScreen(DirectNotebook(notebook), BATCH, OPERATOR),
        snapshot=snapshot_with_prediction(),
    )
    assert snap_compare(app, terminal_size=size, run_before=_type_a_sample)
