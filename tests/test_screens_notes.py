"""Free notes through Pilot against the real notebook."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.screens.notes import NotesScreen
from tests.screens_harness import BATCH, OPERATOR, ScreenHarness, running_notebook

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


async def test_write_notes_and_see_them_listed(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(lambda: NotesScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1  # the supervisor's start override is a note too
        # enter starts a new line of the same note; ctrl+s saves it
        await pilot.press(*"antifoam 0.2 mL at 9 h", "enter", *"foam down at 9.1 h", "ctrl+s")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert table.row_count == 2
        note = "antifoam 0.2 mL at 9 h\nfoam down at 9.1 h"
        assert table.get_row_at(1)[1:] == [OPERATOR, note]
        await pilot.press("ctrl+s")  # an empty note is refused in plain words
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = app.screen.query_one("#note-status", Static)
        assert "note must not be empty" in str(status.content) and status.has_class("-error")
    assert [note.text for note in notebook.notes.list_notes(BATCH)][-1] == note
