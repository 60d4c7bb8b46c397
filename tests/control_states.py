"""Hand-made process states for the control tests (only what the controller reads is set)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from bptwin.twin.features import MODEL_CHANNELS, ProcessState

T0 = 1_790_000_000.0
WINDOW_S = 30.0


def make_state(
    index: int,
    do: float,
    *,
    do_slope: float = 0.0,
    rpm: float = 500.0,
    o2: float = 0.0,
    rq: float = 0.7,
    reactor: str = "R1",
    depleted: bool = False,
) -> ProcessState:
    """Window ``index`` (30 s each from T0) with DO (% sat, slope in %/h) and the actuators."""
    mean = np.full(len(MODEL_CHANNELS), math.nan)
    slope = np.zeros(len(MODEL_CHANNELS))
    mean[MODEL_CHANNELS.index("do")] = do
    mean[MODEL_CHANNELS.index("stirrer_speed")] = rpm
    mean[MODEL_CHANNELS.index("o2_flow")] = o2
    slope[MODEL_CHANNELS.index("do")] = do_slope
    start = T0 + index * WINDOW_S
    nan = math.nan
    return ProcessState(
        window_index=index,
        start=start,
        end=start + WINDOW_S,
        reactor=reactor,
        time_since_inoculation_h=10.0 + index * WINDOW_S / 3600,
        our=80.0,
        cer=80.0 * rq,
        rq=rq,
        rq_gate_reason=None,
        our_smooth=80.0,
        cer_smooth=80.0 * rq,
        rq_smooth=rq,
        o2_drop_percent=2.0,
        co2_rise_percent=1.5,
        inlet_y_o2=0.2095,
        low_signal=False,
        cum_o2_mmol=nan,
        cum_co2_mmol=nan,
        cum_o2_mmol_per_l=nan,
        cum_co2_mmol_per_l=nan,
        c_star_mm=0.236,
        kla=300.0,
        kla_gate_reason=None,
        mu_cer=0.2,
        mu_carbon=0.2,
        biomass_carbon_g_per_l=10.0,
        biomass_g_per_l=10.0,
        q_o2=8.0,
        q_co2=5.6,
        base_total_ml=10.0,
        base_rate_ml_per_h=1.0,
        temp_broth_minus_exhaust=5.0,
        temp_probe_spread=0.1,
        pressure_deviation_bar=0.0,
        phase="depleted" if depleted else "exponential",
        depletion_state="confirmed" if depleted else "none",
        depletion_time=nan,
        flags=(),
        missing_channels=(),
        filled_channels=(),
        gap_channels=(),
        channel_mean=mean,
        channel_std=np.zeros(len(MODEL_CHANNELS)),
        channel_slope=slope,
    )


def with_changes(state: ProcessState, **changes: object) -> ProcessState:
    return replace(state, **changes)
