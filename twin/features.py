"""The process state every 30 s: off-gas rates, growth, depletion and consistency checks.

:class:`FeaturePipeline` turns each :class:`~bptwin.twin.windows.WindowSnapshot` into a frozen
:class:`ProcessState`, using readings only (never simulator internals). The batch helpers
(:func:`states_from_frame`, :func:`feature_table`) run the very same pipeline over windows built
by :func:`bptwin.twin.windows.windows_from_frame`, so training and serving share one code path.
Formulas, units and gating are documented in ``docs/features.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.reading import Reading
from bptwin.twin import offgas
from bptwin.twin.carbon_balance import CarbonBalance, CarbonBalancePlan
from bptwin.twin.cleaning import SHORT_GAP_S, CleaningEvent
from bptwin.twin.units import ATM_BAR, C_STAR_AIR_30C_MM
from bptwin.twin.volume import LiquidVolume, VolumePlan
from bptwin.twin.windows import (
    ALL_CHANNELS,
    WINDOW_S,
    WindowAggregator,
    WindowSnapshot,
    windows_from_frame,
)

if TYPE_CHECKING:
    import pandas as pd

GLYCEROL_MOLAR_MASS = 92.094  # g/mol, C3H8O3
GLYCEROL_CARBONS = 3

# Channels whose window mean, std and slope go into the model's feature vector (stable order).
MODEL_CHANNELS: tuple[str, ...] = (
    "do",
    "ph",
    "od_probe",
    "stirrer_speed",
    "stirrer_torque",
    "offgas_o2",
    "offgas_co2",
    "air_flow",
    "o2_flow",
    "temp_broth",
    "pressure",
    "heater_output",
    "base_total",
    "vessel_weight",
)

PHASE_LAG = "lag"
PHASE_EXPONENTIAL = "exponential"
PHASE_STATIONARY = "stationary"
PHASE_DEPLETED = "depleted"
PHASE_CODES = {PHASE_LAG: 0, PHASE_EXPONENTIAL: 1, PHASE_STATIONARY: 2, PHASE_DEPLETED: 3}

DEPLETION_NONE = "none"
DEPLETION_CANDIDATE = "candidate"
DEPLETION_CONFIRMED = "confirmed"

# Flags the UI can show (ProcessState.flags).
FLAG_LOW_SIGNAL = "low_signal"
FLAG_OFFGAS_MISSING = "offgas_missing"
FLAG_RQ_OUT_OF_BAND = "rq_out_of_band"
FLAG_CO2_EXCEEDS_CARBON = "co2_exceeds_glycerol_carbon"
FLAG_OUR_DO_INCONSISTENT = "our_inconsistent_with_do"
FLAG_OUR_NEGATIVE = "our_negative"
FLAG_TEMP_PROBES_DISAGREE = "temp_probes_disagree"
FLAG_DEPLETION_BLIP = "depletion_blip_rejected"
FLAG_DEPLETION_DO_ONLY = "depletion_do_only"
FLAG_FILLED = "filled_short_gap"
FLAG_GAP = "long_gap"
FLAG_O2_FLOW_ASSUMED_ZERO = "o2_flow_assumed_zero"
# Partial sensor sets (docs/features.md, "CO₂ analyser only"): what rests on an assumption.
FLAG_CER_ASSUMES_RQ = "cer_assumes_rq"  # this window's CER: CO₂ alone, RQ assumed
FLAG_CO2_TOTAL_ASSUMES_RQ = "co2_total_assumes_rq"  # the CO₂ total holds such windows
FLAG_TOTALS_SKIP_GAP = "totals_skip_a_gap"  # a long gap was left out of the totals

CONSISTENCY_FLAGS = (
    FLAG_RQ_OUT_OF_BAND,
    FLAG_CO2_EXCEEDS_CARBON,
    FLAG_OUR_DO_INCONSISTENT,
    FLAG_OUR_NEGATIVE,
)


@dataclass(frozen=True)
class FeatureConfig:
    """Process constants and thresholds; *(approx.)* literature values are parameters."""

    volume_l: float = 1.0
    inoculated_at: float | None = None  # Unix s; None = start of the first window
    glycerol_g_per_l: float = 40.0
    y_o2_air: float = offgas.Y_O2_AIR
    y_co2_air: float = offgas.Y_CO2_AIR
    c_star_air_mm: float = C_STAR_AIR_30C_MM
    pressure_setpoint_bar: float = 0.0  # gauge
    # Gating and smoothing.
    rq_min_our: float = offgas.RQ_MIN_OUR_MMOL_L_H  # mmol/L/h
    low_signal_o2_drop_percent: float = 0.25  # % v/v, smoothed O2 drop below this = low signal
    smoothing_windows: int = 10  # 5 min moving average of OUR/CER/O2 drop
    slope_windows: int = 10  # 5 min least-squares slope of channel means
    short_gap_s: float = SHORT_GAP_S
    # Gas path delay (s): headspace volume / gas flow (0.6 L at 1.2 L/min: 30 s) plus the
    # analyser's t63 (≈ 25 s); inlet flows are lagged by it before the balance.
    offgas_lag_s: float = 55.0
    assume_zero_o2_flow_when_missing: bool = True  # no enrichment MFC = no enrichment
    # Growth rate.
    mu_fit_windows: int = 120  # 1 h sliding log-linear fit of CER
    mu_min_windows: int = 60  # at least 0.5 h of usable points
    mu_min_cer: float = 2.0  # mmol/L/h: below this ln(CER) is mostly analyser noise
    initial_biomass_g_per_l: float = 0.12  # X0: inoculum OD 4 diluted 10x, 0.3 g/L per OD
    yield_x_s_g_g: float = 0.55  # (approx.) 0.45–0.6 g DCW per g glycerol
    biomass_g_per_cmol: float = 26.7  # CH1.72O0.57N0.18 plus ash (approx.)
    yield_x_per_co2_g_per_mmol: float | None = None  # None: from the carbon balance, see below
    # Phase.
    exponential_mu_min: float = 0.08  # h⁻¹
    stationary_mu_max: float = 0.03  # h⁻¹
    # Depletion (docs/process.md "End of the batch").
    depletion_do_low_max: float = 40.0  # % sat: DO must come from 20–40 %
    depletion_do_high: float = 80.0  # % sat: ... to above 80 %
    depletion_do_stay: float = 70.0  # % sat: dropping below this during confirmation = blip
    depletion_rise_max_s: float = 2700.0  # DOMAIN: 15–30 min; margin for a slow Monod tail
    depletion_confirm_s: float = 300.0  # the state must hold this long
    depletion_collapse_fraction: float = 0.5  # CER below this fraction of its recent peak
    depletion_lookback_s: float = 3600.0
    # Consistency.
    rq_band: tuple[float, float] = (0.5, 1.0)  # glycerol ≈ 0.65–0.75; wider for analyser error
    rq_persist_windows: int = 10
    co2_carbon_fraction_max: float = 1.0
    kla_band: tuple[float, float] = (5.0, 1500.0)  # h⁻¹, implied by OUR and DO
    kla_min_driving_force_mm: float = offgas.KLA_MIN_DRIVING_FORCE_MM
    consistency_min_driving_fraction: float = 0.4  # OUR/DO check only when DO < ~60 % of C*
    kla_max_do_slope_per_h: float = 120.0  # % sat/h: faster DO change is not quasi-steady
    temp_probe_tolerance_c: float = 1.0
    # Partial sensor sets and real volumes (twin/process_inputs.py builds these from the
    # dataset record or the [process]/[volume] settings; the defaults change nothing).
    assumed_rq: float = 0.7  # CER from CO₂ alone when no O₂ reading: glycerol ≈ 0.65–0.75
    volume: VolumePlan | None = None  # None: the fixed volume_l
    carbon_balance: CarbonBalancePlan | None = None  # None: X₀ and Y_X/CO₂ from the above

    def __post_init__(self) -> None:
        checks = {
            "volume_l": self.volume_l > 0,
            "glycerol_g_per_l": self.glycerol_g_per_l >= 0,
            "smoothing_windows": self.smoothing_windows >= 1,
            "slope_windows": self.slope_windows >= 2,
            "mu_fit_windows": self.mu_fit_windows >= 3,
            "mu_min_windows": 3 <= self.mu_min_windows <= self.mu_fit_windows,
            "initial_biomass_g_per_l": self.initial_biomass_g_per_l >= 0,
            "yield_x_per_co2_g_per_mmol": self.yield_x_per_co2_g_per_mmol is None
            or self.yield_x_per_co2_g_per_mmol >= 0,
            "yield_x_s_g_g": 0 < self.yield_x_s_g_g < self.max_yield_x_s_g_g,
            "rq_band": self.rq_band[0] < self.rq_band[1],
            "kla_band": self.kla_band[0] < self.kla_band[1],
            "depletion_do_high": self.depletion_do_low_max < self.depletion_do_high,
            "rq_persist_windows": self.rq_persist_windows >= 1,
            "assumed_rq": 0.2 < self.assumed_rq <= 3.0,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"invalid feature configuration: {', '.join(wrong)}")

    @property
    def max_yield_x_s_g_g(self) -> float:
        """Yield at which all glycerol carbon would end in biomass (no CO2 at all)."""
        return GLYCEROL_CARBONS / GLYCEROL_MOLAR_MASS * self.biomass_g_per_cmol

    @property
    def yield_x_per_co2(self) -> float:
        """g DCW formed per mmol CO2 released (carbon balance on glycerol, no by-products).

        Per g glycerol: 3/92.094 × 1000 = 32.58 C-mmol; Yx/s/M_X × 1000 C-mmol go to biomass,
        the rest leaves as CO2. Yx/s 0.55, M_X 26.7 g/C-mol: 20.60 to biomass, 11.98 to CO2,
        so Y_X/CO2 = 0.55 / 11.98 = 0.0459 g/mmol.
        """
        if self.yield_x_per_co2_g_per_mmol is not None:
            return self.yield_x_per_co2_g_per_mmol
        carbon = GLYCEROL_CARBONS / GLYCEROL_MOLAR_MASS * 1000.0
        to_biomass = self.yield_x_s_g_g / self.biomass_g_per_cmol * 1000.0
        return self.yield_x_s_g_g / (carbon - to_biomass)

    @property
    def glycerol_carbon_mmol(self) -> float:
        """C-mmol of glycerol charged: g/L × V / 92.094 g/mol × 3 C × 1000."""
        moles = self.glycerol_g_per_l * self.volume_l / GLYCEROL_MOLAR_MASS
        return moles * GLYCEROL_CARBONS * 1000.0


@dataclass(frozen=True, slots=True, eq=False)
class ProcessState:
    """The process as seen from one window. Rates mmol/L/h, μ h⁻¹, times Unix s or h."""

    window_index: int
    start: float
    end: float
    reactor: str
    time_since_inoculation_h: float
    our: float
    cer: float
    rq: float
    rq_gate_reason: str | None
    our_smooth: float
    cer_smooth: float
    rq_smooth: float
    o2_drop_percent: float
    co2_rise_percent: float
    inlet_y_o2: float
    low_signal: bool
    cum_o2_mmol: float
    cum_co2_mmol: float
    cum_o2_mmol_per_l: float
    cum_co2_mmol_per_l: float
    c_star_mm: float
    kla: float
    kla_gate_reason: str | None
    mu_cer: float
    mu_carbon: float
    biomass_carbon_g_per_l: float
    biomass_g_per_l: float
    q_o2: float  # mmol O2 per g DCW per h
    q_co2: float
    base_total_ml: float
    base_rate_ml_per_h: float
    temp_broth_minus_exhaust: float
    temp_probe_spread: float
    pressure_deviation_bar: float
    phase: str
    depletion_state: str
    depletion_time: float  # Unix s of the DO spike (crossing > 80 %) once confirmed, else NaN
    flags: tuple[str, ...]
    missing_channels: tuple[str, ...]
    filled_channels: tuple[str, ...]
    gap_channels: tuple[str, ...]
    channel_mean: np.ndarray = field(repr=False)  # MODEL_CHANNELS order
    channel_std: np.ndarray = field(repr=False)
    channel_slope: np.ndarray = field(repr=False)  # per hour

    @property
    def phase_code(self) -> float:
        return float(PHASE_CODES[self.phase])

    @property
    def depleted(self) -> bool:
        return self.depletion_state == DEPLETION_CONFIRMED

    @property
    def consistency_flags(self) -> tuple[str, ...]:
        return tuple(flag for flag in self.flags if flag in CONSISTENCY_FLAGS)


SCALAR_FEATURES: tuple[str, ...] = (
    "time_since_inoculation_h",
    "our",
    "cer",
    "rq",
    "our_smooth",
    "cer_smooth",
    "rq_smooth",
    "o2_drop_percent",
    "co2_rise_percent",
    "inlet_y_o2",
    "low_signal",
    "cum_o2_mmol_per_l",
    "cum_co2_mmol_per_l",
    "kla",
    "mu_cer",
    "mu_carbon",
    "biomass_carbon_g_per_l",
    "q_o2",
    "q_co2",
    "base_total_ml",
    "base_rate_ml_per_h",
    "temp_broth_minus_exhaust",
    "temp_probe_spread",
    "pressure_deviation_bar",
    "phase_code",
    "depleted",
)

FEATURE_NAMES: tuple[str, ...] = (
    SCALAR_FEATURES
    + tuple(f"{name}_mean" for name in MODEL_CHANNELS)
    + tuple(f"{name}_std" for name in MODEL_CHANNELS)
    + tuple(f"{name}_slope" for name in MODEL_CHANNELS)
)


def feature_vector(state: ProcessState) -> np.ndarray:
    """The model's input row, ordered as :data:`FEATURE_NAMES` (NaN where unknown)."""
    scalars = np.fromiter(
        (float(getattr(state, name)) for name in SCALAR_FEATURES),
        dtype=float,
        count=len(SCALAR_FEATURES),
    )
    return np.concatenate((scalars, state.channel_mean, state.channel_std, state.channel_slope))


