"""The dashboard's trends, status strip, values and reactor overview (Textual Pilot).

Most tests use a pre-filled history of a deterministic batch (tests/dashboard_batch.py); the last
one runs the real App on embedded defaults with a fast simulated batch.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Static

import bptwin.tui as bptwin_tui
from bptwin.database.migrate import upgrade
from bptwin.database.reading import Reading
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.trends import DO_PLOT, PLOT_GROUPS, TrendPlot, render_plot, to_figure
from bptwin.screens.value_table import ValueTable
from bptwin.tui.app import BptwinApp
from bptwin.tui.settings import Settings
from bptwin.twin.alarm_rules import Priority
from bptwin.twin.history import History, HistoryWindow
from tests.dashboard_batch import T0, clock_at, fill_history, snapshot_at
from tests.screens_harness import (
    BATCH,
    INOCULATED_AT,
    OPERATOR,
    ScreenHarness,
    running_notebook,
)

HOURS = 12.0


class DashboardHarness(ScreenHarness):
    """The dashboard alone, styled by the App's stylesheet."""

    CSS_PATH = str(Path(bptwin_tui.__file__).parent / "app.tcss")


def dashboard_app(
    reactors: tuple[str, ...] = ("R1",), hours: dict[str, float] | None = None
) -> tuple[DashboardHarness, DashboardScreen, History]:
    history = History(reactors)
    for reactor in reactors:
        fill_history(history, (hours or {}).get(reactor, HOURS), reactor=reactor)
    screen = DashboardScreen(
        list(reactors), operator="ana", clock=lambda: clock_at(HOURS), show_clock=False
    )
    return DashboardHarness(lambda: screen), screen, history


async def drawn(pilot: Pilot, screen: DashboardScreen, before: HistoryWindow | None = None) -> None:
    """Wait until the render worker has swapped in figures of another window than ``before``
    (each render brings a new one)."""
    for _ in range(300):  # generous: a loaded CI machine draws slowly
        if screen.trend_window is not None and screen.trend_window is not before:
            break
        await pilot.pause(0.05)
    await pilot.pause()
    assert screen.trend_window is not before, "the plots were never drawn"


def shown_plots(screen: DashboardScreen) -> list[TrendPlot]:
    return [plot for plot in screen.query(TrendPlot) if plot.display]


async def start(pilot: Pilot, screen: DashboardScreen, history: History) -> None:
    await pilot.pause()
    screen.show_status(True)
    screen.show_snapshot(snapshot_at(HOURS, tuple(screen.reactors)))
    screen.attach_history(history)
    await settled(pilot, screen)


async def settled(pilot: Pilot, screen: DashboardScreen) -> None:
    """Drawn, and the layout settled (status lines that grow change the plots' height)."""
    await drawn(pilot, screen)
    for _ in range(200):
        if screen.trends_settled():
            break
        await pilot.pause(0.05)
    assert screen.trends_settled()


async def test_process_plots_status_strip_and_values() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        plots = shown_plots(screen)
        assert [plot.plot for plot in plots] == list(PLOT_GROUPS["process"])
        for plot in plots:
            assert plot.points > 0, plot.plot
            assert len(plot.figure.plain.splitlines()) == plot.size.height
        window = screen.trend_window
        assert window is not None and window.window == "1 h"
        # Decimated to about twice the plot width, from the raw 1 Hz samples of the hour.
        do = window.trace("do")
        assert do is not None and do.raw_points == 3601
        assert len(do.times) <= 2 * max(plot.size.width for plot in plots)
        assert window.predicted is not None and window.forecast is not None
        strip = str(screen.query_one("#status-strip", Static).content)
        for part in ("phase exponential", "12.0 h elapsed", "depletion ≈", "operator ana"):
            assert part in strip
        assert "model od600-2026.03-test" in strip and "spool 1234" in strip
        assert "InfluxDB not answering" in strip
        alarm_line = screen.query_one("#alarm-line", Static)
        assert alarm_line.display and "DO 18.5 %" in str(alarm_line.content)
        table = screen.query_one("#current-values", ValueTable)
        assert table.cell("ph", "value") == "4.98"
        # A vessel of about 2 760 g, in digit groups: never "2.76e+03".
        assert re.fullmatch(r"2\u00a07\d0", table.cell("vessel_weight", "value"))
        assert "uncertain" in str(table.cell("od_probe", "quality"))
        assert not screen.query_one("#reactors", DataTable).display  # one reactor: no overview


async def test_the_prediction_panel_says_adapted_and_why_then_drift_when_it_trips() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, screen, history)
        panel = screen.query_one("#process", Static)
        text = str(panel.content)
        assert "adapted to 3 samples" in text
        assert "OD probe ×12" in text and "CO₂ made −3.1 %" in text
        assert "drift" not in text and "od_probe_mean" not in text
        snapshot = snapshot_at(HOURS)
        reason = "a sample is 18 % off the model (limit 4 %)"
        drifted = replace(snapshot.predictions["R1"], drift=reason, samples_used=1)
        screen.show_snapshot(replace(snapshot, predictions=MappingProxyType({"R1": drifted})))
        await pilot.pause()
        text = str(panel.content)
        assert f"drift: {reason} – take a sample" in text
        assert "carbon balance until 2 samples" in text and "adapted to 3" not in text
        assert "[b yellow]drift:" in text  # coloured as a warning


