"""The end of a batch driven through Pilot against the real notebook (SQLite and Postgres): the
batch screen's keys F7/F8/F9, end and abort, the closure and its 8-sample rule, the signing
dialog (wrong signer, wrong PIN, cancel, the supervisor), process changes and media."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import BatchStatus, SignatureMeaning
from bptwin.eln.services import NotebookService
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.batch_end import BatchEndScreen
from bptwin.screens.media import MediaPreparationScreen
from bptwin.screens.process_changes import ProcessChangesScreen
from bptwin.screens.signing import SigningDialog
from tests.screens_harness import (
    BATCH,
    OPERATOR,
    OPERATOR_PIN,
    SUPERVISOR,
    SUPERVISOR_PIN,
    ScreenHarness,
    enter_text,
    field,
    running_notebook,
    settle,
    text_of,
)
from tests.test_app_navigation import app_with_batch, wait_for

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def end_screen(notebook: NotebookService) -> ScreenHarness:
    return ScreenHarness(
        lambda: BatchEndScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )


async def sign(pilot, signer: str, pin: str) -> None:  # type: ignore[no-untyped-def]
    """Fill the signing dialog that is showing and press enter in the PIN field."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SigningDialog))
    await pilot.pause()
    dialog = pilot.app.screen
    dialog.query_one("#signer", Input).value = signer
    dialog.query_one("#signer-pin", Input).value = pin
    dialog.query_one("#signer-pin", Input).focus()
    await pilot.press("enter")
    await settle(pilot)


async def test_end_closure_and_a_signed_close_from_the_end_screen(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    async with end_screen(notebook).run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        assert "Batch 7 · running" in text_of(pilot, "#end-side")
        assert "Samples 0 of 8" in text_of(pilot, "#end-side")
        # Abort without a reason: refused at the field, nothing changes.
        await pilot.press("ctrl+x")
        await settle(pilot)
        assert "say why the batch is aborted" in field(pilot, "abort-reason").error
        # End: the first ctrl+e asks, the second ends.
        await pilot.press("ctrl+e")
        await settle(pilot)
        assert "Press ctrl+e again" in text_of(pilot, "#end-message")
        assert notebook.batches.get_batch(BATCH).status == BatchStatus.RUNNING
        await pilot.press("ctrl+e")
        await settle(pilot)
        assert notebook.batches.get_batch(BATCH).status == BatchStatus.COMPLETE
        assert "Batch 7 ended" in text_of(pilot, "#end-message")
        # The closure: no samples were taken, so the reason is required.
        await enter_text(pilot, "final-od600", "41.5")
        await enter_text(pilot, "final-dcw", "21.0")
        await enter_text(pilot, "harvest-volume", "1400")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "0 of the 8 SOP samples" in field(pilot, "missing-reason").error
        await enter_text(pilot, "missing-reason", "screen test: no samples")
        await pilot.press("ctrl+s")
        await settle(pilot)
        closure = notebook.batches.get_closure(BATCH)
        assert closure is not None and closure.harvest_volume_ml == 1400.0
        assert "Closure recorded" in text_of(pilot, "#end-message")
        # Signing: cancel, an operator, a wrong PIN, then the supervisor.
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, SigningDialog))
        assert "closure record of batch 7" in str(
            pilot.app.screen.query_one("#signing-text").content
        )
        await pilot.press("escape")
        await settle(pilot)
        assert "cancelled" in text_of(pilot, "#end-message")
        await pilot.press("ctrl+k")
        await sign(pilot, OPERATOR, OPERATOR_PIN)
        assert "supervisor" in text_of(pilot, "#end-message")
        await pilot.press("ctrl+k")
        await sign(pilot, SUPERVISOR, "0000")
        assert "wrong PIN" in text_of(pilot, "#end-message")
        assert notebook.signatures.list_signatures() == []
        await pilot.press("ctrl+k")
        await sign(pilot, SUPERVISOR, SUPERVISOR_PIN)
        assert "closed: signed by sam" in text_of(pilot, "#end-message")
        side = text_of(pilot, "#end-side")
        assert "closed by sam" in side and "closed · sam" in side
        [signature] = notebook.signatures.list_signatures(batch_number=BATCH)
        assert signature.meaning == SignatureMeaning.CLOSED and signature.signer == SUPERVISOR
        # A correction of the signed closure: only with the reason, under a new signature.
        await enter_text(pilot, "final-od600", "42.0")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "give the reason" in field(pilot, "amend-reason").error
        await enter_text(pilot, "amend-reason", "OD600 re-read: dilution typo")
        await pilot.press("ctrl+s")
        await sign(pilot, SUPERVISOR, SUPERVISOR_PIN)
        assert "Closure corrected and signed by sam" in text_of(pilot, "#end-message")
        assert "(superseded)" in text_of(pilot, "#end-side")
    first, second = notebook.signatures.list_signatures(batch_number=BATCH)
    assert first.superseded_by == second.id and second.reason == "OD600 re-read: dilution typo"
    assert notebook.batches.get_closure(BATCH).final_od600 == 42.0  # type: ignore[union-attr]
    assert notebook.signatures.verify_signatures() == []


