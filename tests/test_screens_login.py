"""The login screen: refused PIN in plain words, and its looks at 80×24 (first start and login)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from bptwin.database.migrate import upgrade
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.screens.login import LoginScreen
from tests.screens_harness import ScreenHarness

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def notebook_at(tmp_path: Path, *, with_operator: bool) -> NotebookService:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    if with_operator:
        notebook.operators.create_operator("sam", "sam", OperatorRole.SUPERVISOR, "4321")
    return notebook


async def _still_cursor(pilot: Pilot) -> None:
    await pilot.pause()
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


async def test_refusal_names_no_part_and_clears_the_pin(tmp_path: Path) -> None:
    notebook = notebook_at(tmp_path, with_operator=True)
    results: list[str] = []
    app = ScreenHarness(lambda: LoginScreen(DirectNotebook(notebook), first_run=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LoginScreen)
        screen.dismiss = results.append  # type: ignore[method-assign]
        screen.query_one("#login-name", Input).value = "sam"
        screen.query_one("#login-pin", Input).value = "0000"
        screen.query_one("#login-pin", Input).focus()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert results == []
        assert "unknown operator or wrong PIN" in str(screen.query_one("#login-message").content)
        assert screen.query_one("#login-pin", Input).value == ""
        screen.query_one("#login-pin", Input).value = "4321"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert results == ["sam"]


@pytest.mark.parametrize("first_run", [True, False], ids=["first-start", "login"])
def test_login_snapshot(snap_compare, tmp_path: Path, first_run: bool) -> None:
    notebook = notebook_at(tmp_path, with_operator=not first_run)
    app = ScreenHarness(
        lambda: LoginScreen(DirectNotebook(notebook), first_run=first_run, station="bench-1")
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=_still_cursor)