async def test_a_critical_alarm_reaches_the_banner_mounted_after_the_first_frame() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot, screen, history)
        for _ in range(200):  # its module is imported beside the first frame, in a worker
            if screen.query("#alarm-banner"):
                break
            await pilot.pause(0.05)
        snapshot = snapshot_at(HOURS)
        critical = replace(snapshot.alarms[0], priority=Priority.CRITICAL)
        screen.show_snapshot(replace(snapshot, alarms=(critical,)))
        await pilot.pause()
        banner = screen.query_one("#alarm-banner", Static)
        assert banner.display and "CRITICAL R1" in str(banner.content)


async def test_time_window_switching_redraws_the_span() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        spans = {}
        for expected in ("6 h", "batch", "15 min", "1 h"):
            before = screen.trend_window
            await pilot.press("w")
            assert screen.window == expected
            await drawn(pilot, screen, before)
            window = screen.trend_window
            assert window is not None and window.window == expected
            spans[expected] = window.end - window.start
            do = window.trace("do")
            assert do is not None and 0 < len(do.times) <= window.points
        assert spans["15 min"] == 900 and spans["1 h"] == 3600 and spans["6 h"] == 6 * 3600
        assert spans["batch"] == pytest.approx(HOURS * 3600 - 1)  # from inoculation to now
        assert "[reverse] 1 h [/]" in str(screen.query_one("#trend-bar", Static).content)


async def test_plot_groups_cover_every_channel_and_cycle() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        for group in ("off-gas", "broth", "temperatures", "process"):
            before = screen.trend_window
            await pilot.press("g")
            assert screen.group == group
            await drawn(pilot, screen, before)
            shown = shown_plots(screen)
            assert [plot.plot for plot in shown] == list(PLOT_GROUPS[group])
            assert all(plot.points > 0 for plot in shown)


async def test_a_short_terminal_pages_through_a_group_and_toggles_values() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot, screen, history)
        assert screen.has_class("-narrow")
        assert not screen.query_one("#side").display
        first = [plot.plot for plot in shown_plots(screen)]
        assert 1 <= len(first) < len(PLOT_GROUPS["process"])
        before = screen.trend_window
        await pilot.press("g")  # the second page of the same group
        await drawn(pilot, screen, before)
        assert screen.group == "process" and screen.page == 1
        second = [plot.plot for plot in shown_plots(screen)]
        assert first + second == list(PLOT_GROUPS["process"])[: len(first) + len(second)]
        await pilot.press("t")
        await pilot.pause()
        assert screen.query_one("#side").display and not screen.query_one("#trends").display


async def test_reactor_overview_and_switching() -> None:
    app, screen, history = dashboard_app(("R1", "R2"), hours={"R2": 3.0})
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        overview = screen.query_one("#reactors", DataTable)
        assert overview.display and overview.row_count == 2
        assert str(overview.get_cell("R1", "reactor")).startswith("▶")
        assert screen.trend_window is not None and screen.trend_window.reactor == "R1"
        before = screen.trend_window
        await pilot.press("n")
        assert screen.reactor == "R2" and "reactor R2" in screen.sub_title
        await drawn(pilot, screen, before)
        window = screen.trend_window
        assert window is not None and window.reactor == "R2"
        assert window.end == pytest.approx(T0 + 3 * 3600 - 1)  # R2's own, shorter history
        assert str(overview.get_cell("R2", "reactor")).startswith("▶")
        # R2's readings, not R1's, fill the value table (the snapshot offsets R2 by 1 %)
        value = screen.query_one("#current-values", ValueTable).cell("ph", "value")
        assert value == "5.03"
        # R1's model drifts while R2 is shown: its OD600 cell in the overview turns yellow.
        snapshot = snapshot_at(HOURS, ("R1", "R2"))
        predictions = dict(snapshot.predictions)
        predictions["R1"] = replace(predictions["R1"], drift="a sample is 18 % off the model")
        assert "yellow" not in str(overview.get_cell("R1", "od600"))
        screen.show_snapshot(replace(snapshot, predictions=MappingProxyType(predictions)))
        await pilot.pause()
        assert "yellow" in str(overview.get_cell("R1", "od600"))
        assert "yellow" not in str(overview.get_cell("R2", "od600"))


async def test_plots_redraw_only_when_data_changed_and_visible() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        drawn_before = screen.trend_window
        screen._redraw_trends()  # the clock ticks, nothing changed
        await pilot.pause(0.3)
        assert screen.trend_window is drawn_before
        history.add_reading(Reading(T0 + HOURS * 3600, "R1", "do", 50.0, "%sat"))
        screen._redraw_trends()
        await drawn(pilot, screen, drawn_before)
        drawn_before = screen.trend_window
        await app.push_screen(Screen())
        history.add_reading(Reading(T0 + HOURS * 3600 + 1, "R1", "do", 51.0, "%sat"))
        screen._redraw_trends()  # hidden behind another screen: no drawing
        await pilot.pause(0.3)
        assert screen.trend_window is drawn_before


