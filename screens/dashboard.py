"""The dashboard: current value of every channel of the selected reactor.

The trend plots, prediction and alarm banner of the full control room build on this screen.
"""

from __future__ import annotations

import math
import time

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from database.channels import CHANNELS, CHANNELS_BY_NAME
from twin.live import LiveSnapshot

STALE_AFTER_S = 10.0


class DashboardScreen(Screen[None]):
    """Live values with units, quality and age."""

    BINDINGS = [Binding("n", "next_reactor", "Next reactor", show=True)]

    def __init__(self, reactors: list[str]) -> None:
        super().__init__()
        self.reactors = reactors
        self.reactor = reactors[0]
        self._last_snapshot: LiveSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True, time_format="%H:%M:%S")
        with Vertical(id="dashboard"):
            yield Static("Waiting for acquisition…", id="status-strip")
            yield Static("Waiting for the first 30 s window…", id="process")
            yield DataTable(id="current-values", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#current-values", DataTable)
        table.add_column("Channel", key="channel", width=28)
        table.add_column("Value", key="value", width=12)
        table.add_column("Unit", key="unit", width=8)
        table.add_column("Quality", key="quality", width=10)
        table.add_column("Age", key="age", width=8)
        for channel in CHANNELS:
            table.add_row(channel.label, "—", channel.unit, "—", "—", key=channel.name)
        self._update_titles()

    def _update_titles(self) -> None:
        self.title = "bptwin"
        self.sub_title = f"reactor {self.reactor} · batch —"

    def action_next_reactor(self) -> None:
        index = self.reactors.index(self.reactor)
        self.reactor = self.reactors[(index + 1) % len(self.reactors)]
        self._update_titles()
        if self._last_snapshot is not None:
            self.show_snapshot(self._last_snapshot)

    def show_status(self, running: bool, problem: str = "") -> None:
        strip = self.query_one("#status-strip", Static)
        if problem:
            strip.update(f"[b red]Acquisition problem:[/] {problem}")
        elif running:
            strip.update("Acquisition running")
        else:
            strip.update("Acquisition stopped")

    def show_snapshot(self, snapshot: LiveSnapshot) -> None:
        self._last_snapshot = snapshot
        table = self.query_one("#current-values", DataTable)
        now = time.time()
        for reading in snapshot.for_reactor(self.reactor):
            if reading.channel not in CHANNELS_BY_NAME:
                continue
            value = "—" if math.isnan(reading.value) else f"{reading.value:.3g}"
            age_s = max(0.0, now - reading.timestamp)
            age = f"{age_s:.0f} s" if age_s < 3600 else f"{age_s / 3600:.1f} h"
            if age_s > STALE_AFTER_S:
                age = f"[yellow]{age}[/]"
            table.update_cell(reading.channel, "value", value)
            table.update_cell(reading.channel, "unit", reading.unit)
            table.update_cell(reading.channel, "quality", reading.quality.value)
            table.update_cell(reading.channel, "age", age)
        model = snapshot.model_version or "no model"
        self.query_one("#status-strip", Static).update(
            f"Acquisition running · {snapshot.readings_total} readings · model {model}"
            + "".join(f" · [red]{escape(problem)}[/]" for problem in snapshot.problems)
        )
        self.query_one("#process", Static).update(process_text(snapshot, self.reactor))


def _number(value: float, digits: int = 2) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def process_text(snapshot: LiveSnapshot, reactor: str) -> str:
    """The process panel: prediction, off-gas rates, phase, alarms and control advice."""
    lines = []
    prediction = snapshot.predictions.get(reactor)
    if prediction is not None:
        lines.append(
            f"[b]OD600 predicted[/] {prediction.od600:.2f} "
            f"({prediction.lower:.2f}–{prediction.upper:.2f}) · model {prediction.model_version}"
        )
    state = snapshot.states.get(reactor)
    if state is not None:
        noisy = " [yellow](low signal: O₂ drop at analyser noise)[/]" if state.low_signal else ""
        lines.append(
            f"[b]OUR[/] {_number(state.our)}  [b]CER[/] {_number(state.cer)} mmol/L/h  "
            f"[b]RQ[/] {_number(state.rq_smooth)}  [b]μ[/] {_number(state.mu_cer, 3)} 1/h  "
            f"[b]kLa[/] {_number(state.kla, 0)} 1/h{noisy}"
        )
        depletion = " · [b]glycerol depleted[/]" if state.depleted else ""
        lines.append(
            f"[b]Phase[/] {state.phase} · {state.time_since_inoculation_h:.1f} h since "
            f"inoculation{depletion}"
        )
    alarms = snapshot.alarms_for(reactor)
    if alarms:
        newest = alarms[0]
        lines.append(
            f"[b red]{len(alarms)} alarm(s)[/]: {newest.priority.value} {escape(newest.message)}"
        )
    for advice in snapshot.advice.get(reactor, ()):
        lines.append(
            f"[b]Advice[/] {advice.parameter} → {advice.recommended:g}: {escape(advice.reason)}"
        )
    control = snapshot.control_status.get(reactor)
    if control:
        lines.append(f"[dim]Control: {escape(control)}[/]")
    return "\n".join(lines) if lines else "Waiting for the first 30 s window…"
