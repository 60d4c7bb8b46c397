"""The Textual application: owns the long-lived workers, routes state to the screens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from bptwin.screens.alarm_banner import AlarmBanner, newest_unacknowledged_critical
from bptwin.screens.control import ConfirmControlScreen
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.live import LiveApp
from bptwin.screens.messages import BatchSelected, LiveUpdate, SampleSaved, StationStatus
from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.eln.acceptance import AcceptanceEvaluation
    from bptwin.eln.campaign_figures import CampaignFigures
    from bptwin.eln.notebook import Notebook
    from bptwin.eln.read_only_notebook import WriteGuard
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.station import Station
    from bptwin.twin.live import LiveSnapshot


@dataclass(frozen=True)
class Destination:
    """A screen the operator can go to: its key, its name in the footer and palette."""

    name: str
    key: str
    label: str
    help: str
    needs_batch: bool = False


DESTINATIONS: tuple[Destination, ...] = (
    Destination("dashboard", "d", "Dashboard", "Live trends, values, prediction and status"),
    Destination("batch", "b", "Batch", "Create, open or start a batch; record the inoculum"),
    Destination("calibration", "k", "Calibrate", "Calibration wizards and history per channel"),
    Destination("alarms", "a", "Alarms", "Active, unacknowledged and shelved alarms"),
    Destination("samples", "s", "Samples", "Enter an offline sample (OD600, DCW)", True),
    Destination("deviations", "v", "Deviations", "Log and review deviations", True),
    Destination("notes", "o", "Notes", "Free notes of the batch", True),
    Destination(
        "acceptance",
        "r",
        "Acceptance",
        "Batch acceptance review for training: the five criteria and the decision",
        True,
    ),
    Destination("campaign", "p", "Campaign", "Batch acceptance rate and uptime per campaign phase"),
)


# The batch screen's tools, also in the command palette: (tool, title, help).
BATCH_TOOLS: tuple[tuple[str, str, str], ...] = (
    (
        "end",
        "End, abort or close the batch (F7 on the batch screen)",
        "End or abort the running batch, record its closure, a supervisor signs it closed",
    ),
    (
        "changes",
        "Process changes (F8 on the batch screen)",
        "Plan a process change; a supervisor approves it with a signature",
    ),
    (
        "media",
        "Media preparation (F9 on the batch screen)",
        "Record the medium made up for the batch: recipe, autoclave cycle, sterility",
    ),
)


class NotebookReady(Message):
    """The notebook is migrated and open (or could not be: ``problem`` says why)."""

    def __init__(
        self,
        notebook: Notebook | None,
        service: NotebookService | None,
        first_run: bool,
        problem: str = "",
    ) -> None:
        super().__init__()
        self.notebook = notebook
        self.service = service  # for the acceptance flow, which runs behind its screen
        self.first_run = first_run
        self.problem = problem


class BatchContext(Message):
    """The batch open on each reactor (None: no batch in setup or running there)."""

    def __init__(self, batches: dict[str, int | None]) -> None:
        super().__init__()
        self.batches = batches


class BptwinApp(LiveApp[int]):
    """The bptwin control room; ``snapshot`` (a reactive the screens watch) is the newest
    LiveSnapshot of the station."""

    CSS_PATH = "app.tcss"
    TITLE = "bptwin"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        *(
            Binding(destination.key, f"go('{destination.name}')", destination.label)
            for destination in DESTINATIONS
        ),
        Binding("e", "export_batch", "Export"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("c", "confirm_control", "Confirm control", show=False),
        Binding("x", "stop_control", "Stop control", show=False),
    ]

    def __init__(
        self,
        settings: Settings,
        station_factory: Callable[[Settings], Station] | None = None,
        *,
        require_login: bool = False,
        web: bool = False,
        migrate: bool = True,
    ) -> None:
        """``station_factory`` defaults to the acquisition station (imported in its worker, as it
        pulls in numpy and the bus); ``require_login``: ask for name and PIN at start; ``web``:
        a browser session, read-only unless ``[web] allow_writes`` and a PIN login (docs/web.md);
        ``migrate``: False when the notebook was migrated already (``bptwin web`` does it once)."""
        super().__init__()
        self.write_guard: WriteGuard | None = None
        if web:
            from bptwin.eln.read_only_notebook import WriteGuard

            self.write_guard = WriteGuard(writes_allowed=settings.web.allow_writes)
            require_login = settings.web.allow_writes  # offered, not forced: Escape views
        self.settings = settings
        self.station_factory = station_factory
        self.migrate = migrate
        self.station: Station | None = None
        self.notebook: Notebook | None = None
        self.notebook_service: NotebookService | None = None
        self.require_login = require_login
        self.operator = settings.station.operator or ("" if require_login else "operator")
        if web:
            self.operator = ""  # a browser viewer acts as nobody until a PIN login
        self.batches: dict[str, int | None] = dict.fromkeys(settings.station.reactors)
        self._critical_seen: frozenset[str] = frozenset()
        self.stopping = False  # quit pressed: the station stops in the "shutdown" worker
        self.theme = "textual-light" if settings.ui.theme == "light" else "textual-dark"

    # ---- start-up ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.dashboard = DashboardScreen(self.settings.station.reactors, clock=self.station_now)
        self.push_screen(self.dashboard)
        self._show_operator()
        self._show_access()
        self.open_notebook()

    @work(thread=True, group="notebook", exit_on_error=False, name="notebook")
    def open_notebook(self) -> None:
        """Migrate and open the notebook first, so the station never races the migration."""
        from bptwin.database.relational import DatabaseUnavailable
        from bptwin.eln.services import NotebookService

        url = self.settings.notebook_url()
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            if self.migrate:
                from bptwin.database.migrate import upgrade

                upgrade(url)
            notebook = NotebookService.from_url(
                url, calibration_policy=self.settings.calibration.policy()
            )
            first_run = not notebook.operators.list_operators()
        except (DatabaseUnavailable, OSError, SettingsError) as exc:
            self.post_message(NotebookReady(None, None, False, f"notebook.url: {exc}"))
        else:
            from bptwin.eln.direct_notebook import DirectNotebook
            from bptwin.eln.write_queue import SpooledNotebook

            # Samples, notes, deviations... made while the database is away wait on disk.
            spool = self.settings.spool_dir() / "notebook-app.sqlite"
            screens_notebook = SpooledNotebook.open_exclusive(notebook, spool)
            self.post_message(
                NotebookReady(screens_notebook or DirectNotebook(notebook), notebook, first_run)
            )
        finally:
            if not get_current_worker().is_cancelled:
                self.call_from_thread(self.start_station)

    @on(NotebookReady)
    def _notebook_ready(self, message: NotebookReady) -> None:
        self.notebook = message.notebook
        if self.write_guard is not None and message.notebook is not None:
            from bptwin.eln.read_only_notebook import ReadOnlyNotebook

            # Refused below the screens, at the notebook seam: no screen can write around it.
            self.notebook = ReadOnlyNotebook(message.notebook, self.write_guard)
        self.notebook_service = message.service
        self._follow_station_clock()
        if message.problem:
            self.notify(message.problem, title="Notebook", severity="error", timeout=15)
            return
        if self.require_login and not (self.write_guard is not None and message.first_run):
            self._ask_login(message.first_run)
        else:
            self.refresh_batches()

    def _ask_login(self, first_run: bool) -> None:
        from bptwin.screens.login import LoginScreen

        assert self.notebook is not None

        def logged_in(name: str | None) -> None:
            if not name:
                return
            self.operator = name
            if self.write_guard is not None:
                self.write_guard.grant(name)
                self._show_access()
            self._show_operator()
            self.notify(f"Logged in as {name}.", title="Operator")
            self.refresh_batches()

        self.push_screen(
            LoginScreen(
                self.notebook,
                first_run=first_run,
                station=self.settings.station.name,
                viewer_allowed=self.write_guard is not None,
            ),
            logged_in,
        )

    def _show_operator(self) -> None:
        self.sub_title = f"operator {self.operator or '—'}"
        self.dashboard.set_operator(self.operator)

    def _show_access(self) -> None:
        """A browser session says on the status strip whether it may write."""
        guard = self.write_guard
        if guard is None:
            return
        self.dashboard.set_access(
            "read-only (web)" if guard.read_only else f"web: writes as {guard.writer}"
        )

    def refused_here(self, actor: str, what: str) -> bool:
        """True (and the reason shown) when this browser session may not do ``what``."""
        if self.write_guard is None:
            return False
        try:
            self.write_guard.check(actor)
        except PermissionError as exc:
            self.notify(str(exc), title=what, severity="error", timeout=10)
            return True
        return False

    @work(thread=True, group="batches", exclusive=True, exit_on_error=False)
    def refresh_batches(self) -> None:
        """Find the batch in setup or running on each reactor (newest wins)."""
        if self.notebook is None:
            return
        from bptwin.eln.states import BatchStatus

        open_statuses = {BatchStatus.SETUP, BatchStatus.RUNNING}
        batches: dict[str, int | None] = dict.fromkeys(self.settings.station.reactors)
        every = self.notebook.list_batches()
        candidates = [b for b in every if b.status in open_statuses]
        reactors = self.settings.station.reactors
        for batch in sorted(candidates, key=lambda b: (b.status == BatchStatus.RUNNING, b.id)):
            reactor = batch.reactor_id or reactors[0]
            if reactor in batches:
                batches[reactor] = batch.number
        # A batch ended here stays the reactor's until the next one is set up: its closure,
        # signatures, acceptance and export come after the end.
        ended = {b.number for b in every if b.status not in open_statuses}
        for reactor, number in list(self.batches.items()):
            if batches.get(reactor, 0) is None and number in ended:
                batches[reactor] = number
        history = self.station.history if self.station is not None else None
        if history is not None:  # the open batches' offline samples on the OD600 plot
            for reactor, number in batches.items():
                if number is not None:
                    # Dry-weight-only samples have no point on the OD600 plot.
                    measured = [
                        (s.taken_at.timestamp(), s.od600)
                        for s in self.notebook.list_samples(number)
                        if s.od600 is not None
                    ]
                    history.set_samples(
                        reactor, [at for at, _ in measured], [od for _, od in measured]
                    )
        self.post_message(BatchContext(batches))

    @on(BatchContext)
    def _batch_context(self, message: BatchContext) -> None:
        self.batches = message.batches
        self.dashboard.set_batches(self.batches)

    @on(BatchSelected)
    def _batch_selected(self, message: BatchSelected) -> None:
        """The batch screen created, opened or started a batch: it is the reactor's batch now."""
        if message.reactor in self.batches:
            self.batches[message.reactor] = message.batch.number
            self.dashboard.set_batches(self.batches)

    @work(thread=True, group="station", exit_on_error=False, name="station")
    def start_station(self) -> None:
        """Connect stores, bus and drivers off the UI thread, then hand out snapshots."""
        worker = get_current_worker()
        try:
            factory = self.station_factory
            if factory is None:
                from bptwin.tui.runtime.station import Station

                factory = Station
            station = factory(self.settings)
            station.start()
        except (SettingsError, OSError) as exc:
            self.post_message(StationStatus(running=False, problem=str(exc)))
            return
        if worker.is_cancelled or self.stopping:  # quit while starting: stop it here
            station.stop()
            return
        self.station = station
        self.call_from_thread(self._follow_station_clock)
        self.post_message(StationStatus(running=True))
        for warning in station.warnings:
            self.post_message(StationStatus(running=True, problem=warning))
        period = self.settings.ui.refresh_s
        while not worker.cancelled_event.wait(period):
            self.post_message(LiveUpdate(station.snapshot()))

    def station_now(self) -> float:
        """Now on the shown reactor's clock: the wall clock, or a simulated run's own time
        (runtime/clock.py), so ages, shelve times and notebook entries match its readings."""
        clock = getattr(self.station, "clock", None)
        return clock.now(self._reactor()) if clock is not None else time.time()

    def _follow_station_clock(self) -> None:
        """A simulated or replayed run: the screens' notebook entries take its time line."""
        if self.notebook_service is None or not getattr(self.station, "simulated", False):
            return
        self.notebook_service.clock = lambda: datetime.fromtimestamp(
            self.station_now(), tz=timezone.utc
        )

    # ---- live state to the screens -------------------------------------------------------

    @on(LiveUpdate)
    def _live_update(self, message: LiveUpdate) -> None:
        if not self.screen_stack:
            return  # the app is closing: no screen left to show it on
        self.snapshot = message.snapshot  # the screens following it show it

    def watch_snapshot(self, snapshot: LiveSnapshot | None) -> None:
        """A new unacknowledged critical alarm is announced on whatever screen is showing."""
        if snapshot is None:
            return
        critical = newest_unacknowledged_critical(snapshot.alarms)
        ids = frozenset(view.alarm_id for view in critical)
        new = [view for view in critical if view.alarm_id not in self._critical_seen]
        self._critical_seen = ids
        banners = list(self.screen.query(AlarmBanner))
        for banner in banners:
            banner.show_alarms(snapshot.alarms)
        if not new:
            return
        if not banners:
            self.bell()  # a banner rings the bell itself
        newest = new[0]
        self.notify(
            f"{newest.reactor}: {newest.message} — press a for the alarm screen",
            title="CRITICAL ALARM",
            severity="error",
            timeout=30,
        )

    @on(StationStatus)
    def _station_status(self, message: StationStatus) -> None:
        self.dashboard.show_status(message.running, message.problem)
        if message.running and self.station is not None and self.station.history is not None:
            # Thread-safe history: the dashboard's render worker takes immutable windows of it.
            self.dashboard.attach_history(self.station.history)
            self.refresh_batches()  # also puts the open batches' samples on the plot
        if message.problem:
            self.notify(message.problem, title="Acquisition", severity="error", timeout=15)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.notify(str(event.worker.error), title=event.worker.name, severity="error")

    @on(SampleSaved)
    def _sample_saved(self, message: SampleSaved) -> None:
        """An offline OD600 goes to the alarm engine's model-versus-sample check."""
        self.refresh_batches()  # and onto the dashboard's OD600 plot, reloaded from the notebook
        sample = message.sample
        actions = self.station.alarm_actions if self.station is not None else None
        # A viewer's actions have no feed_sample: the engine runs in the acquiring process.
        feed_sample = getattr(actions, "feed_sample", None)
        if sample.od600 is None or sample.predicted_od600 is None or feed_sample is None:
            return  # a dry-weight-only sample has no OD600 to check the model against
        feed_sample(
            message.reactor, sample.taken_at.timestamp(), sample.od600, sample.predicted_od600
        )

    # ---- navigation ----------------------------------------------------------------------

    def _reactor(self) -> str:
        return self.dashboard.reactor

    def _batch(self) -> int | None:
        return self.batches.get(self._reactor())

    async def action_go(self, name: str) -> None:
        """Show a screen above the dashboard (one at a time, so the stack never piles up)."""
        destination = next((d for d in DESTINATIONS if d.name == name), None)
        if destination is None:
            return
        if self.require_login and not self.operator and self.write_guard is None:
            self.notify("Log in first.", severity="warning")
            return
        if name != "dashboard" and name != "alarms" and self.notebook is None:
            self.notify("The notebook is not open.", severity="error")
            return
        if destination.needs_batch and self._batch() is None:
            self.notify(
                f"No batch is open on {self._reactor()}: create or open one first.",
                title=destination.label,
                severity="warning",
            )
            return
        screen = None if name == "dashboard" else self._make_screen(name)
        if name != "dashboard" and screen is None:
            return
        while len(self.screen_stack) > 2 and self.screen is not self.dashboard:
            await self.pop_screen()
        if screen is not None:
            await self.push_screen(screen)

    def _make_screen(self, name: str) -> Screen | None:
        batch = self._batch()
        reactor = self._reactor()
        if name == "alarms":
            from bptwin.screens.alarms import AlarmActions, AlarmScreen

            engine = self.station.alarm_actions if self.station is not None else None
            if engine is None:
                self.notify("Acquisition is not running: no alarm engine.", severity="error")
                return None
            actions: AlarmActions = engine
            if self.write_guard is not None:
                from bptwin.tui.runtime.web_session import GuardedAlarms

                actions = GuardedAlarms(engine, self.write_guard)
            return AlarmScreen(
                actions,
                self.operator,
                notebook=self.notebook,
                batch_number=batch,
                reactor=None if len(self.settings.station.reactors) == 1 else reactor,
                clock=self.station_now,
            )
        assert self.notebook is not None
        if name == "batch":
            from bptwin.screens.batch import BatchSetupScreen

            return BatchSetupScreen(
                self.notebook, self.operator, batch_number=batch, reactor=reactor
            )
        if name == "calibration":
            from bptwin.screens.calibration import CalibrationMenuScreen

            return CalibrationMenuScreen(
                self.notebook, self.operator, batch_number=batch, reactor=reactor
            )
        if name == "campaign":
            return self._campaign_screen()
        assert batch is not None
        if name == "acceptance":
            return self._acceptance_screen(batch, reactor)
        if name == "samples":
            from bptwin.screens.samples import SampleEntryScreen

            return SampleEntryScreen(self.notebook, batch, self.operator, reactor=reactor)
        if name == "deviations":
            from bptwin.screens.deviations import DeviationsScreen

            return DeviationsScreen(self.notebook, batch, self.operator)
        if name == "notes":
            from bptwin.screens.notes import NotesScreen

            return NotesScreen(self.notebook, batch, self.operator)
        return None

    def _acceptance_screen(self, batch: int, reactor: str) -> Screen:
        """The acceptance flow runs behind the screen's callables, on its worker threads."""
        from bptwin.screens.acceptance import AcceptanceScreen
        from bptwin.tui.export import acceptance_flow
        from bptwin.tui.export.acceptance_registry import training_set_dir

        notebook = self.notebook_service
        assert notebook is not None
        store = self.station.store if self.station is not None else None

        def evaluate() -> AcceptanceEvaluation:
            return acceptance_flow.evaluate_batch(notebook, store, batch, reactor=reactor)

        guard = self.write_guard
        operator = self.operator

        def decide(supervisor: str, pin: str, decision: str, reason: str) -> object:
            if guard is not None:
                guard.check(operator)
            return acceptance_flow.decide_batch(
                notebook,
                store,
                batch,
                supervisor=supervisor,
                pin=pin,
                decision=decision,
                reason=reason,
                reactor=reactor,
                training_set=training_set_dir(self.settings.data_dir),
            )

        return AcceptanceScreen(
            batch,
            self.operator,
            evaluate=evaluate,
            decide=decide,
        )

    def _campaign_screen(self) -> Screen | None:
        """The figures are computed behind the screen, on its worker thread."""
        from bptwin.eln.campaign_service import load_campaign_figures
        from bptwin.screens.campaign import CampaignScreen

        notebook = self.notebook_service
        if notebook is None:
            self.notify("The notebook is not open.", severity="error")
            return None
        store = self.station.store if self.station is not None else None
        reactor = self.settings.station.reactors[0]

        def load() -> CampaignFigures:
            return load_campaign_figures(notebook, store, default_reactor=reactor)

        return CampaignScreen(load)

    def action_export_batch(self) -> None:
        """Report (HTML, Markdown) and dataset of the reactor's batch, in a worker with progress."""
        from bptwin.screens.export import ExportScreen

        batch = self._batch()
        if self.refused_here(self.operator, "Export"):
            return
        if batch is None:
            self.notify(
                f"No batch is open on {self._reactor()}: open one on the batch screen (b).",
                title="Export",
                severity="warning",
            )
            return
        settings = self.settings
        store = self.station.store if self.station is not None else None

        def run(progress: Callable[[float, str], None]) -> object:
            from bptwin.tui.export import export_batch

            return export_batch(settings, batch, None, ("html", "md"), progress, store=store)

        def finished(result: object) -> None:
            if result is not None and hasattr(result, "summary"):
                self.notify(f"Exported {result.summary()}", title="Export", timeout=15)

        self.push_screen(ExportScreen(f"Export batch {batch}", run), finished)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) finds every screen and action."""
        yield from super().get_system_commands(screen)
        for destination in DESTINATIONS:
            yield SystemCommand(
                f"Go to {destination.label} ({destination.key})",
                destination.help,
                partial(self.run_action, f"go('{destination.name}')"),
            )
        for tool, title, help_text in BATCH_TOOLS:
            yield SystemCommand(title, help_text, partial(self.open_batch_tool, tool))
        yield SystemCommand(
            "Alarm history (a, then h)",
            "Every stored alarm transition of the batch, newest first",
            partial(self._open_then, "alarms", "history"),
        )
        yield SystemCommand(
            "Log a new deviation (v, then n)",
            "The deviation form of the open batch, with the SOP's examples per level",
            partial(self._open_then, "deviations", "new"),
        )
        yield SystemCommand(
            "Export batch report and dataset (e)",
            "HTML and Markdown report with plots, Parquet dataset with checksums",
            self.action_export_batch,
        )
        yield SystemCommand(
            "Next reactor (n)", "Switch the dashboard to the next reactor", self._next_reactor
        )
        yield SystemCommand(
            "Confirm closed-loop control (c)",
            "A supervisor confirms control mode 1 (name and PIN)",
            self.action_confirm_control,
        )
        yield SystemCommand(
            "Stop closed-loop control (x)", "Back to advice only", self.action_stop_control
        )
        yield SystemCommand(
            "Toggle light/dark theme (ctrl+t)", "Switch theme", self.action_toggle_theme
        )

    async def _open_then(self, name: str, action: str) -> None:
        """Go to a screen and run one of its actions (the palette's way into a sub-screen)."""
        await self.action_go(name)
        if self.screen is not self.dashboard:  # not refused (no batch, not logged in...)
            await self.run_action(action, self.screen)

    async def open_batch_tool(self, name: str) -> None:
        """End/close, process changes or media of the reactor's batch (batch screen F7-F9)."""
        from bptwin.screens.batch import batch_tool_screen

        batch = self._batch()
        if self.notebook is None or batch is None:
            self.notify(
                f"No batch is open on {self._reactor()}: open it on the batch screen (b), "
                "then F7 (end/close), F8 (changes) or F9 (media).",
                severity="warning",
            )
            return
        await self.push_screen(
            batch_tool_screen(name, self.notebook, self.operator, batch, self._reactor())
        )

    async def _next_reactor(self) -> None:
        await self.action_go("dashboard")
        self.dashboard.action_next_reactor()

    # ---- control -------------------------------------------------------------------------

    def action_confirm_control(self) -> None:
        """A supervisor confirms closed-loop control (mode 1 only); checked and audited."""
        if self.refused_here(self.operator, "Control"):
            return
        if self.settings.control.mode != 1 or not self.settings.control.enabled:
            self.notify(
                "Control is advisory (set [control] mode = 1 and enabled = true to allow "
                "closed-loop control).",
                title="Control",
            )
            return
        reactor = self._reactor()

        def confirmed(result: tuple[str, str] | None) -> None:
            if result is not None:
                self.authorise_control(reactor, *result)

        self.push_screen(
            ConfirmControlScreen(reactor, self.settings.control.confirmation_minutes), confirmed
        )

    @work(thread=True, group="control", exit_on_error=False)
    def authorise_control(self, reactor: str, supervisor: str, pin: str) -> None:
        if self.station is None or self.station.control is None:
            self.call_from_thread(self.notify, "Acquisition is not running.", severity="error")
            return
        try:
            authorisation = self.station.control.authorise(supervisor, pin, reactor)
        except Exception as exc:  # wrong PIN, not a supervisor, notebook down: say so
            self.call_from_thread(self.notify, str(exc), title="Control", severity="error")
            return
        self.call_from_thread(
            self.notify,
            f"Closed-loop control of {reactor} confirmed by {authorisation.supervisor}.",
            title="Control",
        )

    @work(thread=True, group="control", exit_on_error=False)
    def action_stop_control(self) -> None:
        if self.station is None or self.station.control is None:
            return
        if self.write_guard is not None and self.write_guard.read_only:
            self.call_from_thread(self.refused_here, self.operator, "Control")
            return
        reactor = self._reactor()
        actor = self.operator or "operator"
        try:
            self.station.control.revoke(actor, reactor)
        except Exception as exc:
            self.call_from_thread(self.notify, str(exc), title="Control", severity="error")
            return
        self.call_from_thread(self.notify, f"Control of {reactor} back to advice only.")

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    async def action_quit(self) -> None:
        """Stop the station in a worker: the UI keeps drawing while the stores flush."""
        if self.stopping:
            return
        self.stopping = True
        self.workers.cancel_group(self, "station")
        self.dashboard.show_status(False, "Stopping… (what still waits stays on disk)")
        self.notify("Stopping…", title="bptwin", timeout=60)
        self.stop_and_exit()

    @work(thread=True, group="shutdown", exit_on_error=False, name="stopping")
    def stop_and_exit(self) -> None:
        try:
            if self.station is not None:
                self.station.stop()
            if self.notebook is not None:
                self.notebook.close()  # what is still queued stays on disk for the next start
        finally:
            self.call_from_thread(self.exit, 0)
