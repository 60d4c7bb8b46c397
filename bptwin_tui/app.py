"""The Textual application: owns the long-lived workers, routes state to the screens."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState, get_current_worker

from bptwin_tui.settings import Settings, SettingsError
from bptwin_tui.station import Station
from screens.control import ConfirmControlScreen
from screens.dashboard import DashboardScreen
from screens.messages import LiveUpdate, StationStatus


class BptwinApp(App[int]):
    """The bptwin control room."""

    CSS_PATH = "app.tcss"
    TITLE = "bptwin"
    BINDINGS = [
        Binding("q", "quit", "Quit", priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("c", "confirm_control", "Confirm control"),
        Binding("x", "stop_control", "Stop control"),
    ]

    def __init__(
        self,
        settings: Settings,
        station_factory: Callable[[Settings], Station] = Station,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.station_factory = station_factory
        self.station: Station | None = None
        self.theme = "textual-light" if settings.ui.theme == "light" else "textual-dark"

    def on_mount(self) -> None:
        self.dashboard = DashboardScreen(self.settings.station.reactors)
        self.push_screen(self.dashboard)
        self.start_station()

    @work(thread=True, group="station", exit_on_error=False, name="station")
    def start_station(self) -> None:
        """Connect stores, bus and drivers off the UI thread, then hand out snapshots."""
        worker = get_current_worker()
        try:
            station = self.station_factory(self.settings)
            station.start()
        except (SettingsError, OSError) as exc:
            self.post_message(StationStatus(running=False, problem=str(exc)))
            return
        self.station = station
        self.post_message(StationStatus(running=True))
        for warning in station.warnings:
            self.post_message(StationStatus(running=True, problem=warning))
        period = self.settings.ui.refresh_s
        while not worker.cancelled_event.wait(period):
            self.post_message(LiveUpdate(station.snapshot()))

    def on_live_update(self, message: LiveUpdate) -> None:
        if self.screen is self.dashboard:
            self.dashboard.show_snapshot(message.snapshot)

    def on_station_status(self, message: StationStatus) -> None:
        self.dashboard.show_status(message.running, message.problem)
        if message.problem:
            self.notify(message.problem, title="Acquisition", severity="error", timeout=15)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.notify(str(event.worker.error), title=event.worker.name, severity="error")

    def _control_reactor(self) -> str:
        return getattr(self.dashboard, "reactor", self.settings.station.reactors[0])

    def action_confirm_control(self) -> None:
        """A supervisor confirms closed-loop control (mode 1 only); checked and audited."""
        if self.settings.control.mode != 1 or not self.settings.control.enabled:
            self.notify(
                "Control is advisory (set [control] mode = 1 and enabled = true to allow "
                "closed-loop control).",
                title="Control",
            )
            return
        reactor = self._control_reactor()

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
        reactor = self._control_reactor()
        actor = self.settings.station.operator or "operator"
        try:
            self.station.control.revoke(actor, reactor)
        except Exception as exc:
            self.call_from_thread(self.notify, str(exc), title="Control", severity="error")
            return
        self.call_from_thread(self.notify, f"Control of {reactor} back to advice only.")

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    async def action_quit(self) -> None:
        self.workers.cancel_group(self, "station")
        if self.station is not None:
            self.station.stop()
        self.exit(0)
