"""The control room's shell: operator login, navigation keys, command palette, alarm wiring.

Pilot tests of the real app on the embedded stores (SQLite notebook, embedded series).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from textual.widgets import Input

from bptwin.database.migrate import upgrade
from bptwin.eln.models import OperatorRole
from bptwin.eln.records import BatchView, SampleView, view_of
from bptwin.eln.services import NotebookService
from bptwin.screens.alarms import AlarmScreen
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.calibration import CalibrationMenuScreen
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.login import LoginScreen
from bptwin.screens.messages import BatchSelected, SampleSaved
from bptwin.screens.notes import NotesScreen
from bptwin.screens.samples import SampleEntryScreen
from bptwin.tui.app import DESTINATIONS, BptwinApp
from bptwin.tui.settings import Settings


def shell_settings(data_dir: Path) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.source = "none"
    settings.ui.refresh_s = 0.2
    return settings


def notebook_with_batch(settings: Settings, reactor: str = "R1") -> NotebookService:
    settings.station.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    notebook.operators.create_operator("sam", "sam", OperatorRole.SUPERVISOR, "4321")
    notebook.operators.create_operator("sam", "ana", OperatorRole.OPERATOR, "1234")
    notebook.batches.create_batch("ana", 17, "C", strain="X-33", vessel="V1", reactor_id=reactor)
    notebook.batches.start_batch(
        "sam",
        17,
        inoculated_at=datetime.now(timezone.utc),
        override_reason="shell tests: calibrations are not part of this test",
    )
    return notebook


def app_with_batch(tmp_path: Path) -> tuple[BptwinApp, NotebookService]:
    """The app of operator ana (logged in beforehand) with batch 17 running on R1."""
    settings = shell_settings(tmp_path)
    notebook = notebook_with_batch(settings)
    settings.station.operator = "ana"
    return BptwinApp(settings), notebook


async def wait_for(pilot, condition, attempts: int = 100) -> None:
    for _ in range(attempts):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def log_in(app: BptwinApp, pilot, name: str, pin: str, again: str | None = None) -> None:
    await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen))
    await pilot.pause()  # let the screen mount (it focuses the name field)
    app.screen.query_one("#login-name", Input).value = name
    app.screen.query_one("#login-pin", Input).value = pin
    if again is not None:
        app.screen.query_one("#login-pin2", Input).value = again
        app.screen.query_one("#login-pin2", Input).focus()
    else:
        app.screen.query_one("#login-pin", Input).focus()
    await pilot.pause()
    await pilot.press("enter")
    for worker in [w for w in app.workers if w.group == "login"]:
        await worker.wait()
    await pilot.pause()


async def test_first_start_registers_a_supervisor_and_logs_in(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path)
    app = BptwinApp(settings, require_login=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen))
        assert app.screen.first_run
        # The two PINs must agree; nothing is stored until they do.
        await log_in(app, pilot, "night-lead", "2468", again="2469")
        assert isinstance(app.screen, LoginScreen)
        assert "differ" in app.screen.query_one("#login-pin-field").error
        # Both PINs are typed again from the start.
        assert app.screen.query_one("#login-pin", Input).value == ""
        assert app.screen.query_one("#login-pin2", Input).value == ""
        await log_in(app, pilot, "night-lead", "2468", again="2468")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app.operator == "night-lead"
        assert "night-lead" in app.sub_title
        await pilot.press("q")
    notebook = NotebookService.from_url(settings.notebook_url())
    operator = notebook.operators.get_operator("night-lead")
    assert operator is not None and operator.role == OperatorRole.SUPERVISOR


async def test_wrong_pin_is_refused_then_the_right_one_logs_in(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path)
    notebook_with_batch(settings)
    app = BptwinApp(settings, require_login=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await log_in(app, pilot, "ana", "9999")
        assert isinstance(app.screen, LoginScreen)
        assert "wrong PIN" in str(app.screen.query_one("#login-message").content)
        assert app.operator == ""
        # Navigation waits for a login.
        await app.action_go("samples")
        assert isinstance(app.screen, LoginScreen)
        await log_in(app, pilot, "ana", "1234")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app.operator == "ana"
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        await pilot.press("q")


async def test_keys_open_each_notebook_screen_with_the_open_batch(tmp_path: Path) -> None:
    app, _ = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleEntryScreen))
        assert app.screen.batch_number == 17 and app.screen.operator == "ana"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, NotesScreen))
        # Going somewhere else from a screen replaces it: the stack never piles up.
        await app.action_go("samples")
        await wait_for(pilot, lambda: isinstance(app.screen, SampleEntryScreen))
        assert len(app.screen_stack) == 3
        await app.action_go("dashboard")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.station is not None)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlarmScreen))
        await pilot.press("escape")
        await pilot.press("q")


async def test_without_a_batch_the_notebook_screens_say_why(tmp_path: Path) -> None:
    settings = shell_settings(tmp_path)
    app = BptwinApp(settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.notebook is not None)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert any("No batch is open" in str(n.message) for n in app._notifications)
        await pilot.press("q")


async def test_command_palette_lists_every_screen(tmp_path: Path) -> None:
    app = BptwinApp(shell_settings(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for destination in DESTINATIONS:
            assert any(destination.label in title for title in titles), destination
        assert any("Quit" in title for title in titles)
        await pilot.press("q")


async def test_the_palette_finds_every_screen_by_its_name(tmp_path: Path) -> None:
    from textual.command import CommandPalette

    from bptwin.screens.acceptance import AcceptanceScreen
    from bptwin.screens.campaign import CampaignScreen
    from bptwin.screens.deviations import DeviationFormScreen

    app, _ = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        for typed, screen_type in (
            ("acceptance", AcceptanceScreen),
            ("campaign", CampaignScreen),
            ("new deviation", DeviationFormScreen),
        ):
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*typed)
            await pilot.pause(0.5)  # the palette searches in the background
            await pilot.press("enter")
            await wait_for(pilot, lambda t=screen_type: isinstance(app.screen, t), 200)
            await app.action_go("dashboard")
        await pilot.press("q")


async def test_an_offline_sample_far_from_the_model_raises_and_stores_an_alarm(
    tmp_path: Path,
) -> None:
    app, notebook = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.station is not None)
        # The model said 5, the lab measured 10.
        sample = notebook.samples.add_sample(
            "ana",
            17,
            od_raw=0.5,
            dilution=20,
            taken_at=datetime.now(timezone.utc),
            predicted_od600=5.0,
        )
        app.post_message(SampleSaved(view_of(SampleView, sample), "R1"))
        actions = app.station.alarm_actions
        await wait_for(
            pilot, lambda: any(v.rule == "od600_disagreement" for v in actions.active_alarms())
        )
        view = next(v for v in actions.active_alarms() if v.rule == "od600_disagreement")
        assert view.unacknowledged
        # Acknowledging through the station stores the operator's name in the notebook.
        actions.acknowledge(view.alarm_id, "ana")
        events = notebook.alarms.list_alarm_events(reactor="R1")
        assert any(event.actor == "ana" for event in events)
        await pilot.press("q")


async def test_batch_and_calibration_screens_open_without_a_batch_and_set_it(
    tmp_path: Path,
) -> None:
    app, notebook = app_with_batch(tmp_path)
    notebook.batches.create_batch("ana", 18, "C", strain="X-33", vessel="V2", reactor_id="R1")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, CalibrationMenuScreen))
        await app.action_go("batch")
        await wait_for(pilot, lambda: isinstance(app.screen, BatchSetupScreen))
        assert app.screen.batch_number == 17
        await pilot.pause()
        for worker in [w for w in app.workers if w.node is app.screen]:
            await worker.wait()  # the screen's own load of batch 17 is done
        await pilot.pause()
        # Opening batch 18 on the batch screen makes it the reactor's batch for the others.
        batch = view_of(BatchView, notebook.batches.get_batch(18))
        app.screen.post_message(BatchSelected(batch, "R1"))
        await wait_for(pilot, lambda: app.batches.get("R1") == 18)
        await app.action_go("notes")
        await wait_for(pilot, lambda: isinstance(app.screen, NotesScreen))
        assert app.screen.batch_number == 18
        await pilot.press("q")


async def test_export_from_the_app_runs_in_a_worker_and_writes_the_report(
    tmp_path: Path,
) -> None:
    from bptwin.screens.export import ExportScreen

    app, _ = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17 and app.station is not None)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        export = app.screen
        await wait_for(pilot, lambda: export.result is not None or export.problem, 400)
        assert export.result is not None, export.problem
        report = export.result.path_of("report-html")
        assert report is not None and report.exists()
        assert "Batch 17" in report.read_text(encoding="utf-8")
        await pilot.press("escape")
        await pilot.press("q")


async def test_acceptance_screen_shows_the_criteria_and_records_a_supervisors_decision(
    tmp_path: Path,
) -> None:
    from bptwin.eln.acceptance_service import latest_decision
    from bptwin.screens.acceptance import AcceptanceScreen

    app, notebook = app_with_batch(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17 and app.station is not None)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, AcceptanceScreen))
        screen = app.screen

        def message() -> str:
            return str(screen.query_one("#acceptance-message").content)

        await wait_for(pilot, lambda: screen.evaluation is not None, 400)
        text = str(screen.query_one("#acceptance-text").content)
        assert "1. " in text and "5. " in text  # every criterion is listed
        assert screen.evaluation.verdict != "pass"  # a batch still running is not complete
        screen.query_one("#acceptance-reason", Input).value = "still running: not for training"
        screen.query_one("#acceptance-supervisor", Input).value = "sam"
        screen.query_one("#acceptance-pin", Input).value = "0000"
        await pilot.press("ctrl+x")
        await wait_for(
            pilot,
            lambda: "Not recorded" in str(screen.query_one("#acceptance-message").content),
            400,
        )
        assert latest_decision(notebook, 17) is None
        # A running batch is decided on only once it has ended.
        screen.query_one("#acceptance-pin", Input).value = "4321"
        await pilot.press("ctrl+x")
        await wait_for(pilot, lambda: "running" in message(), 400)
        assert latest_decision(notebook, 17) is None
        notebook.batches.end_batch("ana", 17, aborted=True, reason="shell test")
        screen.query_one("#acceptance-pin", Input).value = "4321"
        await pilot.press("ctrl+x")
        await wait_for(pilot, lambda: screen.outcome is not None, 400)
        assert "recorded by sam" in message()
        decision = latest_decision(notebook, 17)
        assert decision is not None and decision.decided_by == "sam"
        assert decision.decision.value == "reject"
        await pilot.press("escape")
        await pilot.press("q")