async def test_abort_with_its_reason(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    async with end_screen(notebook).run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        await enter_text(pilot, "abort-reason", "contamination seen at 4 h")
        await pilot.press("ctrl+x")
        await settle(pilot)
        await pilot.press("ctrl+x")
        await settle(pilot)
        assert "Batch 7 aborted" in text_of(pilot, "#end-message")
        assert "reason: contamination seen at 4 h" in text_of(pilot, "#end-side")
    batch = notebook.batches.get_batch(BATCH)
    assert batch.status == BatchStatus.ABORTED and batch.end_reason == "contamination seen at 4 h"


async def test_batch_screen_keys_open_end_changes_and_media(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(
        lambda: BatchSetupScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        for key, screen_type in (
            ("f7", BatchEndScreen),
            ("f8", ProcessChangesScreen),
            ("f9", MediaPreparationScreen),
        ):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(pilot.app.screen, screen_type), key
            assert pilot.app.screen.batch_number == BATCH
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(pilot.app.screen, BatchSetupScreen)


async def test_a_process_change_is_planned_and_approved_with_a_signature(
    notebook_url: str,
) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(
        lambda: ProcessChangesScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        await enter_text(pilot, "parameter", "stirrer_rpm")
        await enter_text(pilot, "old-value", "800")
        await enter_text(pilot, "new-value", "950")
        await enter_text(pilot, "planned-at", "25:99")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "planned time" in field(pilot, "planned-at").error
        await enter_text(pilot, "planned-at", "")
        await enter_text(pilot, "change-reason", "DO below 30 %")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert pilot.app.screen.query_one(DataTable).row_count == 1
        pilot.app.screen.query_one(DataTable).focus()
        await pilot.press("ctrl+k")
        await sign(pilot, SUPERVISOR, SUPERVISOR_PIN)
        assert "approved: signed by sam" in text_of(pilot, "#change-message")
    [change] = notebook.process_changes.list_process_changes(BATCH)
    assert change.approved_by == SUPERVISOR
    [signature] = notebook.signatures.list_signatures(table_name="process_change")
    assert signature.meaning == SignatureMeaning.APPROVED


async def test_a_media_preparation_is_recorded(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = ScreenHarness(
        lambda: MediaPreparationScreen(DirectNotebook(notebook), OPERATOR, batch_number=BATCH)
    )
    async with app.run_test(size=(100, 34)) as pilot:
        await settle(pilot)
        await enter_text(pilot, "recipe", "glycerol=forty")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "not a number" in field(pilot, "recipe").error
        await enter_text(pilot, "recipe", "glycerol=40, basal_salts=26.7")
        await enter_text(pilot, "autoclave", "AC-12")
        await enter_text(pilot, "sterile", "y")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "recorded" in text_of(pilot, "#media-message")
        assert pilot.app.screen.query_one(DataTable).row_count == 1
    [media] = notebook.preparation.list_media_preparations(BATCH)
    assert media.recipe == {"glycerol": 40.0, "basal_salts": 26.7} and media.sterility_ok


async def test_the_command_palette_finds_the_batch_end(tmp_path: Path) -> None:
    app, notebook = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "End, abort or close the batch (F7 on the batch screen)" in titles
        assert "Process changes (F8 on the batch screen)" in titles
        assert "Media preparation (F9 on the batch screen)" in titles
        await app.open_batch_tool("end")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchEndScreen))
        assert app.screen.batch_number == 17
        await pilot.press("escape")
        # Ended, the batch stays the reactor's: its closure and acceptance come after the end.
        notebook.batches.end_batch("ana", 17)
        await app.refresh_batches().wait()
        await pilot.pause()
        assert app.batches.get("R1") == 17
        await pilot.press("q")