class _Ring:
    """Fixed-size ring of rows; order is irrelevant to every statistic taken from it."""

    __slots__ = ("data", "filled", "position")

    def __init__(self, size: int, width: int = 1) -> None:
        self.data = np.full((size, width), np.nan)
        self.position = 0
        self.filled = 0

    def push(self, row: np.ndarray | float) -> None:
        self.data[self.position] = row
        self.position = (self.position + 1) % self.data.shape[0]
        self.filled = min(self.filled + 1, self.data.shape[0])

    def view(self) -> np.ndarray:
        return self.data[: self.filled]

    def clear(self) -> None:
        self.data.fill(np.nan)
        self.position = 0
        self.filled = 0


def _nanmean_column(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _masked_slopes(times: np.ndarray, values: np.ndarray, min_points: int = 2) -> np.ndarray:
    """Least-squares slope of every column of ``values`` against ``times``, ignoring NaNs."""
    usable = np.isfinite(values) & np.isfinite(times)[:, None]
    n = usable.sum(axis=0)
    t = np.where(usable, times[:, None], 0.0)
    y = np.where(usable, values, 0.0)
    safe_n = np.maximum(n, 1)
    t_mean = t.sum(axis=0) / safe_n
    y_mean = y.sum(axis=0) / safe_n
    dt = np.where(usable, times[:, None] - t_mean, 0.0)
    dy = np.where(usable, values - y_mean, 0.0)
    denominator = (dt * dt).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (dt * dy).sum(axis=0) / denominator
    return np.where((n >= min_points) & (denominator > 0), slope, np.nan)


class DepletionDetector:
    """Glycerol depletion: DO jumps from 20–40 % to > 80 % while CER collapses, and it stays.

    A rise that reverts within ``depletion_confirm_s`` (foam collapse, antifoam shot) is a
    blip, not depletion. The reported depletion time is the DO spike: the instant the DO
    (window means, taken at window centres, linearly interpolated) crosses ``depletion_do_high``.
    """

    def __init__(self, config: FeatureConfig, window_s: float = WINDOW_S) -> None:
        self.config = config
        size = max(math.ceil(config.depletion_lookback_s / window_s) + 1, 2)
        self._history = _Ring(size, 3)  # end time, DO, CER (or OUR)
        self._window_s = float(window_s)
        self._previous: tuple[float, float] = (math.nan, math.nan)  # end, DO of the last window
        self.state = DEPLETION_NONE
        self.onset: float = math.nan
        self.candidate_since: float = math.nan
        self.do_only = False
        self.blips_rejected = 0

    def update(self, end: float, do: float, cer: float) -> tuple[str, bool]:
        """Feed one window; returns (state, blip_rejected_now)."""
        cfg = self.config
        self._history.push(np.array((end, do, cer)))
        previous, self._previous = self._previous, (end, do)
        if self.state == DEPLETION_CONFIRMED:
            return self.state, False
        history = self._history.view()
        times, dos, cers = history[:, 0], history[:, 1], history[:, 2]
        collapsed, measured = self._cer_collapsed(cers, cer)
        if self.state == DEPLETION_CANDIDATE:
            if not (do >= cfg.depletion_do_stay) or (measured and not collapsed):
                self.state = DEPLETION_NONE
                self.blips_rejected += 1
                self.onset = self.candidate_since = math.nan
                return self.state, True
            needed = cfg.depletion_confirm_s * (2.0 if self.do_only else 1.0)
            if end - self.candidate_since >= needed:
                self.state = DEPLETION_CONFIRMED
            return self.state, False
        if do >= cfg.depletion_do_high and collapsed:
            recent = times >= end - cfg.depletion_rise_max_s
            low = recent & (dos <= cfg.depletion_do_low_max)
            if low.any():
                self.state = DEPLETION_CANDIDATE
                self.onset = self._crossing_time(previous, end, do)
                self.candidate_since = end
                self.do_only = not measured
        return self.state, False

    def _crossing_time(self, previous: tuple[float, float], end: float, do: float) -> float:
        """When the DO crossed the high threshold, between the previous and this window."""
        centre = end - self._window_s / 2
        previous_end, previous_do = previous
        threshold = self.config.depletion_do_high
        if not (math.isfinite(previous_do) and previous_do < threshold < do):
            return centre
        previous_centre = previous_end - self._window_s / 2
        fraction = (threshold - previous_do) / (do - previous_do)
        return previous_centre + fraction * (centre - previous_centre)

    def _cer_collapsed(self, cers: np.ndarray, cer: float) -> tuple[bool, bool]:
        """(collapsed, measured): without off-gas the DO evidence alone must do (longer)."""
        finite = cers[np.isfinite(cers)]
        if not math.isfinite(cer) or finite.size == 0:
            return True, False
        peak = float(finite.max())
        if peak <= 0:
            return False, True
        return cer <= self.config.depletion_collapse_fraction * peak, True


class FeaturePipeline:
    """Streaming feature computation: ``update(window) -> ProcessState`` once per window."""

    def __init__(self, config: FeatureConfig | None = None, window_s: float = WINDOW_S) -> None:
        self.config = config or FeatureConfig()
        cfg = self.config
        self.window_s = float(window_s)
        self._inoculated_at = cfg.inoculated_at
        self._channels: tuple[str, ...] | None = None
        self._held = np.full(len(ALL_CHANNELS), np.nan)
        self._held_end = np.full(len(ALL_CHANNELS), -np.inf)
        self._smooth = _Ring(cfg.smoothing_windows, 4)  # OUR, CER, O2 drop, CO2 rise
        self._slopes = _Ring(cfg.slope_windows, len(MODEL_CHANNELS))
        self._slope_times = _Ring(cfg.slope_windows)
        self._mu = _Ring(cfg.mu_fit_windows, 2)  # time (h), CER
        self._depletion = DepletionDetector(cfg, window_s)
        self._previous_end: float | None = None
        self._previous_rates = (math.nan, math.nan)  # OUR·V, CER·V (mmol/h)
        self._totals = _GasTotals()
        self._volume = LiquidVolume(cfg.volume or VolumePlan(cfg.volume_l))
        self._carbon = CarbonBalance(
            cfg.carbon_balance
            or CarbonBalancePlan(cfg.initial_biomass_g_per_l, cfg.yield_x_per_co2),
            self._volume.plan.initial_l,
        )
        self._rq_out_count = 0
        self._kla_out_count = 0
        self._seen_exponential = False
        self._external_biomass: float = math.nan
        self._co2_only_cer = math.nan
        self._inlet_lagged = [math.nan, math.nan]  # air, O2 (sL/min) as the analyser sees them
        self._model_rows: np.ndarray | None = None

    def set_inoculation_time(self, timestamp: float) -> None:
        self._inoculated_at = float(timestamp)

    def note_sample(self, timestamp: float, dry_weight_g_l: float = math.nan) -> None:
        """An offline sample taken (live): the volume loses it, a carbon-balance fit uses it."""
        self._volume.note_sample(timestamp)
        self._carbon.note_sample(timestamp, dry_weight_g_l)

    def set_biomass_estimate(self, g_per_l: float) -> None:
        """Use an external biomass estimate (e.g. the model's nowcast) for qO2/qCO2."""
        self._external_biomass = float(g_per_l)

    def _bind(self, window: WindowSnapshot) -> None:
        positions = {name: i for i, name in enumerate(window.channels)}
        self._channels = window.channels
        self._positions = positions
        self._all_rows = np.array([positions.get(name, -1) for name in ALL_CHANNELS])
        self._model_rows = np.array([positions.get(name, -1) for name in MODEL_CHANNELS])

    def _channel_values(
        self, window: WindowSnapshot
    ) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """Window means in ALL_CHANNELS order with the short-gap hold applied."""
        rows = self._all_rows
        present = rows >= 0
        means = np.full(len(ALL_CHANNELS), np.nan)
        means[present] = window.mean[rows[present]]
        fresh = np.isfinite(means)
        self._held[fresh] = means[fresh]
        self._held_end[fresh] = window.end
        age = window.end - self._held_end
        fill = ~fresh & (age <= self.config.short_gap_s) & np.isfinite(self._held)
        means[fill] = self._held[fill]
        gap = ~fresh & ~fill & np.isfinite(self._held)
        missing = tuple(ALL_CHANNELS[i] for i in np.flatnonzero(~fresh))
        filled = tuple(ALL_CHANNELS[i] for i in np.flatnonzero(fill))
        gaps = tuple(ALL_CHANNELS[i] for i in np.flatnonzero(gap))
        return means, missing, filled, gaps

    def update(self, window: WindowSnapshot) -> ProcessState:
        cfg = self.config
        if self._channels != window.channels:
            self._bind(window)
        if self._inoculated_at is None:
            self._inoculated_at = window.start
        values, missing, filled, gaps = self._channel_values(window)
        v = dict(zip(ALL_CHANNELS, values.tolist(), strict=True))
        flags: list[str] = []
        if filled:
            flags.append(FLAG_FILLED)
        if gaps:
            flags.append(FLAG_GAP)
        end = window.end
        t_h = (end - self._inoculated_at) / 3600.0

        # Off-gas balance.
        o2_flow = v["o2_flow"]
        if not math.isfinite(o2_flow) and cfg.assume_zero_o2_flow_when_missing:
            o2_flow = 0.0
            flags.append(FLAG_O2_FLOW_ASSUMED_ZERO)
        air_flow, o2_flow = self._lag_inlet(v["air_flow"], o2_flow)
        y_o2_out = v["offgas_o2"] / 100.0
        y_co2_out = v["offgas_co2"] / 100.0
        volume = self._volume.at(end, t_h, v["feed_total"], v["base_total"])
        balance = offgas.gas_balance(
            air_flow, y_o2_out, y_co2_out, volume, o2_flow, cfg.y_o2_air, cfg.y_co2_air
        )
        our, cer = float(balance.our), float(balance.cer)
        cer_assumed = not math.isfinite(cer) and self._cer_from_co2_only(
            air_flow, y_co2_out, volume, o2_flow
        )
        if cer_assumed:
            cer = self._co2_only_cer
            flags.append(FLAG_CER_ASSUMES_RQ)
        if not (math.isfinite(our) and math.isfinite(cer)):
            flags.append(FLAG_OFFGAS_MISSING)
        o2_drop = float(balance.o2_drop) * 100.0
        co2_rise = (y_co2_out - float(balance.y_co2_in)) * 100.0
        self._smooth.push(np.array((our, cer, o2_drop, co2_rise)))
        smooth = self._smooth.view()
        our_s, cer_s = _nanmean_column(smooth[:, 0]), _nanmean_column(smooth[:, 1])
        o2_drop_s = _nanmean_column(smooth[:, 2])
        if cer_assumed:  # no O₂ drop to judge: the drop the CO₂ rise implies at the RQ
            o2_drop_s = _nanmean_column(smooth[:, 3]) / cfg.assumed_rq
        low_signal = not (o2_drop_s >= cfg.low_signal_o2_drop_percent)
        if low_signal:
            flags.append(FLAG_LOW_SIGNAL)
        rq, rq_reason = offgas.respiratory_quotient(cer, our, cfg.rq_min_our)
        rq_s, _ = offgas.respiratory_quotient(cer_s, our_s, cfg.rq_min_our)

        # Cumulative O2 and CO2 (trapezoids of rate × volume); never across a long gap.
        totals = self._totals
        if self._previous_end is not None:
            dt_h = (end - self._previous_end) / 3600.0
            if dt_h * 3600.0 <= cfg.short_gap_s + self.window_s:
                totals.add(self._previous_rates, (our * volume, cer * volume), dt_h, cer_assumed)
            else:
                totals.skipped_gap = totals.skipped_gap or totals.started
        self._previous_end = end
        self._previous_rates = (our * volume, cer * volume)
        totals.start(our, cer, cer_assumed)
        flags += totals.flags()
        cum_co2_total = totals.co2_mmol
        cum_o2_per_l, cum_co2_per_l = totals.o2_mmol / volume, cum_co2_total / volume

        # Per-channel window statistics for the model.
        model_rows = self._model_rows
        assert model_rows is not None
        model_present = model_rows >= 0
        channel_mean = np.array([v[name] for name in MODEL_CHANNELS])
        channel_std = np.full(len(MODEL_CHANNELS), np.nan)
        channel_std[model_present] = window.std[model_rows[model_present]]
        self._slopes.push(channel_mean)
        self._slope_times.push(t_h)
        channel_slope = _masked_slopes(self._slope_times.view()[:, 0], self._slopes.view())
        slope = dict(zip(MODEL_CHANNELS, channel_slope.tolist(), strict=True))

        # kLa at quasi-steady state, C* from the outlet O2 partial pressure.
        pressure_gauge = v["pressure"] if math.isfinite(v["pressure"]) else 0.0
        c_star = float(offgas.c_star_mm(y_o2_out, pressure_gauge + ATM_BAR, cfg.c_star_air_mm))
        c_l = v["do"] / 100.0 * cfg.c_star_air_mm
        kla, kla_reason = offgas.kla_quasi_steady_state(
            our_s, c_star, c_l, cfg.kla_min_driving_force_mm
        )
        do_slope = slope["do"]
        if kla_reason is None and abs(do_slope) > cfg.kla_max_do_slope_per_h:
            kla, kla_reason = math.nan, "not_quasi_steady"
        if kla_reason is None and low_signal:
            kla, kla_reason = math.nan, FLAG_LOW_SIGNAL

        # Growth rate: sliding log-linear fit of CER, and the carbon balance.
        self._mu.push(np.array((t_h, cer)))
        mu_cer = self._mu_from_cer()
        biomass_carbon = self._carbon.biomass(end, cum_co2_total, volume)
        mu_carbon = (
            self._carbon.yield_g_per_mmol * cer_s / biomass_carbon
            if biomass_carbon > 0 and math.isfinite(cer_s)
            else math.nan
        )
        biomass = (
            self._external_biomass if math.isfinite(self._external_biomass) else biomass_carbon
        )
        q_o2 = our_s / biomass if biomass > 0 else math.nan
        q_co2 = cer_s / biomass if biomass > 0 else math.nan

        # Temperatures and pressure.
        probes = [v[n] for n in ("temp_broth", "temp_ph_probe", "temp_do_probe")]
        probes = [p for p in probes if math.isfinite(p)]
        spread = max(probes) - min(probes) if len(probes) >= 2 else math.nan
        if spread > cfg.temp_probe_tolerance_c:
            flags.append(FLAG_TEMP_PROBES_DISAGREE)

        # Depletion and phase.
        # Raw CER: depletion collapses it within a window; the confirmation period guards noise.
        depletion_state, blip = self._depletion.update(end, v["do"], cer)
        if blip:
            flags.append(FLAG_DEPLETION_BLIP)
        if depletion_state != DEPLETION_NONE and self._depletion.do_only:
            flags.append(FLAG_DEPLETION_DO_ONLY)
        growth = mu_cer if math.isfinite(mu_cer) else mu_carbon
        phase = self._phase(depletion_state, growth)

        # Consistency checks.
        if math.isfinite(rq_s) and not (cfg.rq_band[0] <= rq_s <= cfg.rq_band[1]):
            self._rq_out_count += 1
        else:
            self._rq_out_count = 0
        if self._rq_out_count >= cfg.rq_persist_windows:
            flags.append(FLAG_RQ_OUT_OF_BAND)
        if (
            cum_co2_total > cfg.co2_carbon_fraction_max * cfg.glycerol_carbon_mmol
            and not self._volume.follows_feed  # a feed brings carbon of its own
        ):
            flags.append(FLAG_CO2_EXCEEDS_CARBON)
        if not low_signal and our_s < -cfg.rq_min_our:
            flags.append(FLAG_OUR_NEGATIVE)
        implied = self._implied_kla(our_s, c_star, c_l)
        if math.isfinite(implied) and not (cfg.kla_band[0] <= implied <= cfg.kla_band[1]):
            self._kla_out_count += 1
        else:
            self._kla_out_count = 0
        if self._kla_out_count >= cfg.rq_persist_windows:
            flags.append(FLAG_OUR_DO_INCONSISTENT)

        temp_diff = v["temp_broth"] - v["temp_exhaust"]
        return ProcessState(
            window_index=window.index,
            start=window.start,
            end=end,
            reactor=window.reactor,
            time_since_inoculation_h=t_h,
            our=our,
            cer=cer,
            rq=rq,
            rq_gate_reason=rq_reason,
            our_smooth=our_s,
            cer_smooth=cer_s,
            rq_smooth=rq_s,
            o2_drop_percent=o2_drop,
            co2_rise_percent=co2_rise,
            inlet_y_o2=float(balance.y_o2_in),
            low_signal=low_signal,
            cum_o2_mmol=totals.o2_mmol,
            cum_co2_mmol=cum_co2_total,
            cum_o2_mmol_per_l=cum_o2_per_l,
            cum_co2_mmol_per_l=cum_co2_per_l,
            c_star_mm=c_star,
            kla=kla,
            kla_gate_reason=kla_reason,
            mu_cer=mu_cer,
            mu_carbon=mu_carbon,
            biomass_carbon_g_per_l=biomass_carbon,
            biomass_g_per_l=biomass,
            q_o2=q_o2,
            q_co2=q_co2,
            base_total_ml=v["base_total"],
            base_rate_ml_per_h=slope["base_total"],
            temp_broth_minus_exhaust=temp_diff,
            temp_probe_spread=spread,
            pressure_deviation_bar=v["pressure"] - cfg.pressure_setpoint_bar,
            phase=phase,
            depletion_state=depletion_state,
            depletion_time=self._depletion.onset
            if depletion_state == DEPLETION_CONFIRMED
            else math.nan,
            flags=tuple(flags),
            missing_channels=missing,
            filled_channels=filled,
            gap_channels=gaps,
            channel_mean=_readonly(channel_mean),
            channel_std=_readonly(channel_std),
            channel_slope=_readonly(channel_slope),
        )

    def _cer_from_co2_only(
        self, air_flow: float, y_co2_out: float, volume: float, o2_flow: float
    ) -> bool:
        """CER from the CO₂ analyser alone at the assumed RQ when no O₂ reading closes the
        balance (kept in ``_co2_only_cer``); False when even that cannot be computed."""
        cfg = self.config
        if not (math.isfinite(air_flow) and math.isfinite(y_co2_out) and math.isfinite(o2_flow)):
            return False
        balance = offgas.co2_only_balance(
            air_flow, y_co2_out, volume, cfg.assumed_rq, o2_flow, cfg.y_o2_air, cfg.y_co2_air
        )
        self._co2_only_cer = float(balance.cer)
        return math.isfinite(self._co2_only_cer)

    def _lag_inlet(self, air_flow: float, o2_flow: float) -> tuple[float, float]:
        """Delay the inlet flows as the gas path delays the outlet (headspace + analyser).

        A mass-flow meter reports a change at once, the analyser a minute later; without this
        alignment a slowly rising O2 enrichment biases OUR (0.003 sL/min of O2 is 8 mmol/L/h).
        Discrete first-order lag with α = Δt/(τ + Δt), whose delay on a ramp is exactly τ.
        """
        tau = self.config.offgas_lag_s
        if tau <= 0:
            return air_flow, o2_flow
        alpha = self.window_s / (tau + self.window_s)
        lagged = []
        for i, value in enumerate((air_flow, o2_flow)):
            previous = self._inlet_lagged[i]
            if not math.isfinite(value) or not math.isfinite(previous):
                current = value
            else:
                current = previous + alpha * (value - previous)
            self._inlet_lagged[i] = current
            lagged.append(current)
        return lagged[0], lagged[1]

    def _mu_from_cer(self) -> float:
        cfg = self.config
        history = self._mu.view()
        times, cers = history[:, 0], history[:, 1]
        usable = np.isfinite(cers) & (cers > 0)
        if usable.sum() < cfg.mu_min_windows:
            return math.nan
        if float(np.median(cers[usable])) < cfg.mu_min_cer:
            return math.nan
        return float(_masked_slopes(times[usable], np.log(cers[usable])[:, None], 3)[0])

    def _implied_kla(self, our_s: float, c_star: float, c_l: float) -> float:
        """kLa that OUR and DO imply; NaN when the check cannot be made.

        Only checked when DO is well below saturation: then O2 must be taken up, and an
        off-gas O2 drop lost in the noise is itself a sign that something is wrong.
        """
        if not math.isfinite(our_s):
            return math.nan
        driving = c_star - c_l
        needed = max(
            self.config.kla_min_driving_force_mm,
            self.config.consistency_min_driving_fraction * c_star,
        )
        if not math.isfinite(driving) or driving < needed:
            return math.nan
        return our_s / driving

    def _phase(self, depletion_state: str, growth: float) -> str:
        cfg = self.config
        if depletion_state == DEPLETION_CONFIRMED:
            return PHASE_DEPLETED
        if math.isfinite(growth) and growth >= cfg.exponential_mu_min:
            self._seen_exponential = True
            return PHASE_EXPONENTIAL
        if self._seen_exponential and (not math.isfinite(growth) or growth < cfg.stationary_mu_max):
            return PHASE_STATIONARY
        return PHASE_EXPONENTIAL if self._seen_exponential else PHASE_LAG


def _trapezoid(previous: float, current: float, dt_h: float) -> float:
    if math.isfinite(previous) and math.isfinite(current):
        return 0.5 * (previous + current) * dt_h
    return 0.0


class _GasTotals:
    """Total O₂ taken up and CO₂ released (mmol); NaN until a rate was first known, so a
    batch without an analyser never shows 0 as if measured. Remembers what the totals rest on."""

    __slots__ = ("co2_assumed", "co2_mmol", "o2_mmol", "skipped_gap", "started")

    def __init__(self) -> None:
        self.o2_mmol = math.nan
        self.co2_mmol = math.nan
        self.co2_assumed = False  # some CER in the total rests on an assumed RQ
        self.skipped_gap = False  # a long gap is missing from the totals
        self.started = False

    def start(self, our: float, cer: float, cer_assumed: bool) -> None:
        if math.isnan(self.o2_mmol) and math.isfinite(our):
            self.o2_mmol = 0.0
        if math.isnan(self.co2_mmol) and math.isfinite(cer):
            self.co2_mmol = 0.0
            self.co2_assumed = self.co2_assumed or cer_assumed
        self.started = self.started or math.isfinite(our) or math.isfinite(cer)

    def add(
        self,
        previous: tuple[float, float],
        current: tuple[float, float],
        dt_h: float,
        cer_assumed: bool,
    ) -> None:
        if math.isfinite(self.o2_mmol):
            self.o2_mmol += _trapezoid(previous[0], current[0], dt_h)
        if math.isfinite(self.co2_mmol):
            self.co2_mmol += _trapezoid(previous[1], current[1], dt_h)
            self.co2_assumed = self.co2_assumed or cer_assumed

    def flags(self) -> list[str]:
        found = []
        if self.co2_assumed:
            found.append(FLAG_CO2_TOTAL_ASSUMES_RQ)
        if self.skipped_gap:
            found.append(FLAG_TOTALS_SKIP_GAP)
        return found


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# -- streaming convenience and batch path -------------------------------------------------
class StreamingFeatures:
    """Readings in, process states out: a :class:`WindowAggregator` feeding a pipeline."""

    def __init__(
        self,
        config: FeatureConfig | None = None,
        reactor: str | None = None,
        lateness_s: float = 2.0,
    ) -> None:
        self.aggregator = WindowAggregator(reactor=reactor, lateness_s=lateness_s)
        self.pipeline = FeaturePipeline(config)

    def add(self, reading: Reading) -> list[ProcessState]:
        windows = self.aggregator.add(reading)
        return [self.pipeline.update(window) for window in windows] if windows else []

    def advance_to(self, now: float) -> list[ProcessState]:
        return [self.pipeline.update(window) for window in self.aggregator.advance_to(now)]

    def flush(self) -> list[ProcessState]:
        return [self.pipeline.update(window) for window in self.aggregator.flush()]

    def pop_events(self) -> list[CleaningEvent]:
        return self.aggregator.pop_events()


def states_from_windows(
    windows: Iterable[WindowSnapshot], config: FeatureConfig | None = None
) -> list[ProcessState]:
    pipeline = FeaturePipeline(config)
    return [pipeline.update(window) for window in windows]


def states_from_frame(
    frame: pd.DataFrame,
    config: FeatureConfig | None = None,
    timestamp_column: str | None = "timestamp",
    reactor: str = "",
) -> list[ProcessState]:
    """Process states of a whole batch (1 Hz channels as columns), via the streaming pipeline."""
    windows = windows_from_frame(frame, timestamp_column, reactor=reactor)
    return states_from_windows(windows, config)


INFO_COLUMNS: tuple[str, ...] = (
    "window_start",
    "window_end",
    "phase",
    "depletion_state",
    "depletion_time",
    "flags",
    "missing_channels",
)


def states_to_frame(states: Sequence[ProcessState]) -> pd.DataFrame:
    """Windows × (INFO_COLUMNS + FEATURE_NAMES) table."""
    import pandas as pd

    matrix = (
        np.vstack([feature_vector(state) for state in states])
        if states
        else np.empty((0, len(FEATURE_NAMES)))
    )
    table = pd.DataFrame(matrix, columns=list(FEATURE_NAMES))
    info = pd.DataFrame(
        {
            "window_start": [s.start for s in states],
            "window_end": [s.end for s in states],
            "phase": [s.phase for s in states],
            "depletion_state": [s.depletion_state for s in states],
            "depletion_time": [s.depletion_time for s in states],
            "flags": [",".join(s.flags) for s in states],
            "missing_channels": [",".join(s.missing_channels) for s in states],
        }
    )
    return pd.concat([info, table], axis=1)


def feature_table(
    frame: pd.DataFrame,
    config: FeatureConfig | None = None,
    timestamp_column: str | None = "timestamp",
    reactor: str = "",
) -> pd.DataFrame:
    """The training table of one batch: one row per 30 s window, the live pipeline's features."""
    return states_to_frame(states_from_frame(frame, config, timestamp_column, reactor))


def state_as_dict(state: ProcessState) -> dict[str, object]:
    """Plain dict of a state's scalar fields (arrays as lists) for JSON and the bus."""
    result: dict[str, object] = {}
    for item in fields(state):
        value = getattr(state, item.name)
        result[item.name] = value.tolist() if isinstance(value, np.ndarray) else value
    return result
