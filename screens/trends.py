"""Trend plots of the dashboard: which channels are drawn together, and how a figure is made.

Figures are drawn with textual-plotext's ``Plot`` (plotext), but never on the UI thread: plotext
rebuilds the whole figure on every build (tens of ms for a few hundred points), so
``render_trends`` runs in the dashboard's render worker on an immutable ``HistoryWindow`` and
hands back finished ``rich.text.Text``; ``TrendPlot`` only shows that text. plotext itself is
imported on first use in that worker, which keeps it (~0.5 s) out of the first frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.twin.trend_series import (
    PREDICTION_PERIOD_S,
    SeriesRun,
    gap_threshold_s,
    nice_ticks,
    od600_lines,
    split_at_gaps,
    tick_labels,
    value_range,
)

if TYPE_CHECKING:
    from bptwin.twin.history import History, HistoryWindow

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]

# Distinct on dark and light backgrounds; the first three are the most used.
PALETTE: tuple[RGB, ...] = (
    (66, 160, 245),  # blue
    (240, 130, 40),  # orange
    (60, 185, 100),  # green
    (220, 70, 170),  # magenta
    (150, 120, 230),  # violet
    (200, 170, 30),  # ochre
)
BAND_COLOR: RGB = (130, 130, 150)
FORECAST_COLOR: RGB = (200, 170, 30)
SAMPLE_COLOR: RGB = (230, 60, 60)
NOW_COLOR: RGB = (120, 120, 120)

LABELS: Mapping[str, str] = MappingProxyType(
    {
        **{name: channel.label for name, channel in CHANNELS_BY_NAME.items()},
        "our": "OUR",
        "cer": "CER",
        "rq": "RQ",
        "mu": "μ",
        "kla": "kLa",
        "base_rate": "base rate",
        "cum_co2": "cum. CO₂",
        "do": "DO",
        "stirrer_speed": "stirrer",
        "o2_flow": "O₂ enrichment",
        "air_flow": "air",
        "offgas_co2": "CO₂",
        "offgas_o2": "O₂",
        "offgas_flow": "outlet",
        "temp_broth": "broth",
        "temp_exhaust": "exhaust",
        "temp_ph_probe": "pH probe",
        "temp_do_probe": "DO probe",
        "temp_motor": "motor",
        "stirrer_torque": "torque",
        "heater_output": "heater",
        "base_total": "base added",
    }
)


@dataclass(frozen=True, slots=True)
class PlotDef:
    """One plot: its title and the series on the left and right y axes.

    ``kind="od600"`` is the OD600 plot: predicted line and band, forecast and offline samples.
    """

    key: str
    title: str
    left: tuple[str, ...] = ()
    right: tuple[str, ...] = ()
    kind: str = "series"

    @property
    def names(self) -> tuple[str, ...]:
        return self.left + self.right


OD600_PLOT = PlotDef("od600", "OD600: predicted, forecast, ◆ samples", kind="od600")
RATES_PLOT = PlotDef("rates", "CER / OUR mmol/L/h · RQ (right)", ("cer", "our"), ("rq",))
DO_PLOT = PlotDef("do", "DO %sat · stirrer rpm (right)", ("do",), ("stirrer_speed",))
GAS_PLOT = PlotDef("gas", "Inlet air · O₂ enrichment L/min", ("air_flow", "o2_flow"))

# Every channel of the catalogue is in one group; groups are what the operator cycles through.
PLOT_GROUPS: Mapping[str, tuple[PlotDef, ...]] = MappingProxyType(
    {
        "process": (OD600_PLOT, RATES_PLOT, DO_PLOT, GAS_PLOT),
        "off-gas": (
            PlotDef(
                "offgas", "Off-gas CO₂ %v/v · O₂ %v/v (right)", ("offgas_co2",), ("offgas_o2",)
            ),
            PlotDef("flows", "Gas flows L/min", ("air_flow", "o2_flow", "offgas_flow")),
            PlotDef("pressure", "Reactor pressure bar g", ("pressure",)),
        ),
        "broth": (
            PlotDef("ph", "pH", ("ph",)),
            PlotDef("base", "Base added mL · rate mL/h (right)", ("base_total",), ("base_rate",)),
            PlotDef("od_probe", "In-situ OD probe AU", ("od_probe",)),
            PlotDef("weight", "Vessel weight g", ("vessel_weight",)),
        ),
        "temperatures": (
            PlotDef("temps", "Broth · exhaust °C", ("temp_broth", "temp_exhaust")),
            PlotDef("probes", "Probe temperatures °C", ("temp_ph_probe", "temp_do_probe")),
            PlotDef(
                "motor",
                "Motor °C · stirrer torque N·cm (right)",
                ("temp_motor",),
                ("stirrer_torque",),
            ),
            PlotDef("heater", "Heater output %", ("heater_output",)),
        ),
    }
)
GROUP_NAMES: tuple[str, ...] = tuple(PLOT_GROUPS)
MAX_PLOTS = max(len(plots) for plots in PLOT_GROUPS.values())


@dataclass(frozen=True, slots=True)
class TrendRequest:
    """What to draw: one reactor, window and set of plots at their sizes in cells."""

    reactor: str
    window: str
    plots: tuple[PlotDef, ...]
    sizes: tuple[tuple[int, int], ...]
    version: int = -1

    @property
    def points(self) -> int:
        """About twice the widest plot's width: one min and one max per column."""
        return max(16, 2 * max((width for width, _ in self.sizes), default=8))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for plot in self.plots for name in plot.names))

    def same_view(self, other: TrendRequest | None) -> bool:
        return other is not None and (other.reactor, other.window, other.plots, other.sizes) == (
            self.reactor,
            self.window,
            self.plots,
            self.sizes,
        )


