"""Form fields an operator does not fight (screens/entry_widgets.py): wide enough for a medium
lot at 80 and 160 columns, free text over several lines, a complaint gone once corrected."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import ComposeResult
from textual.widgets import Static

from bptwin.database.migrate import upgrade
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.entry_widgets import EntryForm, LabelledField
from tests.screens_harness import OPERATOR, ScreenHarness, settle
from tests.test_screens_calibration import BATCH, setup_notebook

MEDIUM_LOT = "BSM-2026-014"


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
async def test_a_medium_lot_fits_its_field_on_the_batch_screen(
    size: tuple[int, int], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = setup_notebook(url)
    app = ScreenHarness(
        lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        field = app.screen.query_one("#medium-lot-field", LabelledField)
        field.set_value(MEDIUM_LOT)
        await pilot.pause()
        field_input = field.input
        visible = field_input.size.width  # the padding is outside the content width
        assert visible >= len(MEDIUM_LOT) + 1, visible
        if size[0] >= 160:
            assert visible >= 24  # room for a lot with a suffix, a strain with its clone


class NoteForm(EntryForm[None]):
    def compose(self) -> ComposeResult:
        yield LabelledField("Amount mL", "amount")
        yield LabelledField("Description", "description", multiline=True)
        yield Static("", classes="entry-status")


async def test_free_text_takes_several_lines_and_a_corrected_value_drops_its_complaint() -> None:
    from bptwin.eln.errors import NotebookValidationError

    app = ScreenHarness(NoteForm)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NoteForm)
        description = form.query_one("#description-field", LabelledField)
        description.input.focus()
        await pilot.press(*"foam at 9 h", "enter", *"antifoam added")
        assert description.value == "foam at 9 h\nantifoam added"
        form._show_error(NotebookValidationError("amount mL", "amount must be a number"))
        amount = form.query_one("#amount-field", LabelledField)
        assert amount.has_class("-invalid") and "must be a number" in amount.error
        status = form.query_one(".entry-status", Static)
        assert status.has_class("-error")
        await pilot.press("1")  # the cursor went back to the field the error names
        await pilot.pause()
        assert not amount.has_class("-invalid") and amount.error == ""
        assert not status.has_class("-error") and str(status.content) == ""
