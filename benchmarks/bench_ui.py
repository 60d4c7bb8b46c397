"""The control room's feel: first frame, dashboard redraw with a 30 h batch, key latency while
ingesting, resident memory after a 30 h batch (issue 5, items 7 and 8).

The redraw is measured as CPU time of the UI thread (``time.thread_time`` on the event loop's
thread), so the render worker and idle waits do not count; the worker's share is reported beside
it, and so is what drawing plotext on the UI thread would cost.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZE = (160, 45)


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout.strip().splitlines()[-1]


FIRST_FRAME_APP = """
    import time
    started = time.perf_counter()
    import asyncio, sys, tempfile
    from pathlib import Path
    from bptwin.tui.app import BptwinApp
    from bptwin.tui.settings import Settings

    async def main():
        settings = Settings()
        settings.station.data_dir = Path(tempfile.mkdtemp())
        app = BptwinApp(settings)
        async with app.run_test(size=(160, 45)) as pilot:
            first_frame = time.perf_counter() - started  # the dashboard is mounted and painted
            await pilot.pause()
            print(first_frame)
            await pilot.press("q")

    asyncio.run(main())
"""

FIRST_FRAME_FLOOR = """
    import time
    started = time.perf_counter()
    import asyncio
    from textual.app import App
    from textual.widgets import Footer, Header, Static

    class Bare(App):
        def compose(self):
            yield Header()
            yield Static("hello")
            yield Footer()

    async def main():
        async with Bare().run_test(size=(160, 45)) as pilot:
            print(time.perf_counter() - started)
            await pilot.pause()

    asyncio.run(main())