class TrendsRendered(Message):
    """The render worker's finished figures for a request (immutable Text and the window)."""

    def __init__(
        self, request: TrendRequest, window: HistoryWindow, figures: tuple[Figure, ...]
    ) -> None:
        super().__init__()
        self.request = request
        self.window = window
        self.figures = figures


_local = threading.local()


def _plot_object() -> Any:  # textual_plotext's Plot, imported lazily
    """One plotext figure per thread (its state is per instance; plotext is imported here)."""
    plot = getattr(_local, "plot", None)
    if plot is None:
        from textual_plotext.plot import Plot

        plot = _local.plot = Plot()
    return plot


def _hours(times: np.ndarray, origin: float) -> list[float]:
    return ((times - origin) / 3600.0).tolist()


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y)
    return x[keep], y[keep]


def _message(text: str, width: int, height: int) -> Text:
    lines = [""] * max(0, height // 2) + [text.center(max(width, len(text)))]
    return Text("\n".join(lines), style="dim")


DERIVED_PERIOD_S = 30.0  # derived series (OUR, CER, ...) come once per 30 s window
X_TICK_CELLS = 12  # about one x tick per this many columns
Y_TICK_ROWS = 3  # and one y tick per this many rows


def _draw_segments(
    plt: Any,
    segments: Sequence[SeriesRun],
    origin: float,
    color: RGB,
    label: str | None,
    yside: str = "left",
) -> int:
    """One line per run between gaps, labelled once."""
    points = 0
    for index, (times, values) in enumerate(segments):
        plt.plot(
            _hours(times, origin),
            values.tolist(),
            marker="braille",
            color=color,
            yside=yside,
            label=label if index == 0 else None,
        )
        points += len(times)
    return points


def _set_ticks(plt: Any, ranges: dict[str, list[float]], height: int) -> None:
    """Round, evenly spaced y ticks on each side that holds data (the axis spans them)."""
    count = max(3, height // Y_TICK_ROWS)
    for side, values in ranges.items():
        if not values:
            continue
        low, high = min(values), max(values)
        pad = 0.04 * (high - low)  # a line on the frame's edge would hide in it
        ticks = nice_ticks(low - pad, high + pad, count)
        if len(ticks) >= 2:
            plt.ylim(ticks[0], ticks[-1], yside=side)
            plt.yticks(ticks, tick_labels(ticks), yside=side)


def _set_time_ticks(plt: Any, start: float, end: float, width: int) -> None:
    ticks = [
        t
        for t in nice_ticks(start, end, max(3, width // X_TICK_CELLS))
        if start - 1e-9 <= t <= end + 1e-9
    ]
    if len(ticks) >= 2:
        plt.xticks(ticks, tick_labels(ticks))


def render_plot(plot: PlotDef, window: HistoryWindow, width: int, height: int) -> tuple[Text, int]:
    """The figure of one plot at ``width`` × ``height`` cells and how many points it drew."""
    width, height = max(width, 10), max(height, 3)
    if window.empty:
        return _message("waiting for data…", width, height), 0
    plt = _plot_object()
    plt.clear_figure()
    plt.plotsize(width, height)
    plt._set_size(width, height)  # textual-plotext does the same: plotsize alone misses resizes
    plt.theme("clear")  # no colours of its own: the widget's background and text show through
    origin = window.origin
    span = window.end - window.start
    drawn = 0
    title = plot.title
    ranges: dict[str, list[float]] = {"left": [], "right": []}
    if plot.kind == "od600":
        predicted, forecast = window.predicted, window.forecast
        lines = od600_lines(
            None if predicted is None else predicted.times,
            None if predicted is None else predicted.center,
            None if predicted is None else predicted.lower,
            None if predicted is None else predicted.upper,
            None if forecast is None else forecast.times,
            None if forecast is None else forecast.center,
            max_gap_s=gap_threshold_s(PREDICTION_PERIOD_S, span, window.points // 2),
        )
        drawn += _draw_segments(plt, lines.predicted, origin, PALETTE[0], "predicted")
        if lines.forecast is not None:
            drawn += _draw_segments(plt, [lines.forecast], origin, FORECAST_COLOR, "forecast")
        for segment in (*lines.predicted, *((lines.forecast,) if lines.forecast else ())):
            found = value_range([segment])
            if found is not None:
                ranges["left"] += list(found)
        if lines.band_now is not None:
            low, center, high = lines.band_now
            title = f"{title} · now {center:.3g} ({low:.3g}–{high:.3g})"
        inside = (window.sample_times >= window.start) & (window.sample_times <= window.end)
        if inside.any():
            x, y = _finite(window.sample_times[inside], window.sample_od600[inside])
            plt.scatter(_hours(x, origin), y.tolist(), marker="◆", color=SAMPLE_COLOR)
            drawn += len(x)
            ranges["left"] += y.tolist()
    else:
        colors = iter(PALETTE)
        several = len(plot.names) > 1
        for side, names in (("left", plot.left), ("right", plot.right)):
            for name in names:
                color = next(colors)
                trace = window.trace(name)
                if trace is None:
                    continue
                channel = CHANNELS_BY_NAME.get(name)
                period = channel.period_s if channel is not None else DERIVED_PERIOD_S
                segments = split_at_gaps(
                    trace.times, trace.values, gap_threshold_s(period, span, window.points)
                )
                label = LABELS.get(name, name) if several else None
                drawn += _draw_segments(plt, segments, origin, color, label, yside=side)
                found = value_range(segments)
                if found is not None:
                    ranges[side] += list(found)
    if not drawn:
        return _message(f"{plot.title}: no data in this window", width, height), 0
    plt.title(title)
    _set_ticks(plt, ranges, height)
    now = (window.end - origin) / 3600.0
    end = now
    if plot.kind == "od600" and window.forecast is not None and len(window.forecast.times):
        end = max(end, (float(window.forecast.times[-1]) - origin) / 3600.0)
    start = (window.start - origin) / 3600.0
    if end > start:
        plt.xlim(start, end)
        _set_time_ticks(plt, start, end, width)
        if end > now:
            plt.vline(now, color=NOW_COLOR)
    return Text.from_ansi(plt.build()), drawn


@dataclass(frozen=True, slots=True)
class Figure:
    """A finished plot: its text (for tests and copying) and the lines ready to paint."""

    text: Text
    strips: tuple[Strip, ...]


def _console(width: int, height: int) -> Console:
    """A per-thread console that turns a figure into lines (truecolor, no terminal needed)."""
    console = getattr(_local, "console", None)
    if console is None:
        console = _local.console = Console(
            color_system="truecolor", force_terminal=True, legacy_windows=False
        )
    console.size = (width, height)
    return console


def to_figure(text: Text, width: int, height: int) -> Figure:
    """Cut a figure into exactly ``height`` lines of ``width`` cells, off the UI thread, so a
    repaint only copies them."""
    console = _console(width, height)
    options = console.options.update(width=width, height=height, no_wrap=True, overflow="crop")
    lines = console.render_lines(text, options, pad=True)
    return Figure(text, tuple(Strip(line, width) for line in lines[:height]))


def render_trends(history: History, request: TrendRequest) -> TrendsRendered:
    """Take the decimated window and draw every plot of the request (run in a worker thread)."""
    window = history.window(
        request.reactor, request.window, points=request.points, names=request.names
    )
    figures = []
    for plot, (width, height) in zip(request.plots, request.sizes, strict=True):
        try:
            text = render_plot(plot, window, width, height)[0]
        except Exception as exc:  # one plot that cannot be drawn must not blank the others
            log.exception("plot %s of %s could not be drawn", plot.key, request.reactor)
            text = _message(f"{plot.title}: could not draw ({exc})", width, height)
        figures.append(to_figure(text, width, height))
    return TrendsRendered(request, window, tuple(figures))


class TrendPlot(Widget):
    """Shows a figure rendered off the UI thread; a repaint only copies its prepared lines."""

    DEFAULT_CSS = """
    TrendPlot { height: 1fr; min-height: 5; }
    """

    class Resized(Message):
        """The plot got a new size (terminal resized, status lines grew): draw it again."""

    def on_resize(self) -> None:
        self.post_message(self.Resized())

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.plot: PlotDef | None = None
        self.figure: Text = Text("")
        self._strips: tuple[Strip, ...] = ()
        self._styled: dict[int, Strip] = {}
        self._style: Style | None = None
        self.points = 0  # points in the window this figure was drawn from (for tests and help)
        self.redraws = 0

    def show(self, plot: PlotDef, figure: Figure, points: int) -> None:
        self.plot = plot
        self.figure = figure.text
        self._strips = figure.strips
        self._styled = {}
        self._style = None
        self.points = points
        self.redraws += 1
        self.refresh()

    def clear(self, plot: PlotDef) -> None:
        self.plot = plot
        width, height = self.size.width, self.size.height
        self.figure = _message(f"{plot.title} · drawing…", width, height)
        self._strips = ()
        self._styled = {}
        self._style = None
        self.points = 0
        self.refresh()

    def notify_style_update(self) -> None:
        self._styled = {}  # a theme or class change: paint on the new background
        self._style = None
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        if self._style is None:
            self._style = self.rich_style  # costly to compute: once per figure, not per line
        if not self._strips:
            lines = self.figure.plain.splitlines()
            text = lines[y] if y < len(lines) else ""
            return Strip([Segment(text, self._style)], len(text))
        strip = self._styled.get(y)
        if strip is None:
            # The figure has no background of its own: paint it on the widget's.
            raw = self._strips[y] if y < len(self._strips) else Strip.blank(self.size.width)
            strip = self._styled[y] = raw.apply_style(self._style)
        return strip


def trace_points(window: HistoryWindow, plot: PlotDef) -> int:
    """How many (decimated) points a plot has in ``window``."""
    if plot.kind == "od600":
        count = 0 if window.predicted is None else len(window.predicted.times)
        return count + int(
            np.count_nonzero(
                (window.sample_times >= window.start) & (window.sample_times <= window.end)
            )
        )
    return sum(len(trace.times) for name in plot.names if (trace := window.trace(name)) is not None)


def visible_pages(plots: Sequence[PlotDef], fit: int) -> list[tuple[PlotDef, ...]]:
    """A group's plots cut into pages of ``fit`` (a short terminal shows them a page at a time)."""
    fit = max(1, fit)
    return [tuple(plots[i : i + fit]) for i in range(0, len(plots), fit)]
