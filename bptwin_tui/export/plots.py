"""The report's figures as PNG bytes (matplotlib, Agg, no pyplot: safe in a worker thread).

Long series are min/max-decimated to a few thousand points per line before plotting: a 24 h
batch has 86 400 readings per channel, far more than a figure's pixels, and keeping each
bucket's extremes keeps spikes and dropouts visible.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.channels import CHANNELS_BY_NAME

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bptwin.tui.export.collect import BatchData

# Channel groups of the trend figures; every catalogue channel is in exactly one.
TREND_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "trend_culture",
        "Culture: pH, dissolved O₂, OD probe, pressure",
        ("ph", "do", "od_probe", "pressure"),
    ),
    (
        "trend_gas",
        "Off-gas and gas flows",
        ("offgas_co2", "offgas_o2", "air_flow", "o2_flow", "offgas_flow"),
    ),
    ("trend_agitation", "Stirrer and heater", ("stirrer_speed", "stirrer_torque", "heater_output")),
    (
        "trend_temperatures",
        "Temperatures",
        ("temp_broth", "temp_exhaust", "temp_motor", "temp_ph_probe", "temp_do_probe"),
    ),
    ("trend_base_weight", "Base added and vessel weight", ("base_total", "vessel_weight")),
)
DECIMATE_BUCKETS = 1500
DPI = 100
WIDTH_IN = 10.0


@dataclass(frozen=True)
class PlotImage:
    """One figure: a file-safe name, a title, the PNG and what it shows."""

    name: str
    title: str
    png: bytes
    caption: str


def decimate(
    x: np.ndarray, y: np.ndarray, buckets: int = DECIMATE_BUCKETS
) -> tuple[np.ndarray, np.ndarray]:
    """Each bucket's minimum and maximum, in time order; an all-empty bucket stays a gap."""
    count = len(x)
    if count <= 2 * buckets:
        return x, y
    size = -(-count // buckets)  # ceil: every bucket the same length, the last padded
    padded = np.full(size * buckets, np.nan)
    padded[:count] = y
    rows = padded.reshape(buckets, size)
    empty = ~np.isfinite(rows).any(axis=1)
    filled_low = np.where(np.isfinite(rows), rows, np.inf)
    filled_high = np.where(np.isfinite(rows), rows, -np.inf)
    base = np.arange(buckets) * size
    i_min = np.minimum(base + filled_low.argmin(axis=1), count - 1)
    i_max = np.minimum(base + filled_high.argmax(axis=1), count - 1)
    first, second = np.minimum(i_min, i_max), np.maximum(i_min, i_max)
    index = np.column_stack([first, second]).ravel()
    xs = x[index]
    ys = y[index].astype(float)
    ys[np.repeat(empty, 2)] = np.nan
    return xs, ys


def _figure(rows: int, height_per_row: float = 1.7) -> Figure:
    from matplotlib.figure import Figure

    height = 0.9 + height_per_row * rows
    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    # Fixed margins: constrained layout costs more than drawing the lines themselves.
    figure.subplots_adjust(
        left=0.09, right=0.985, top=1 - 0.55 / height, bottom=0.5 / height, hspace=0.45
    )
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": "bptwin"})
    return buffer.getvalue()


def _hours(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype=float) / 3600.0


def _style(axes: Axes, label: str) -> None:
    axes.set_ylabel(label, fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(True, linewidth=0.3, alpha=0.6)


def trend_figures(data: BatchData) -> list[PlotImage]:
    """One figure per channel group, a panel per channel present in the batch."""
    readings = data.series.readings
    hours = _hours(readings["time_s"].to_numpy())
    images = []
    for name, title, channels in TREND_GROUPS:
        present = [c for c in channels if c in readings.columns]
        if not present:
            continue
        figure = _figure(len(present))
        axes_list = figure.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
        for axes, channel in zip(axes_list, present, strict=True):
            values = readings[channel].to_numpy(dtype=float)
            if CHANNELS_BY_NAME[channel].period_s > 1:
                keep = np.isfinite(values)  # slower cadence: the empty seconds are not gaps
                x, y = decimate(hours[keep], values[keep])
            else:
                x, y = decimate(hours, values)
            axes.plot(x, y, linewidth=0.7, color="#1f5fa8")
            entry = CHANNELS_BY_NAME[channel]
            _style(axes, f"{channel}\n[{data.series.units.get(channel, entry.unit)}]")
            missing = data.series.dropout_pct.get(channel, 0.0)
            axes.set_title(f"{entry.label} · missing {missing:.2f} %", fontsize=8, loc="left")
        axes_list[-1].set_xlabel("hours since inoculation", fontsize=8)
        figure.suptitle(title, fontsize=10)
        images.append(PlotImage(name, title, _png(figure), f"{', '.join(present)} over the batch"))
    return images


def od600_figure(data: BatchData) -> PlotImage:
    """Predicted OD600 with its band, the offline samples as points."""
    figure = _figure(1, 3.4)
    axes = figure.subplots()
    predictions = data.series.predictions
    plotted = False
    if len(predictions):
        hours = _hours(predictions["time_s"].to_numpy())
        lower = predictions["od600_pred_lower"].to_numpy(dtype=float)
        upper = predictions["od600_pred_upper"].to_numpy(dtype=float)
        axes.fill_between(hours, lower, upper, color="#8fb3e0", alpha=0.45, label="prediction band")
        axes.plot(
            hours,
            predictions["od600_pred"].to_numpy(dtype=float),
            color="#1f5fa8",
            linewidth=1.0,
            label="predicted OD600",
        )
        plotted = True
    # Dry-weight-only samples have no OD600 to plot here.
    measured = [
        (s.taken_at.timestamp(), s.od600) for s in data.notebook.samples if s.od600 is not None
    ]
    if measured:
        start = data.series.start
        axes.plot(
            [(at - start) / 3600.0 for at, _ in measured],
            [od for _, od in measured],
            "o",
            color="#c0392b",
            markersize=5,
            label="measured OD600 (samples)",
        )
        plotted = True
    forecast = _last_finite(predictions, "depletion_forecast") if len(predictions) else None
    if forecast is not None:
        at = (forecast - data.series.start) / 3600.0
        if 0 <= at <= 2 * max(1.0, data.series.duration_s / 3600.0):
            axes.axvline(
                at,
                color="#7d3c98",
                linestyle="--",
                linewidth=0.8,
                label=f"last depletion forecast ({at:.1f} h)",
            )
    if not plotted:
        axes.text(
            0.5, 0.5, "no predictions and no samples stored", ha="center", transform=axes.transAxes
        )
    _style(axes, "OD600")
    axes.set_xlabel("hours since inoculation", fontsize=8)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="upper left")
    figure.suptitle("Measured vs predicted OD600", fontsize=10)
    return PlotImage(
        "od600",
        "Measured vs predicted OD600",
        _png(figure),
        "model nowcast per 30 s window with its band; red points: offline samples",
    )


def offgas_figure(data: BatchData) -> PlotImage:
    """CER and OUR (mmol/L/h) and RQ from the derived series."""
    windows = data.series.windows
    figure = _figure(2, 2.0)
    top, bottom = figure.subplots(2, 1, sharex=True)
    if "time_s" in windows.columns and len(windows):
        hours = _hours(windows["time_s"].to_numpy() + 30.0)  # derived values: window end
        for name, color in (("our", "#1f5fa8"), ("cer", "#c0392b")):
            if name in windows.columns:
                top.plot(
                    hours,
                    windows[name].to_numpy(dtype=float),
                    linewidth=0.8,
                    color=color,
                    label=name.upper(),
                )
        if "rq" in windows.columns:
            bottom.plot(
                hours,
                windows["rq"].to_numpy(dtype=float),
                linewidth=0.8,
                color="#27ae60",
                label="RQ",
            )
    _style(top, "mmol/L/h")
    _style(bottom, "RQ")
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=7, loc="upper left")
    else:
        top.text(0.5, 0.5, "no derived off-gas series stored", ha="center", transform=top.transAxes)
    bottom.set_xlabel("hours since inoculation", fontsize=8)
    figure.suptitle("Off-gas balances: OUR, CER and RQ", fontsize=10)
    return PlotImage(
        "offgas_rates",
        "OUR, CER and RQ",
        _png(figure),
        "O₂ uptake and CO₂ evolution rates and their ratio, per 30 s window",
    )


def _last_finite(table: pd.DataFrame, column: str) -> float | None:
    values = table[column].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    value = float(finite[-1])
    return value if math.isfinite(value) else None


def all_figures(data: BatchData) -> list[PlotImage]:
    return [*trend_figures(data), od600_figure(data), offgas_figure(data)]