async def test_long_windows_redraw_new_data_less_often() -> None:
    app, screen, history = dashboard_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await start(pilot, screen, history)
        before = screen.trend_window
        screen.select_window("batch")  # a new view draws at once
        await drawn(pilot, screen, before)
        drawn_before = screen.trend_window
        assert math.isfinite(screen._drawn_at)  # set by the render
        screen._drawn_at = time.monotonic()  # however slowly this machine got here
        history.add_reading(Reading(T0 + HOURS * 3600, "R1", "do", 50.0, "%sat"))
        screen._redraw_trends()
        await pilot.pause(0.3)
        assert screen.trend_window is drawn_before  # a second of new data: not yet
        screen._drawn_at -= 10.0  # as if the long-window interval had passed
        screen._redraw_trends()
        await drawn(pilot, screen, drawn_before)


@pytest.mark.parametrize("case", ["constant", "single", "all-nan", "empty"])
def test_a_plot_draws_or_says_why_for_degenerate_data(case: str) -> None:
    history = History(["R1"], hours=1.0)
    values = {"constant": [50.0] * 100, "single": [50.0], "all-nan": [math.nan] * 10}
    for i, value in enumerate(values.get(case, [])):
        history.add_reading(Reading(T0 + i, "R1", "do", value, "%sat"))
    window = history.window("R1", "15 min", points=160)
    text, drawn_points = render_plot(DO_PLOT, window, 80, 10)
    figure = to_figure(text, 80, 10)
    assert len(figure.strips) == 10 and all(strip.cell_length == 80 for strip in figure.strips)
    expected = {"constant": 100, "single": 1, "all-nan": 0, "empty": 0}[case]
    assert drawn_points == expected
    if case == "all-nan":
        assert "no data in this window" in text.plain
    if case == "empty":
        assert "waiting for data" in text.plain


async def test_the_app_shows_batch_operator_and_the_batchs_samples(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    settings.station.operator = OPERATOR
    tmp_path.mkdir(exist_ok=True)
    upgrade(settings.notebook_url())
    notebook = running_notebook(settings.notebook_url())
    notebook.samples.add_sample(
        OPERATOR, BATCH, taken_at=INOCULATED_AT + timedelta(hours=2), od_raw=0.61, dilution=10.0
    )
    app = BptwinApp(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        dashboard = app.dashboard
        strip = dashboard.query_one("#status-strip", Static)
        window = None
        for _ in range(150):
            await pilot.pause(0.2)
            if app.station is not None and f"batch {BATCH}" in str(strip.content):
                window = app.station.history.window("R1", "batch")
                if len(window.sample_od600):
                    break
        assert f"batch {BATCH}" in str(strip.content)
        assert f"operator {OPERATOR}" in str(strip.content)
        assert f"batch {BATCH}" in dashboard.sub_title
        assert window is not None
        assert list(window.sample_od600) == pytest.approx([6.1])
        assert window.sample_times[0] == (INOCULATED_AT + timedelta(hours=2)).timestamp()
        await pilot.press("q")


def embedded_settings(data_dir: Path) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.source = "simulated"  # type: ignore[assignment]
    settings.acquisition.speed = 600.0
    settings.ui.refresh_s = 0.2
    return settings


@pytest.mark.slow
async def test_the_app_plots_a_fast_simulated_batch(tmp_path: Path) -> None:
    app = BptwinApp(embedded_settings(tmp_path))
    async with app.run_test(size=(160, 45)) as pilot:
        dashboard = app.dashboard
        table = dashboard.query_one("#current-values", ValueTable)
        first_do = None
        for _ in range(150):
            await pilot.pause(0.2)
            window = dashboard.trend_window
            trace = window.trace("do") if window is not None else None
            if trace is not None and len(trace.times) > 5:
                if first_do is None:
                    first_do = (trace.raw_points, table.cell("do", "value"))
                elif trace.raw_points > first_do[0]:
                    break
        assert first_do is not None, "the dashboard never plotted the simulated DO"
        assert dashboard.history is app.station.history  # type: ignore[union-attr]
        # New readings keep arriving: more samples in the window, and a value in the table.
        assert dashboard.trend_window.trace("do").raw_points > first_do[0]  # type: ignore[union-attr]
        assert table.cell("do", "value") != "—"
        do_plot = shown_plots(dashboard)[2]
        assert do_plot.plot is not None and do_plot.plot.key == "do" and do_plot.points > 0
        # The shadow's 30 s windows feed the derived series (CER/OUR/RQ plot).
        for _ in range(100):
            cer = dashboard.trend_window.trace("cer")  # type: ignore[union-attr]
            if cer is not None and cer.raw_points > 2:
                break
            await pilot.pause(0.2)
        assert cer is not None and cer.raw_points > 2
        await pilot.press("q")
