"""A supervisor confirms closed-loop control in the app; a wrong PIN is refused (Pilot)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from bptwin.database.migrate import upgrade
from bptwin.eln.control_service import list_control_actions
from bptwin.eln.services import NotebookService
from bptwin.screens.control import ConfirmControlScreen
from bptwin.tui.app import BptwinApp
from bptwin.tui.settings import Settings
from bptwin.twin.actuation import ControlKey


def closed_loop_settings(data_dir: Path) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.source = "none"
    settings.control.mode = 1
    settings.control.enabled = True
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.control.key_file = ControlKey.generate().write(data_dir / "control.key")
    settings.ui.refresh_s = 0.2
    return settings


async def confirm(app: BptwinApp, pilot, name: str, pin: str) -> None:
    await pilot.press("c")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmControlScreen)
    app.screen.query_one("#supervisor", Input).value = name
    app.screen.query_one("#pin", Input).value = pin
    await pilot.click("#confirm")
    for worker in [w for w in app.workers if w.group == "control"]:
        await worker.wait()
    await pilot.pause()


async def test_supervisor_confirms_and_wrong_pin_is_refused(tmp_path: Path) -> None:
    settings = closed_loop_settings(tmp_path)
    url = settings.notebook_url()
    tmp_path.mkdir(exist_ok=True)
    upgrade(url)
    notebook = NotebookService.from_url(url)
    notebook.operators.create_operator("setup", "anna", "supervisor", "4711")
    app = BptwinApp(settings)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            if app.station is not None:
                break
            await pilot.pause(0.1)
        assert app.station is not None and app.station.control is not None
        actuator = app.station.control.actuators["R1"]

        await confirm(app, pilot, "anna", "0000")
        assert not actuator.active
        assert "closed-loop control needs a supervisor" in (actuator.refusal() or "")

        await confirm(app, pilot, "anna", "4711")
        assert actuator.active
        rows = list_control_actions(notebook, reactor="R1", kind="authorisation")
        assert [row.supervisor for row in rows] == ["anna"]
        await pilot.press("q")


async def test_advisory_mode_never_asks_for_confirmation(tmp_path: Path) -> None:
    settings = closed_loop_settings(tmp_path)
    settings.control.mode = 0
    app = BptwinApp(settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmControlScreen)
        await pilot.press("q")