"""


def bench_first_frame() -> list[dict[str, object]]:
    """Import to first frame of ``bptwin`` on embedded defaults, beside a bare Textual app."""
    app = statistics.median(float(_python(FIRST_FRAME_APP)) for _ in range(3))
    floor = statistics.median(float(_python(FIRST_FRAME_FLOOR)) for _ in range(3))
    return [
        {
            "benchmark": "ui: bare Textual app, import to first frame (floor)",
            "value": floor * 1000,
            "unit": "ms",
            "note": "Header + Static + Footer under run_test, median of 3 fresh interpreters",
        },
        {
            "benchmark": "ui: bptwin, import to first frame",
            "value": app * 1000,
            "unit": "ms",
            "note": f"{app / floor:.2f}x the floor; embedded defaults, dashboard at 160x45",
        },
    ]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def _redraw(hours: float, repeats: int) -> list[dict[str, object]]:
    from bptwin.screens.dashboard import DashboardScreen
    from bptwin.screens.trends import render_plot, render_trends
    from bptwin.twin.history import History
    from tests.dashboard_batch import clock_at, fill_history, snapshot_at
    from tests.test_screens_dashboard import DashboardHarness, drawn

    rows: list[dict[str, object]] = []
    history = History(["R1"])
    fill_history(history, hours)
    snapshot = snapshot_at(hours)
    screen = DashboardScreen(["R1"], operator="ana", clock=lambda: clock_at(hours))
    app = DashboardHarness(lambda: screen)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen.show_snapshot(snapshot)
        screen.attach_history(history)
        await drawn(pilot, screen)
        for window_name in ("15 min", "batch"):
            before = screen.trend_window
            screen.select_window(window_name)
            await drawn(pilot, screen, before)
            request = screen._drawn
            assert request is not None
            ui, worker, decimation, plots_only, idle = [], [], [], [], []
            for repeat in range(repeats):
                # Every refresh brings new values (a second later), as in a live batch.
                snapshot = snapshot_at(hours - (repeat + 1) / 3600.0)
                started = time.perf_counter()
                history.window(request.reactor, request.window, request.points, request.names)
                decimation.append(time.perf_counter() - started)
                started = time.perf_counter()
                message = render_trends(history, request)
                worker.append(time.perf_counter() - started)
                cpu = time.thread_time()
                screen.show_snapshot(snapshot)
                screen.on_trends_rendered(message)
                await pilot.pause(0.05)  # lets the compositor paint the whole screen
                ui.append(time.thread_time() - cpu)
                again = render_trends(history, request)
                cpu = time.thread_time()
                screen.on_trends_rendered(again)
                await pilot.pause(0.05)
                plots_only.append(time.thread_time() - cpu)
                cpu = time.thread_time()
                await pilot.pause(0.05)  # the loop's own cost while nothing changes
                idle.append(time.thread_time() - cpu)
            raw = screen.trend_window.trace("do").raw_points  # type: ignore[union-attr]
            note = (
                f"{len(request.plots)} plots, {request.points} points max per trace "
                f"(DO: {raw} raw samples), median of {repeats}"
            )
            rows += [
                {
                    "benchmark": f"ui: dashboard full refresh, UI thread, {hours:.0f} h batch, "
                    f"{window_name} window",
                    "value": _ms(statistics.median(ui)),
                    "unit": "ms",
                    "note": f"{note}; of it plots alone {_ms(statistics.median(plots_only))} ms, "
                    f"idle loop {_ms(statistics.median(idle))} ms; goal 50 ms, limit 100 ms",
                },
                {
                    "benchmark": f"ui: dashboard render worker (decimate + plotext), {window_name}",
                    "value": _ms(statistics.median(worker)),
                    "unit": "ms",
                    "note": f"off the UI thread; decimation alone "
                    f"{_ms(statistics.median(decimation))} ms",
                },
                {
                    "benchmark": f"ui: same refresh, plotext on the UI thread, {window_name}",
                    "value": _ms(statistics.median(ui) + statistics.median(worker)),
                    "unit": "ms",
                    "note": "what textual-plotext's PlotextPlot.render would cost the UI thread",
                },
            ]
        # Why decimate: one plot of 6 h of raw DO and stirrer samples.
        window = history.window("R1", "6 h", points=10**7, names=("do", "stirrer_speed"))
        plot = screen._drawn.plots[2]  # type: ignore[union-attr]
        width, height = screen._drawn.sizes[2]  # type: ignore[union-attr]
        started = time.perf_counter()
        render_plot(plot, window, width, height)
        raw_s = time.perf_counter() - started
        rows.append(
            {
                "benchmark": "ui: one plotext plot, 6 h undecimated (DO + stirrer)",
                "value": _ms(raw_s),
                "unit": "ms",
                "note": f"{2 * window.trace('do').raw_points} points at {width}x{height}",  # type: ignore[union-attr]
            }
        )
    return rows


def bench_dashboard_redraw() -> list[dict[str, object]]:
    """Full dashboard refresh with a 30 h batch at 160x45."""
    return asyncio.run(_redraw(30.0, repeats=7))


async def _key_latency(presses: int, speed: float) -> list[dict[str, object]]:
    from textual import events
    from textual.widgets import Static

    from bptwin.tui.app import BptwinApp
    from bptwin.tui.settings import Settings

    settings = Settings()
    settings.station.data_dir = Path(tempfile.mkdtemp())
    settings.acquisition.source = "simulated"  # type: ignore[assignment]
    settings.acquisition.speed = speed  # 0: as fast as the station takes it
    settings.ui.refresh_s = 0.25
    app = BptwinApp(settings)
    keys, plots = [], []
    async with app.run_test(size=SIZE) as pilot:
        dashboard = app.dashboard
        for _ in range(300):
            await pilot.pause(0.1)
            if dashboard.trend_window is not None:
                break
        bar = dashboard.query_one("#trend-bar", Static)
        begun = time.perf_counter()
        for _ in range(presses):
            before_drawn, before_window = dashboard.trend_window, dashboard.window
            started = time.perf_counter()
            # As a terminal would: the key goes to the driver; no waiting for idle.
            event = events.Key("w", "w")
            event.set_sender(app)
            app._driver.send_message(event)  # type: ignore[union-attr]
            while dashboard.window == before_window or "[reverse] " + dashboard.window not in str(
                bar.content
            ):
                await asyncio.sleep(0.002)
            keys.append(time.perf_counter() - started)
            while dashboard.trend_window is before_drawn and time.perf_counter() - started < 10:
                await asyncio.sleep(0.002)
            plots.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - begun
        readings = app.station.latest.snapshot().readings_total if app.station else 0
        await pilot.press("q")
    keys.sort()
    plots.sort()
    pace = "full speed" if speed == 0 else f"{speed:g}x real time"
    note = f"simulator at {pace}, {readings / elapsed:,.0f} readings/s; {presses} presses of w"
    return [
        {
            "benchmark": f"ui: key press to screen while ingesting ({pace}), p50",
            "value": _ms(statistics.median(keys)),
            "unit": "ms",
            "note": f"{note}; p95 {_ms(keys[int(0.95 * (len(keys) - 1))])} ms",
        },
        {
            "benchmark": f"ui: key press to redrawn plots while ingesting ({pace}), p50",
            "value": _ms(statistics.median(plots)),
            "unit": "ms",
            "note": f"render worker; p95 {_ms(plots[int(0.95 * (len(plots) - 1))])} ms",
        },
    ]


def bench_key_latency_while_ingesting() -> list[dict[str, object]]:
    """Key to screen while acquisition runs: 60x real time (19 channels) and flat out."""
    return asyncio.run(_key_latency(15, 60.0)) + asyncio.run(_key_latency(15, 0.0))


async def _textual_plot_refresh(plots: int, series: int, points: int) -> tuple[float, int, int]:
    """UI-thread CPU of redrawing ``plots`` textual-plot widgets (clear, plot, paint)."""
    import numpy as np
    from textual.app import App, ComposeResult
    from textual_hires_canvas import HiResMode
    from textual_plot import PlotWidget

    class Plots(App[None]):
        CSS = "PlotWidget { height: 1fr; }"

        def compose(self) -> ComposeResult:
            for index in range(plots):
                yield PlotWidget(id=f"plot-{index}")

    rng = np.random.default_rng(1)
    x = np.linspace(0.0, 30.0, points)
    costs = []
    app = Plots()
    async with app.run_test(size=(100, 45)) as pilot:
        await pilot.pause()
        for _ in range(7):
            data = [rng.normal(0, 1, (series, points)) for _ in range(plots)]
            cpu = time.thread_time()
            for index, ys in enumerate(data):
                widget = app.query_one(f"#plot-{index}", PlotWidget)
                widget.clear()
                for y in ys:
                    widget.plot(x, y, hires_mode=HiResMode.BRAILLE, line_style="blue")
            await pilot.pause(0.05)
            costs.append(time.thread_time() - cpu)
        size = app.query_one("#plot-0").size
    return statistics.median(costs), size.width, size.height


def bench_plot_libraries() -> list[dict[str, object]]:
    """textual-plot (native widget, draws on the UI thread) beside plotext, same data and size.

    textual-plot is not a dependency: ``pip install textual-plot`` to include it.
    """
    import numpy as np
    from rich.text import Text
    from textual_plotext.plot import Plot

    plots, series, points = 4, 3, 196  # the process group of the dashboard at 160x45
    try:
        textual_plot_s, width, height = asyncio.run(_textual_plot_refresh(plots, series, points))
    except ImportError:
        textual_plot_s, width, height = float("nan"), 98, 10
    rng = np.random.default_rng(1)
    x = np.linspace(0.0, 30.0, points).tolist()
    costs = []
    figure = Plot()
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(plots):
            figure.clear_figure()
            figure.plotsize(width, height)
            figure._set_size(width, height)
            for _ in range(series):
                figure.plot(x, rng.normal(0, 1, points).tolist(), marker="braille")
            Text.from_ansi(figure.build())
        costs.append(time.perf_counter() - started)
    plotext_s = statistics.median(costs)
    note = f"{plots} plots x {series} series x {points} points at {width}x{height}"
    return [
        {
            "benchmark": "ui: plotext, build 4 plots (in bptwin: in the render worker)",
            "value": _ms(plotext_s),
            "unit": "ms",
            "note": note,
        },
        {
            "benchmark": "ui: textual-plot, redraw 4 plots on the UI thread",
            "value": _ms(textual_plot_s),
            "unit": "ms",
            "note": f"{note}; NaN: textual-plot not installed",
        },
    ]


def bench_history_ingest() -> list[dict[str, object]]:
    """Cost of the station's reading path into the trend history (runs on the bus thread)."""
    from bptwin.database.channels import CHANNELS
    from bptwin.database.reading import Reading
    from bptwin.twin.history import History

    history = History(["R1"])
    readings = [
        Reading(1_790_000_000.0 + i // len(CHANNELS), "R1", channel.name, 1.0, channel.unit)
        for i, channel in zip(range(200_000), itertools.cycle(CHANNELS), strict=False)
    ]
    started = time.perf_counter()
    for reading in readings:
        history.add_reading(reading)
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "ui: trend history, add_reading",
            "value": round(len(readings) / elapsed),
            "unit": "readings/s",
            "note": f"{elapsed / len(readings) * 1e6:.1f} µs per reading under the history lock",
        }
    ]


