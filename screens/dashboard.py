"""The dashboard: trend plots, status strip, current values and process panel of one reactor.

It watches the App's immutable ``LiveSnapshot`` (``show_snapshot``, while it is on top) and,
once the station is up, the App hands it the station's trend history (``attach_history``).
Plots are drawn by a render worker of this screen on its own clock (at most once a second),
only while the screen is shown and only when the history or the view changed; the UI thread
only swaps in the finished figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME
from bptwin.screens.alarm_banner import AlarmBanner
from bptwin.screens.live import follow_snapshots
from bptwin.screens.safe_text import escape
from bptwin.screens.trends import (
    GROUP_NAMES,
    MAX_PLOTS,
    PLOT_GROUPS,
    PlotDef,
    TrendPlot,
    TrendRequest,
    TrendsRendered,
    render_trends,
    trace_points,
    visible_pages,
)
from bptwin.screens.value_table import ValueColumn, ValueTable
from bptwin.twin.display import (
    MODEL_ADAPTED,
    MODEL_DRIFT,
    MODEL_FALLBACK,
    attributions_line,
    human_number,
    model_state,
)
from bptwin.twin.history import WINDOW_NAMES, History, HistoryWindow
from bptwin.twin.live import LiveSnapshot

if TYPE_CHECKING:
    from bptwin.twin.predictor import Prediction

STALE_AFTER_S = 10.0
VALUE_COLUMNS = (
    ValueColumn("channel", "Channel", 22),
    ValueColumn("value", "Value", 8),
    ValueColumn("unit", "Unit", 6),
    ValueColumn("quality", "Quality", 9),
    ValueColumn("age", "Age", 5),
)
REDRAW_S = 1.0  # plots redraw at most this often
# Long windows: one bucket of the plot spans minutes, so a second's new data barely moves it;
# new data redraws them less often (a new view still draws at once).
REDRAW_LONG_WINDOW_S = 5.0
LONG_WINDOWS = frozenset({"6 h", "batch"})
NARROW_BELOW = 120  # columns: narrower terminals show plots or values, not both
PLOT_MIN_ROWS = 8  # a shorter plot is unreadable; fewer plots per page instead
CHROME_ROWS = 8  # header, alarm line, status strip (2-3), trend bar, footer
# Channels only some reactors have (a fed-batch's feed pump): listed once one reports.
LISTED_WHEN_REPORTED = frozenset({"feed_total"})


class DashboardScreen(Screen[None]):
    """Live trends, values with units, quality and age, and the process state of one reactor."""

    BINDINGS = [
        Binding("n", "next_reactor", "Next reactor", show=True),
        Binding("w", "next_window", "Window", show=True),
        Binding("g", "next_plots", "Plots", show=True),
        Binding("t", "toggle_values", "Values/plots", show=True),
    ]

    def __init__(
        self,
        reactors: list[str],
        *,
        operator: str = "",
        clock: Callable[[], float] = time.time,
        show_clock: bool = True,
    ) -> None:
        super().__init__()
        self.reactors = reactors
        self.reactor = reactors[0]
        self.operator = operator
        self.access = ""  # e.g. "read-only (web)": what this session may do
        self.batches: dict[str, int | None] = {}
        self.window = WINDOW_NAMES[1]  # 1 h
        self.group = GROUP_NAMES[0]
        self.page = 0
        self._fit = MAX_PLOTS  # plots per page, from the height the plot area gets
        self.history: History | None = None
        self._clock = clock
        self._show_clock = show_clock
        self._last_snapshot: LiveSnapshot | None = None
        self._status = "Waiting for acquisition…"
        self._problem = ""
        self._composed = False
        self._wanted: TrendRequest | None = None  # the latest request handed to the worker
        self._drawn: TrendRequest | None = None  # what the plots show now
        self._drawn_at = -math.inf
        self._rendering = False
        self.trend_window: HistoryWindow | None = None  # the window the plots show
        self._cells: dict[tuple[str, str, str], tuple[str, str]] = {}

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self._show_clock, time_format="%H:%M:%S")
        yield AlarmBanner(id="alarm-banner")
        with Vertical(id="dashboard"):
            yield Static("", id="alarm-line")
            yield Static(self._status, id="status-strip")
            yield DataTable(id="reactors", cursor_type="row", show_cursor=True)
            yield Static("", id="trend-bar")
            with Horizontal(id="dashboard-body"):
                with Vertical(id="trends"):
                    for index in range(MAX_PLOTS):
                        yield TrendPlot(id=f"plot-{index}")
                with Vertical(id="side"):
                    yield Static("Waiting for the first 30 s window…", id="process")
                    yield ValueTable(VALUE_COLUMNS, id="current-values")
        yield Footer()

    def on_mount(self) -> None:
        self._composed = True
        table = self.query_one("#current-values", ValueTable)
        self._value_rows: set[str] = set()
        for channel in CHANNELS:
            if channel.name not in LISTED_WHEN_REPORTED:
                table.add_row(channel.name, (channel.label, "—", channel.unit, "—", "—"))
                self._value_rows.add(channel.name)
        overview = self.query_one("#reactors", DataTable)
        overview.display = len(self.reactors) > 1
        for key, label, width in (
            ("reactor", "Reactor", 10),
            ("phase", "Phase", 12),
            ("elapsed", "Elapsed", 8),
            ("od600", "OD600 pred.", 11),
            ("do", "DO %sat", 8),
            ("alarms", "Alarms", 6),
        ):
            overview.add_column(label, key=key, width=width)
        for reactor in self.reactors:
            overview.add_row(reactor, "—", "—", "—", "—", "—", key=reactor)
        self._layout_for(self.size.width, self.size.height)
        self._update_titles()
        self._show_trend_bar()
        self._show_strip()
        self.set_interval(REDRAW_S, self._redraw_trends)
        follow_snapshots(self, self.show_snapshot)

    # ---- what the App calls ------------------------------------------------------------

    def attach_history(self, history: History) -> None:
        """The station's trend history; the plots start drawing from it at once."""
        self.history = history
        self._redraw_trends()

    def set_operator(self, operator: str) -> None:
        self.operator = operator
        self._show_strip()

    def set_access(self, access: str) -> None:
        """Say on the status strip what this session may do (a browser viewer: read-only)."""
        self.access = access
        self._show_strip()

    def set_batches(self, batches: dict[str, int | None]) -> None:
        """The batch open on each reactor (None where there is none)."""
        self.batches = dict(batches)
        self._update_titles()
        self._show_strip()

    def show_status(self, running: bool, problem: str = "") -> None:
        """Acquisition up or down; ``problem`` stays on the strip until the next status."""
        self._status = "Acquisition running" if running else "[b red]Acquisition stopped[/]"
        self._problem = problem
        self._show_strip()

    def show_snapshot(self, snapshot: LiveSnapshot) -> None:
        self._last_snapshot = snapshot
        with self.app.batch_update():
            self._show_values(snapshot)
            self._show_strip()
            self._show_alarms(snapshot)
            self._show_overview(snapshot)
            self.query_one("#process", Static).update(process_text(snapshot, self.reactor))

    # ---- keys --------------------------------------------------------------------------

    def _update_titles(self) -> None:
        self.title = "bptwin"
        batch = self.batches.get(self.reactor)
        self.sub_title = f"reactor {self.reactor} · batch {batch if batch is not None else '—'}"

    def action_next_reactor(self) -> None:
        index = self.reactors.index(self.reactor)
        self.select_reactor(self.reactors[(index + 1) % len(self.reactors)])

    def select_reactor(self, reactor: str) -> None:
        if reactor not in self.reactors:
            return
        self.reactor = reactor
        self._update_titles()
        if self._last_snapshot is not None:
            self.show_snapshot(self._last_snapshot)
        self._view_changed()

    @on(DataTable.RowSelected, "#reactors")
    def _reactor_chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.select_reactor(str(event.row_key.value))

    def action_next_window(self) -> None:
        self.window = WINDOW_NAMES[(WINDOW_NAMES.index(self.window) + 1) % len(WINDOW_NAMES)]
        self._view_changed()

    def select_window(self, window: str) -> None:
        if window in WINDOW_NAMES:
            self.window = window
            self._view_changed()

    def action_next_plots(self) -> None:
        """Next page of the group's plots, or the next group after its last page."""
        if self.page + 1 < len(self._pages()):
            self.page += 1
        else:
            self.page = 0
            self.group = GROUP_NAMES[(GROUP_NAMES.index(self.group) + 1) % len(GROUP_NAMES)]
        self._view_changed()

    def action_toggle_values(self) -> None:
        self.toggle_class("-values")
        self._view_changed()

    # ---- layout ------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._layout_for(self.size.width, self.size.height)
        self._view_changed()

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < NARROW_BELOW, "-narrow")
        self._fit = max(1, (height - CHROME_ROWS) // PLOT_MIN_ROWS)
        self.page = min(self.page, len(self._pages()) - 1)

    def _fit_now(self) -> int:
        """Plots per page for the height the plot area really got (status lines and the
        reactor overview vary); the current value while the layout is not done."""
        height = self.query_one("#trends").size.height
        return max(1, height // PLOT_MIN_ROWS) if height > 0 else self._fit

    def _refit(self) -> bool:
        """Adopt ``_fit_now``; True when the number of plots per page changed."""
        fit = self._fit_now()
        if fit == self._fit:
            return False
        self._fit = fit
        self.page = min(self.page, len(self._pages()) - 1)
        return True

    def trends_settled(self) -> bool:
        """The plots show what the view, the layout and the data ask for (tests, benchmarks)."""
        if self._fit_now() != self._fit or self._rendering:
            return False
        request = self._request()
        return request is not None and request == self._drawn

    def on_trend_plot_resized(self, message: TrendPlot.Resized) -> None:
        message.stop()
        self.call_after_refresh(self._redraw_trends)

    def _pages(self) -> list[tuple[PlotDef, ...]]:
        return visible_pages(PLOT_GROUPS[self.group], self._fit)

    def _visible_plots(self) -> list[TrendPlot]:
        plots = self._pages()[self.page]
        widgets = list(self.query(TrendPlot))
        for index, widget in enumerate(widgets):
            widget.display = index < len(plots)
        return widgets[: len(plots)]

    def _view_changed(self) -> None:
        self._show_trend_bar()
        plots = self._pages()[self.page]
        for widget, plot in zip(self._visible_plots(), plots, strict=True):
            if widget.plot != plot:
                widget.clear(plot)
        # Sizes settle after the layout pass; draw right after it.
        self.call_after_refresh(self._redraw_trends)

    def _show_trend_bar(self) -> None:
        windows = " ".join(
            f"[reverse] {name} [/]" if name == self.window else f" {name} " for name in WINDOW_NAMES
        )
        pages = self._pages()
        page = f" {self.page + 1}/{len(pages)}" if len(pages) > 1 else ""
        groups = " ".join(
            f"[reverse] {name}{page} [/]" if name == self.group else f" {name} "
            for name in GROUP_NAMES
        )
        self.query_one("#trend-bar", Static).update(
            f"[b]Window[/] (w){windows}  [b]Plots[/] (g){groups}  [dim]x: h since inoculation[/]"
        )

    # ---- trends ------------------------------------------------------------------------

    def _request(self) -> TrendRequest | None:
        if self.history is None:
            return None
        widgets = self._visible_plots()
        if not widgets or any(w.size.width <= 0 or w.size.height <= 0 for w in widgets):
            return None
        return TrendRequest(
            reactor=self.reactor,
            window=self.window,
            plots=self._pages()[self.page],
            sizes=tuple((w.size.width, w.size.height) for w in widgets),
            version=self.history.version(self.reactor),
        )

    def _shown(self) -> bool:
        """On top, or just below a modal dialog (``is_current`` also counts any screen under
        an opaque one)."""
        stack = self.app.screen_stack
        if not stack:
            return False
        top = stack[-1]
        return top is self or (top.is_modal and len(stack) > 1 and stack[-2] is self)

    def _redraw_trends(self) -> None:
        """On the redraw clock: start a render when shown, and the data or view changed."""
        if not self._shown() or (self.has_class("-narrow") and self.has_class("-values")):
            return
        if self._refit():
            self._view_changed()  # fewer or more plots fit than guessed: lay out, then draw
            return
        request = self._request()
        if request is None or request == self._drawn or request == self._wanted:
            return
        if (
            request.window in LONG_WINDOWS
            and request.same_view(self._drawn)
            and time.monotonic() - self._drawn_at < REDRAW_LONG_WINDOW_S
        ):
            return
        if self._rendering:
            return  # the render in flight finishes first; the next tick takes the newest
        self._wanted = request
        self._rendering = True
        assert self.history is not None
        self._draw_in_worker(self.history, request)

    @work(thread=True, exclusive=True, group="trend-render", exit_on_error=False)
    def _draw_in_worker(self, history: History, request: TrendRequest) -> None:
        try:
            self.post_message(render_trends(history, request))
        finally:
            self._rendering = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # A render that ended any way (even cancelled before it ran) frees the next one.
        if event.worker.group == "trend-render" and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self._rendering = False

    def on_trends_rendered(self, message: TrendsRendered) -> None:
        self._wanted = None
        request = message.request
        current = self._request()
        if current is None or not request.same_view(current):
            self.call_after_refresh(self._redraw_trends)  # the view moved on meanwhile
            return
        with self.app.batch_update():
            for widget, plot, figure in zip(
                self._visible_plots(), request.plots, message.figures, strict=True
            ):
                widget.show(plot, figure, trace_points(message.window, plot))
        self._drawn = request
        self._drawn_at = time.monotonic()
        self.trend_window = message.window

    # ---- text panels -------------------------------------------------------------------

    def _set_cell(
        self, table: DataTable, row: str, column: str, text: str, style: str = ""
    ) -> None:
        """Update one cell of the reactor overview only when its text changed: every DataTable
        update re-renders all visible cells, so unchanged values must not cost a repaint."""
        key = (table.id or "", row, column)
        if self._cells.get(key) == (text, style):
            return
        self._cells[key] = (text, style)
        table.update_cell(row, column, f"[{style}]{text}[/]" if style else text)

    def _show_values(self, snapshot: LiveSnapshot) -> None:
        table = self.query_one("#current-values", ValueTable)
        now = self._clock()
        seen: set[str] = set()
        for reading in snapshot.for_reactor(self.reactor):
            entry = CHANNELS_BY_NAME.get(reading.channel)
            if entry is None:
                continue
            if entry.name not in self._value_rows:
                table.add_row(entry.name, (entry.label, "—", entry.unit, "—", "—"))
                self._value_rows.add(entry.name)
            seen.add(reading.channel)
            value = human_number(reading.value)  # 3 470 g, never 3.47e+03
            age_s = max(0.0, now - reading.timestamp)
            age = f"{age_s:.0f} s" if age_s < 3600 else f"{age_s / 3600:.1f} h"
            quality = reading.quality.value
            table.set_cell(reading.channel, "value", value)
            table.set_cell(reading.channel, "unit", reading.unit)
            table.set_cell(
                reading.channel, "quality", quality, "" if quality == "good" else "yellow"
            )
            table.set_cell(reading.channel, "age", age, "yellow" if age_s > STALE_AFTER_S else "")
        for channel in CHANNELS:  # switching reactors must not leave the other one's values
            if channel.name not in seen and channel.name in self._value_rows:
                for column in ("value", "quality", "age"):
                    table.set_cell(channel.name, column, "—")

    def _show_strip(self) -> None:
        if not self._composed:
            return  # the App may name the operator before the screen is up; on_mount shows it
        snapshot = self._last_snapshot
        lines = [status_line(snapshot, self.reactor, self.batches.get(self.reactor), self.operator)]
        if self.access:
            lines[0] += f" · [b]{escape(self.access)}[/]"
        links = links_line(snapshot) if snapshot is not None else ""
        # A start-up warning is often also a standing problem of the snapshot: say it once.
        problems = dict.fromkeys([self._problem] if self._problem else []) | dict.fromkeys(
            snapshot.problems if snapshot is not None else ()
        )
        lines.append(
            f"{self._status}{' · ' + links if links else ''}"
            + "".join(f" · [red]{escape(problem)}[/]" for problem in problems)
        )
        self.query_one("#status-strip", Static).update("\n".join(lines))

    def _show_alarms(self, snapshot: LiveSnapshot) -> None:
        self.query_one(AlarmBanner).show_alarms(snapshot.alarms)
        line = self.query_one("#alarm-line", Static)
        alarms = snapshot.alarms_for(self.reactor)
        line.display = bool(alarms)
        if alarms:
            newest = alarms[0]
            more = f" (+{len(alarms) - 1} more, a: alarms)" if len(alarms) > 1 else ""
            line.update(
                f"[b]⚠ {newest.priority.value.upper()}[/] {escape(newest.message)}"
                f" · {newest.state.value.replace('_', ' ')}{more}"
            )

    def _show_overview(self, snapshot: LiveSnapshot) -> None:
        if len(self.reactors) < 2:
            return
        table = self.query_one("#reactors", DataTable)
        for reactor in self.reactors:
            state = snapshot.states.get(reactor)
            prediction = snapshot.predictions.get(reactor)
            do = snapshot.latest.get((reactor, "do"))
            alarms = snapshot.alarms_for(reactor)
            marker = "▶ " if reactor == self.reactor else "  "
            cells = {
                "reactor": f"{marker}{reactor}",
                "phase": state.phase if state else "—",
                "elapsed": f"{state.time_since_inoculation_h:.1f} h" if state else "—",
                "od600": f"{prediction.od600:.2f}" if prediction is not None else "—",
                "do": _number(do.value, 1) if do is not None else "—",
                "alarms": str(len(alarms)),
            }
            drifted = prediction is not None and bool(prediction.drift)
            for column, text in cells.items():
                style = "red" if column == "alarms" and alarms else ""
                if column == "od600" and drifted:  # the model line of that reactor says why
                    style = MODEL_STATE_STYLES[MODEL_DRIFT]
                self._set_cell(table, reactor, column, text, style)


def _number(value: float, digits: int = 2) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _clock_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%H:%M")


def status_line(
    snapshot: LiveSnapshot | None, reactor: str, batch: int | None, operator: str
) -> str:
    """Batch, phase, elapsed, predicted depletion, model and operator of one reactor."""
    parts = [f"[b]{escape(reactor)}[/] batch {batch if batch is not None else '—'}"]
    state = snapshot.states.get(reactor) if snapshot is not None else None
    prediction = snapshot.predictions.get(reactor) if snapshot is not None else None
    if state is not None:
        parts.append(f"phase {state.phase}")
        parts.append(f"{state.time_since_inoculation_h:.1f} h elapsed")
        if state.depleted and math.isfinite(state.depletion_time):
            parts.append(f"[b]depleted[/] at {_clock_time(state.depletion_time)}")
    else:
        parts.append("phase —")
    forecast = prediction.depletion_forecast if prediction is not None else math.nan
    if prediction is not None and math.isfinite(forecast) and not (state and state.depleted):
        if prediction.forecast is not None and prediction.forecast.provisional:
            # Early on the off-gas growth rate is noise: no time to plan the night on.
            parts.append("depletion: forecast once growth is measurable")
        else:
            left_h = (forecast - prediction.timestamp) / 3600.0
            parts.append(f"depletion ≈ {_clock_time(forecast)} (in {left_h:.1f} h)")
    model = (prediction.model_version if prediction is not None else "") or (
        snapshot.model_version if snapshot is not None else ""
    )
    parts.append(f"model {escape(model) if model else '—'}")
    parts.append(f"operator {escape(operator) if operator else '—'}")
    return " · ".join(parts)


def links_line(snapshot: LiveSnapshot) -> str:
    """Link state of bus, stores and notebook, with what waits in each spool."""
    parts = []
    for link in snapshot.links:
        mark = "[green]●[/]" if link.up else "[b red]●[/]"
        waiting = f" spool {link.waiting}" if link.waiting else ""
        detail = f" {escape(link.detail)}" if link.detail and not link.up else ""
        parts.append(f"{mark} {escape(link.name)}{waiting}{detail}")
    return "  ".join(parts)


# How the model line is coloured by what the nowcast rests on (as trained: plain).
MODEL_STATE_STYLES = {MODEL_DRIFT: "b yellow", MODEL_FALLBACK: "yellow", MODEL_ADAPTED: "green"}


def prediction_reasons(prediction: Prediction) -> list[str]:
    """What the nowcast rests on (adapted, drift) and its three largest contributions."""
    text, state = model_state(prediction.samples_used, prediction.drift, prediction.fallback)
    style = MODEL_STATE_STYLES.get(state, "")
    shown = f"[{style}]{escape(text)}[/]" if style else escape(text)
    lines = [f"[b]Model[/] {shown}"]
    why = attributions_line(prediction.attributions)
    if why:
        lines.append(f"[b]Why[/] {escape(why)}")
    return lines


def process_text(snapshot: LiveSnapshot, reactor: str) -> str:
    """The process panel: prediction, off-gas rates, phase, alarms and control advice."""
    lines = []
    prediction = snapshot.predictions.get(reactor)
    if prediction is not None:
        lines.append(
            f"[b]OD600 predicted[/] {prediction.od600:.2f} "
            f"({prediction.lower:.2f}–{prediction.upper:.2f}) · model {prediction.model_version}"
        )
        lines.extend(prediction_reasons(prediction))
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
