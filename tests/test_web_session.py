"""A browser session of the control room ('bptwin run --web') is a viewer: the threat that a
browser viewer writes (an entry, an acknowledgement, a control confirmation) is stopped at the
notebook seam and at the alarm actions, and the screens say why. Pilot tests of the real app on
the embedded stores."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from textual.widgets import Static, TextArea

from bptwin.eln.errors import NotebookPermissionError
from bptwin.eln.read_only_notebook import READS, WRITES, ReadOnlyNotebook, WriteGuard
from bptwin.eln.records import SampleView, view_of
from bptwin.screens.alarms import AlarmScreen
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.login import LoginScreen
from bptwin.screens.messages import SampleSaved
from bptwin.screens.notes import NotesScreen
from bptwin.screens.samples import SampleEntryScreen
from bptwin.tui.app import BptwinApp
from tests.test_app_navigation import log_in, notebook_with_batch, shell_settings, wait_for


def web_app(tmp_path: Path, *, allow_writes: bool = False) -> tuple[BptwinApp, object]:
    settings = shell_settings(tmp_path)
    settings.web.allow_writes = allow_writes
    notebook = notebook_with_batch(settings)
    return BptwinApp(settings, require_login=True, web=True), notebook


def strip_text(app: BptwinApp) -> str:
    return str(app.dashboard.query_one("#status-strip", Static).content)


async def save_note(app: BptwinApp, pilot, text: str) -> str:
    await app.action_go("notes")
    await wait_for(pilot, lambda: isinstance(app.screen, NotesScreen))
    await pilot.pause()
    note = app.screen.query_one("#note-text", TextArea)
    note.load_text(text)
    note.focus()
    await pilot.press("ctrl+s")  # the note is several lines: ctrl+s saves it
    for worker in [w for w in app.workers if w.group == "notes-save"]:
        await worker.wait()
    await pilot.pause()
    return str(app.screen.query_one("#note-status", Static).content)


def test_every_write_of_the_notebook_protocol_is_refused_to_a_viewer() -> None:
    inner = MagicMock()
    notebook = ReadOnlyNotebook(inner, WriteGuard(writes_allowed=False))
    assert "add_note" in WRITES and "create_operator" in WRITES and "list_notes" in READS
    for name in sorted(WRITES):
        with pytest.raises(NotebookPermissionError, match="read-only web session"):
            getattr(notebook, name)("ana", 17)
    assert inner.method_calls == []
    notebook.list_notes(17)
    inner.list_notes.assert_called_once_with(17)


def test_writing_is_granted_to_the_logged_in_operator_only_where_settings_allow() -> None:
    closed = WriteGuard(writes_allowed=False)
    assert not closed.grant("ana") and closed.read_only
    inner = MagicMock()
    guard = WriteGuard(writes_allowed=True)
    notebook = ReadOnlyNotebook(inner, guard)
    with pytest.raises(NotebookPermissionError, match="log in"):
        notebook.add_note("ana", 17, "before login")
    assert guard.grant("ana")
    notebook.add_note("ana", 17, "after login")
    with pytest.raises(NotebookPermissionError, match="only 'ana'"):
        notebook.add_note(actor="sam", number=17, text="someone else's name")
    assert inner.add_note.call_count == 1


async def test_a_browser_viewer_cannot_save_a_note_or_a_sample(tmp_path: Path) -> None:
    app, notebook = web_app(tmp_path)
    notes_before = notebook.notes.list_notes(17)  # the start's override reason is one
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        assert not isinstance(app.screen, LoginScreen)  # nothing to log in to: writes are off
        assert "read-only (web)" in strip_text(app)
        said = await save_note(app, pilot, "written from a browser")
        assert "read-only web session" in said and "allow_writes is false" in said
        await app.action_go("samples")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleEntryScreen))
        await pilot.pause()
        screen = app.screen
        screen._field("od-raw").set_value("0.5")
        screen.action_save()
        for worker in [w for w in app.workers if w.group == "sample-save"]:
            await worker.wait()
        await pilot.pause()
        assert "read-only web session" in str(screen.query_one(screen.MESSAGE_SELECTOR).content)
        await pilot.press("q")
    assert notebook.notes.list_notes(17) == notes_before
    assert notebook.samples.list_samples(17) == []


async def test_a_browser_viewer_cannot_acknowledge_an_alarm(tmp_path: Path) -> None:
    app, notebook = web_app(tmp_path)
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_for(pilot, lambda: app.station is not None)
        engine = app.station.alarm_actions  # the engine itself, as the acquisition has it
        sample = notebook.samples.add_sample(
            "ana",
            17,
            od_raw=0.5,
            dilution=20,
            taken_at=datetime.now(timezone.utc),
            predicted_od600=5.0,
        )
        engine.feed_sample("R1", sample.taken_at.timestamp(), sample.od600, 5.0)
        app.post_message(SampleSaved(view_of(SampleView, sample), "R1"))
        await wait_for(pilot, lambda: any(v.unacknowledged for v in engine.active_alarms()))
        await app.action_go("alarms")
        await wait_for(pilot, lambda: isinstance(app.screen, AlarmScreen))
        await pilot.pause()
        screen = app.screen
        view = next(v for v in engine.active_alarms() if v.unacknowledged)
        with pytest.raises(NotebookPermissionError, match="read-only web session"):
            screen.actions.acknowledge(view.alarm_id, app.operator)
        with pytest.raises(NotebookPermissionError):
            screen.actions.acknowledge(view.alarm_id, "ana")  # a name typed is no login
        assert next(v for v in engine.active_alarms() if v.alarm_id == view.alarm_id).unacknowledged
        app.action_confirm_control()
        await pilot.pause()
        assert any("read-only web session" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        await pilot.press("q")
    events = notebook.alarms.list_alarm_events(reactor="R1")
    assert not any(event.actor for event in events)


async def test_with_writes_allowed_an_operator_pin_login_unlocks_the_session(
    tmp_path: Path,
) -> None:
    app, notebook = web_app(tmp_path, allow_writes=True)
    notes_before = len(notebook.notes.list_notes(17))
    async with app.run_test(size=(120, 34)) as pilot:
        await log_in(app, pilot, "ana", "1234")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        assert "web: writes as ana" in strip_text(app)
        said = await save_note(app, pilot, "logged in from the office")
        assert "Saved note" in said
        await pilot.press("q")
    notes = notebook.notes.list_notes(17)
    assert [n.text for n in notes[notes_before:]] == ["logged in from the office"]
    assert notes[-1].author == "ana"


async def test_with_writes_allowed_escape_at_the_login_stays_a_viewer(tmp_path: Path) -> None:
    app, notebook = web_app(tmp_path, allow_writes=True)
    notes_before = notebook.notes.list_notes(17)
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen))
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        assert "read-only (web)" in strip_text(app)
        said = await save_note(app, pilot, "not logged in")
        assert "log in with your operator PIN" in said
        await pilot.press("q")
    assert notebook.notes.list_notes(17) == notes_before


def test_a_browser_session_does_not_start_a_real_acquisition(tmp_path: Path) -> None:
    from bptwin.tui.runtime.web_session import web_station_for
    from bptwin.tui.settings import SettingsError

    settings = shell_settings(tmp_path)
    settings.acquisition.source = "serial"
    with pytest.raises(SettingsError, match="bptwin serve"):
        web_station_for(settings)
    settings.acquisition.source = "none"
    assert web_station_for(settings) is not None  # its own (empty) run
