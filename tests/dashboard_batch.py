"""A deterministic stand-in for a glycerol batch, for the dashboard tests and the UI benchmark.

Smooth textbook curves (exponential growth to depletion at 20 h, DO falling and held by the
stirrer cascade, off-gas following OUR/CER) plus seeded noise: cheap to make for a whole 30 h
batch at 1 Hz, and the same every run, so snapshots are stable.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np

from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Quality, Reading
from bptwin.twin.alarms import AlarmState, AlarmView, Priority
from bptwin.twin.forecast import Forecast
from bptwin.twin.history import History
from bptwin.twin.live import LinkState, LiveSnapshot
from bptwin.twin.predictor import Prediction
from tests.control_states import make_state

T0 = 1_790_000_000.0  # inoculation
DEPLETION_H = 20.0
MODEL = "od600-2026.03-test"


def _curves(hours: np.ndarray) -> dict[str, np.ndarray]:
    """Every channel plus the derived series as functions of hours since inoculation."""
    growing = np.minimum(hours, DEPLETION_H)
    od = 4.0 * np.exp(0.17 * growing)  # about 120 at depletion: a high-density Pichia batch
    after = hours > DEPLETION_H
    rate = 1.4 * od  # OUR, mmol/L/h: about 170 at depletion (docs/process.md: 140-175)
    rate = np.where(after, rate * np.exp(-(hours - DEPLETION_H) * 6), rate)
    do = np.clip(100 - rate * 0.6, 25, 100)
    do = np.where(after, np.minimum(100, 30 + (hours - DEPLETION_H) * 200), do)
    stirrer = np.clip(500 + np.maximum(0, rate * 0.6 - 75) * 8, 500, 1000)
    stirrer = np.where(after, 1000.0, np.round(stirrer / 50) * 50)
    o2 = np.where((stirrer >= 1000) & ~after, 0.05, 0.0)
    return {
        "ph": 5.0 + 0.02 * np.sin(hours * 3),
        "do": do,
        "od_probe": od / 40.0,
        "pressure": np.full_like(hours, 0.2),
        "offgas_co2": 0.04 + rate * 0.018,
        "offgas_o2": 20.95 - rate * 0.026,
        "air_flow": np.full_like(hours, 1.0),
        "o2_flow": o2,
        "offgas_flow": 1.0 + o2,
        "stirrer_speed": stirrer,
        "stirrer_torque": stirrer / 60.0,
        "temp_broth": 30.0 + 0.05 * np.sin(hours * 5),
        "temp_exhaust": 28.0 + 0.1 * np.sin(hours),
        "temp_motor": 35.0 + stirrer / 100,
        "temp_ph_probe": np.full_like(hours, 30.1),
        "temp_do_probe": np.full_like(hours, 29.9),
        "heater_output": np.clip(40 - rate / 5, 0, 100),
        "base_total": 30.0 * (1 - np.exp(-growing / 12)),
        "vessel_weight": 2800 - hours * 3,
        "our": rate,
        "cer": rate * 0.68,
        "rq": np.full_like(hours, 0.68),
        "mu": np.where(after, 0.0, 0.17),
        "kla": np.full_like(hours, 250.0),
        "base_rate": np.where(after, 0.0, 2.5 * np.exp(-growing / 12)),
        "cum_co2": np.cumsum(rate * 0.68) / 120.0,
        "od600": od,
    }


def fill_history(history: History, hours: float, reactor: str = "R1", seed: int = 1) -> None:
    """``hours`` of 1 Hz readings of every channel, 30 s derived series, predictions, samples."""
    rng = np.random.default_rng(seed)
    seconds = T0 + np.arange(0.0, hours * 3600.0)
    curves = _curves((seconds - T0) / 3600.0)
    for channel in CHANNELS:
        if channel.name not in curves:  # e.g. the feed of a fed-batch: this batch has none
            continue
        times = seconds[:: int(channel.period_s)]
        values = curves[channel.name][:: int(channel.period_s)]
        noise = rng.normal(0, 0.002 * (abs(float(np.mean(values))) + 1), len(values))
        history.extend(reactor, channel.name, times, values + noise)
    windows = seconds[29::30]
    window_curves = _curves((windows - T0) / 3600.0)
    for name in ("our", "cer", "rq", "mu", "kla", "base_rate", "cum_co2"):
        history.extend(reactor, name, windows, window_curves[name])
    od = window_curves["od600"] * (1 + rng.normal(0, 0.01, len(windows)))
    for index, (end, value) in enumerate(zip(windows, od, strict=True)):
        history.add_prediction(
            Prediction(float(end), float(value), value * 0.93, value * 1.07, MODEL, reactor, index)
        )
    history.add_prediction(prediction_at(float(windows[-1]), reactor))
    for hour in (0, 2, 4, 6, 8, 12, 16):
        if hour <= hours:
            taken = T0 + hour * 3600.0
            history.add_sample(reactor, taken, float(_curves(np.array([hour]))["od600"][0]) * 1.03)


def prediction_at(end: float, reactor: str = "R1") -> Prediction:
    """The prediction of the window ending at ``end`` with a forecast to depletion."""
    hours_now = (end - T0) / 3600.0
    od_now = float(_curves(np.array([hours_now]))["od600"][0])
    grid = np.arange(end, T0 + (DEPLETION_H + 2) * 3600.0, 600.0)
    if len(grid) < 2:
        grid = np.array([end, end + 600.0])
    future = _curves((grid - T0) / 3600.0)["od600"]
    spread = 0.05 + 0.01 * (grid - end) / 3600.0
    forecast = Forecast(
        made_at=end,
        times=grid,
        od600=future,
        lower=future * (1 - spread),
        upper=future * (1 + spread),
        depletion_time=T0 + DEPLETION_H * 3600.0,
        depletion_earliest=T0 + (DEPLETION_H - 0.5) * 3600.0,
        depletion_latest=T0 + (DEPLETION_H + 0.5) * 3600.0,
        growth_rate=0.17,
    )
    # Adapted to the batch's samples so far, with the contributions the shipped model shows
    # (nearly all on the OD probe).
    return Prediction(
        end,
        od_now,
        od_now * 0.93,
        od_now * 1.07,
        MODEL,
        reactor,
        -1,
        forecast,
        model_od600=od_now * 1.02,
        samples_used=3,
        attributions=(
            ("od_probe_mean", 2.48),
            ("cum_co2_mmol_per_l", -0.031),
            ("time_since_inoculation_h", 0.012),
        ),
    )


def snapshot_at(hours: float, reactors: tuple[str, ...] = ("R1",)) -> LiveSnapshot:
    """The live snapshot ``hours`` into the batch: latest readings, state, prediction, an alarm,
    links (one of them down with a spool)."""
    end = T0 + hours * 3600.0
    curves = _curves(np.array([hours]))
    latest = {}
    states = {}
    predictions = {}
    for number, reactor in enumerate(reactors):
        for channel in CHANNELS:
            if channel.name not in curves:  # no feed in this batch
                continue
            value = float(curves[channel.name][0]) * (1 + 0.01 * number)
            quality = Quality.UNCERTAIN if channel.name == "od_probe" else Quality.GOOD
            latest[(reactor, channel.name)] = Reading(
                end - 1, reactor, channel.name, value, channel.unit, quality
            )
        state = make_state(int(hours * 120), float(curves["do"][0]), reactor=reactor)
        states[reactor] = replace(
            state,
            end=end,
            time_since_inoculation_h=hours,
            our=float(curves["our"][0]),
            cer=float(curves["cer"][0]),
            rq_smooth=0.68,
            phase="exponential",
        )
        predictions[reactor] = prediction_at(end, reactor)
    alarm = AlarmView(
        alarm_id="R1:do_low:warning",
        rule="do_low",
        reactor=reactors[0],
        condition="do < 20 for 300 s",
        channel="do",
        priority=Priority.WARNING,
        state=AlarmState.ACTIVE_UNACK,
        condition_active=True,
        raised_at=end - 400,
        changed_at=end - 400,
        value=18.5,
        message="DO 18.5 % below 20 % for 6 min",
    )
    return LiveSnapshot(
        taken_at=end,
        latest=MappingProxyType(latest),
        readings_total=int(hours * 3600 * len(CHANNELS)),
        states=MappingProxyType(states),
        predictions=MappingProxyType(predictions),
        alarms=(alarm,),
        model_version=MODEL,
        links=(
            LinkState("bus", True),
            LinkState("timeseries", False, waiting=1234, detail="InfluxDB not answering"),
            LinkState("notebook", True),
        ),
    )


def clock_at(hours: float) -> float:
    return T0 + hours * 3600.0
