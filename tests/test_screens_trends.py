"""The drawn trend figures (screens/trends.render_plot): a gap in the readings stays a gap, the
y axis carries round, evenly spaced ticks, the OD600 plot one predicted line and one forecast."""

from __future__ import annotations

import itertools
import re
from types import MappingProxyType

import numpy as np

from bptwin.screens.trends import DO_PLOT, OD600_PLOT, render_plot
from bptwin.twin.history import Band, HistoryWindow, Trace

BRAILLE = re.compile("[\u2801-\u28ff]")


def do_window(times: np.ndarray, values: np.ndarray) -> HistoryWindow:
    trace = Trace("do", "%sat", times, values, len(times))
    return HistoryWindow(
        "R1", "1 h", 0.0, 3600.0, 0.0, 1, 200, traces=MappingProxyType({"do": trace})
    )


def plot_rows(text: str) -> list[str]:
    """The rows between the frame's top and bottom lines."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if "┌" in line)
    bottom = next(i for i, line in enumerate(lines) if "└" in line)
    return lines[top + 1 : bottom]


def drawn_columns(rows: list[str]) -> list[int]:
    return sorted({m.start() for row in rows for m in BRAILLE.finditer(row)})


def y_ticks(rows: list[str]) -> list[tuple[int, float]]:
    """(row, value) of the left axis labels."""
    found = []
    for index, row in enumerate(rows):
        match = re.match(r"\s*(-?[\d.]+)┤", row)
        if match:
            found.append((index, float(match.group(1))))
    return found


def test_a_gap_in_the_readings_is_drawn_as_a_gap() -> None:
    times = np.arange(0.0, 3600.0, 10.0)
    times = times[(times < 1200.0) | (times >= 2400.0)]  # 20 min without a reading
    values = np.where(times < 1200.0, 40.0, 60.0)
    text, points = render_plot(DO_PLOT, do_window(times, values), 80, 16)
    assert points == len(times)
    columns = drawn_columns(plot_rows(text.plain)[1:])  # below the legend row
    holes = np.diff(columns)
    # A third of the hour is empty: a run of about 25 of the ~76 plot columns, not a ramp.
    assert holes.max() >= 20


def test_y_ticks_are_round_and_evenly_spaced() -> None:
    times = np.arange(0.0, 3600.0, 10.0)
    values = 41.3 + 17.9 * times / 3600.0
    text, _ = render_plot(DO_PLOT, do_window(times, values), 80, 16)
    ticks = y_ticks(plot_rows(text.plain))
    labels = [value for _, value in ticks]
    assert labels == sorted(labels, reverse=True) and len(labels) >= 3
    steps = {round(a - b, 9) for a, b in itertools.pairwise(labels)}
    rows = {b - a for (a, _), (b, _) in itertools.pairwise(ticks)}
    # The same value step; rows apart as evenly as whole rows allow.
    assert len(steps) == 1 and max(rows) - min(rows) <= 1
    assert steps.pop() in (5.0, 10.0)
    assert labels[-1] <= 41.3 and labels[0] >= 59.2


def test_od600_draws_one_predicted_line_and_the_forecast_after_it() -> None:
    nowcast_times = np.arange(0.0, 3600.0, 30.0)
    center = 5.0 * np.exp(0.25 * nowcast_times / 3600.0)
    forecast_times = np.arange(3540.0, 4800.0, 60.0)
    forecast = 5.0 * np.exp(0.25 * forecast_times / 3600.0)
    window = HistoryWindow(
        "R1",
        "1 h",
        0.0,
        3600.0,
        0.0,
        1,
        200,
        predicted=Band(nowcast_times, center, center * 0.9, center * 1.1),
        forecast=Band(forecast_times, forecast, forecast * 0.9, forecast * 1.1),
    )
    text, _ = render_plot(OD600_PLOT, window, 80, 16)
    plain = text.plain
    assert "predicted" in plain and "forecast" in plain
    # The band of the newest nowcast is in the title, not drawn as two more lines.
    assert f"now {center[-1]:.3g} ({center[-1] * 0.9:.3g}–{center[-1] * 1.1:.3g})" in plain
    rows = plot_rows(plain)[2:]  # below the two legend rows
    # One line: each plot column holds the line in at most two neighbouring rows.
    for column in drawn_columns(rows):
        hit = [i for i, row in enumerate(rows) if column < len(row) and BRAILLE.match(row[column])]
        assert max(hit) - min(hit) <= 1, column
