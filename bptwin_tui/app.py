"""The Textual application: owns the long-lived workers, routes state to the screens."""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState, get_current_worker

from bptwin_tui.settings import Settings, SettingsError
from bptwin_tui.station import Station
from screens.dashboard import DashboardScreen
from screens.messages import LiveUpdate, StationStatus


class BptwinApp(App[int]):
    """The bptwin control room."""

    CSS_PATH = "app.tcss"
    TITLE = "bptwin"
    BINDINGS = [
        Binding("q", "quit", "Quit", priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme"),
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

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    async def action_quit(self) -> None:
        self.workers.cancel_group(self, "station")
        if self.station is not None:
            self.station.stop()
        self.exit(0)