MEMORY = """
    import asyncio, sys
    sys.path.insert(0, ".")

    def rss_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    import bptwin.tui.app
    from bptwin.screens.dashboard import DashboardScreen
    from tests.dashboard_batch import clock_at, fill_history, snapshot_at
    from tests.test_screens_dashboard import DashboardHarness, drawn
    from bptwin.twin.history import History
    base = rss_mb()
    history = History(["R1"])  # what Station builds
    fill_history(history, 30.0)
    filled = rss_mb()

    async def main():
        screen = DashboardScreen(["R1"], clock=lambda: clock_at(30.0))
        app = DashboardHarness(lambda: screen)
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            screen.show_snapshot(snapshot_at(30.0))
            screen.attach_history(history)
            await drawn(pilot, screen)
            for _ in range(4):  # every window once
                before = screen.trend_window
                await pilot.press("w")
                await drawn(pilot, screen, before)
            print(base, filled, rss_mb())

    asyncio.run(main())
"""


def bench_memory_30h() -> list[dict[str, object]]:
    """Resident memory of the history of a 30 h batch and of the dashboard drawing it."""
    base, filled, drawn = (float(x) for x in _python(MEMORY).split())
    return [
        {
            "benchmark": "ui: resident memory, trend history of a 30 h batch (1 reactor)",
            "value": round(filled - base, 1),
            "unit": "MB",
            "note": "19 channels at 1 Hz, derived series and predictions per 30 s window",
        },
        {
            "benchmark": "ui: resident memory, app modules + 30 h history + dashboard drawn",
            "value": round(drawn, 1),
            "unit": "MB",
            "note": f"process RSS after drawing every window (imports alone {base:.0f} MB)",
        },
    ]
