"""Forecast of the rest of the batch: OD600 trajectory and glycerol-depletion time, with a band.

Method (mechanistic hybrid, carbon balance): glycerol is the only carbon source, so a batch
ends after evolving a roughly fixed amount of CO₂ per litre (``C_end``, learnt from the
training batches with its spread). From the current window: cumulative CO₂ ``C_now``,
smoothed CER and the growth rate μ (sliding log-linear fit of CER, else the carbon-balance μ).
With CER growing as CER·e^{μτ}, the CO₂ still to come is CER·(e^{μτ} − 1)/μ, so

    depletion in τ = ln(1 + μ·(C_end − C_now)/CER) / μ
    OD(now + τ) = OD_now + k · CER·(e^{μτ} − 1)/μ   (flat after depletion)

with OD_now the LightGBM nowcast and k the OD gained per mmol/L of CO₂ (fitted on the training
batches). Late in the batch the oxygen transfer caps the rates (the DO cascade saturates): CER
cannot exceed ``CER_max``, the median of the training batches' peak CER, after which CO₂ (and
biomass) accumulate linearly; without that cap the forecast ended batches 30–50 min early.

With the batch's own estimate (:mod:`~bptwin.twin.forecast_online`: C_end from its samples and
its OD-per-CO₂ ratio, μ from 2 h of its CER) those replace the card's C_end, k and μ, the CER
ceiling is dropped (a home number) and the stretch is that projection's own.

The band takes the extremes over C_end ± 1.96 SD and μ ± 15 %, the two uncertain inputs. A pure
data-driven forecast has no mechanism to extrapolate a batch's future from its present; this
one stays on the carbon budget by construction.

DO (% air saturation) rides on the same projection (:class:`DoParameters`, learnt from the
training batches). While the stirrer is at its minimum and no O₂ is added, the oxygen
transfer is fixed, so the DO deficit is proportional to the uptake, which is proportional to
CER at a constant RQ: DO(τ) = 100 − D·CER(τ), D = (100 − DO)/CER taken from the current
window once the deficit is large enough to measure (else the training median). The cascade
then holds DO at its controlled level until depletion, around which the DO follows the rise
seen in the training batches (a template on the time to depletion), then the post-depletion
level. The depletion time is uncertain (SD learnt on the training batches as a fraction of
the time still to go), so the central DO is the *expected* DO over that uncertainty (a ramp
where the real batch shows a sharp rise; it minimises the squared error), and the band is
the envelope over the depletion times within ±1.645 SD widened by the DO's own spread under
the cascade (5th/95th percentiles). See docs/model.md for what is scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bptwin.twin.features import MODEL_CHANNELS, ProcessState
from bptwin.twin.forecast_online import (
    ONLINE_DEPLETION_DELAY_S,
    ONLINE_DEPLETION_ERROR_FRACTION,
    ONLINE_DEPLETION_ERROR_SD_S,
    ONLINE_TIME_STRETCH,
    BatchEstimate,
)

if TYPE_CHECKING:
    import lightgbm

_DO, _STIRRER, _O2_FLOW = (MODEL_CHANNELS.index(n) for n in ("do", "stirrer_speed", "o2_flow"))
MU_FALLBACK = 0.2  # h⁻¹, docs/process.md: μmax 0.18–0.30
MU_MIN = 0.02
MU_SPREAD = 0.15
Z95 = 1.96
Z90 = 1.645
MAD_TO_SD = 1.4826
DEFAULT_DEPLETION_ERROR_FRACTION = 0.05
DEFAULT_DEPLETION_ERROR_SD_S = 900.0
DO_MIN_DEFICIT = 8.0  # % sat: below this the window's own deficit/CER ratio is too noisy
DEPLETION_SD_FLOOR_S = 300.0
# Equal-probability points of a standard normal (midpoint quantiles): the expected DO over the
# depletion-time uncertainty is the mean of the DO at these depletion times.
_NORMAL_POINTS = np.array([NormalDist().inv_cdf((i + 0.5) / 15) for i in range(15)])
_BAND_POINTS = np.array([-Z90, 0.0, Z90])


@dataclass(frozen=True)
class DoParameters:
    """DO model learnt from the training batches; stored under metrics.forecast.do."""

    deficit_per_cer: float  # (100 − DO) / CER at minimum stirring, % sat per mmol/L/h
    controlled_level: float  # % sat the cascade holds while it acts
    high_level: float  # % sat after depletion
    stirrer_min_rpm: float
    template_start_min: float  # offset of template[0] from the depletion time
    template_step_min: float
    template: tuple[float, ...]  # % sat around depletion, on offsets from it
    noise_low: float  # 5th percentile of DO − controlled level (negative)
    noise_high: float  # 95th percentile

    @classmethod
    def from_block(cls, block: dict[str, Any] | None) -> DoParameters | None:
        if not block:
            return None
        try:
            params = cls(
                float(block["deficit_per_cer"]),
                float(block["controlled_level"]),
                float(block["high_level"]),
                float(block["stirrer_min_rpm"]),
                float(block["template_start_min"]),
                float(block["template_step_min"]),
                tuple(float(v) for v in block["template"]),
                float(block["noise_low"]),
                float(block["noise_high"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        numbers = (params.deficit_per_cer, params.controlled_level, params.high_level)
        usable = all(math.isfinite(v) and v > 0 for v in numbers)
        usable = usable and len(params.template) >= 2 and params.template_step_min > 0
        usable = usable and all(math.isfinite(v) for v in params.template)
        return params if usable else None

    def template_value(self, offset_min: np.ndarray) -> np.ndarray:
        """DO around depletion at these offsets (min) from it; NaN outside the template."""
        grid = self.template_start_min + self.template_step_min * np.arange(len(self.template))
        values = np.interp(offset_min, grid, np.asarray(self.template))
        inside = (offset_min >= grid[0]) & (offset_min <= grid[-1])
        return np.where(inside, values, np.nan)

    @property
    def template_end_min(self) -> float:
        return self.template_start_min + self.template_step_min * (len(self.template) - 1)


@dataclass(frozen=True)
class ForecastParameters:
    """Learnt from the training batches; stored in the model card under metrics.forecast."""

    cum_co2_at_depletion: float  # mmol/L
    cum_co2_at_depletion_sd: float
    od_per_mmol_co2: float
    cer_max: float = math.inf  # mmol/L/h, the O2-transfer ceiling
    time_stretch: float = 1.0  # learnt correction: the batch runs this much slower
    # SD of the depletion-time error (training batches): a fraction of the time still to go
    # or an absolute spread (s), whichever is larger
    depletion_error_fraction: float = DEFAULT_DEPLETION_ERROR_FRACTION
    depletion_error_sd_s: float = DEFAULT_DEPLETION_ERROR_SD_S
    do: DoParameters | None = None
    # Added to the stretched time to depletion (s): the uptake fading as glycerol runs out
    # (Monod) takes a nearly fixed time, not a fraction of the time to go.
    depletion_delay_s: float = 0.0

    @classmethod
    def from_card_metrics(cls, metrics: dict[str, Any]) -> ForecastParameters | None:
        block = metrics.get("forecast") or {}
        try:
            params = cls(
                float(block["cum_co2_at_depletion"]),
                float(block["cum_co2_at_depletion_sd"]),
                float(block["od_per_mmol_co2"]),
                float(block.get("cer_max") or math.inf),
                float(block.get("time_stretch") or 1.0),
                float(block.get("depletion_error_fraction") or DEFAULT_DEPLETION_ERROR_FRACTION),
                float(block.get("depletion_error_sd_s") or DEFAULT_DEPLETION_ERROR_SD_S),
                DoParameters.from_block(block.get("do")),
            )
        except (KeyError, TypeError, ValueError):
            return None
        values = (params.cum_co2_at_depletion, params.od_per_mmol_co2)
        return params if all(math.isfinite(v) and v > 0 for v in values) else None


@dataclass(frozen=True)
class Forecast:
    """Made at ``made_at`` (window end); arrays on a regular grid of Unix seconds."""

    made_at: float
    times: np.ndarray
    od600: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    depletion_time: float
    depletion_earliest: float
    depletion_latest: float
    growth_rate: float
    method: str = "carbon-balance hybrid"
    # DO (% air saturation) on the same grid; None when the card has no DO model or the
    # window no DO reading. ``do`` is the expected DO, do_lower/do_upper its band.
    do: np.ndarray | None = None
    do_lower: np.ndarray | None = None
    do_upper: np.ndarray | None = None
    # True while the off-gas growth rate is gated at noise level (early batch): the projection
    # then runs on an assumed or carbon-balance rate and the depletion time is only indicative.
    provisional: bool = False


def _with_estimate(p: ForecastParameters, estimate: BatchEstimate) -> ForecastParameters:
    """The card's parameters with the batch's own budget: its OD per CO₂, no CER ceiling (a
    home number), the time stretch of this projection and the estimate's spread."""
    own_k = estimate.od_per_mmol_co2
    return replace(
        p,
        od_per_mmol_co2=own_k if math.isfinite(own_k) and own_k > 0 else p.od_per_mmol_co2,
        cum_co2_at_depletion=estimate.cum_co2_at_depletion,
        cum_co2_at_depletion_sd=estimate.cum_co2_at_depletion_sd,
        cer_max=math.inf,
        time_stretch=ONLINE_TIME_STRETCH,
        depletion_delay_s=ONLINE_DEPLETION_DELAY_S,
        depletion_error_fraction=ONLINE_DEPLETION_ERROR_FRACTION,
        depletion_error_sd_s=ONLINE_DEPLETION_ERROR_SD_S,
    )


def fit_parameters(
    cum_co2_at_depletion: list[float], od_per_mmol_co2: float, peak_cer: list[float]
) -> dict[str, Any]:
    values = np.asarray([v for v in cum_co2_at_depletion if math.isfinite(v)], dtype=float)
    peaks = np.asarray([v for v in peak_cer if math.isfinite(v)], dtype=float)
    return {
        "cer_max": float(np.median(peaks)) if peaks.size else None,
        "cum_co2_at_depletion": float(values.mean()) if values.size else math.nan,
        "cum_co2_at_depletion_sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "od_per_mmol_co2": od_per_mmol_co2,
        "batches": int(values.size),
    }


def _co2_to_come(tau_h: np.ndarray, cer: float, mu: float, cer_max: float) -> np.ndarray:
    """∫ min(CER·e^{μt}, CER_max) dt from 0 to τ (mmol/L)."""
    if cer >= cer_max:
        return cer * tau_h
    tau_cap = math.log(cer_max / cer) / mu if math.isfinite(cer_max) else math.inf
    exponential = cer * np.expm1(mu * np.minimum(tau_h, tau_cap)) / mu
    linear = cer_max * np.maximum(tau_h - tau_cap, 0.0) if math.isfinite(tau_cap) else 0.0
    total: np.ndarray = exponential + linear
    return total


def _time_to_depletion(cer: float, mu: float, remaining: float, cer_max: float) -> float:
    if cer >= cer_max:
        return remaining / cer
    capped_after = (cer_max - cer) / mu if math.isfinite(cer_max) else math.inf
    if remaining <= capped_after:
        return math.log1p(mu * remaining / cer) / mu
    return math.log(cer_max / cer) / mu + (remaining - capped_after) / cer_max


def _project(
    tau_h: np.ndarray,
    od_now: float,
    cer: float,
    mu: float,
    remaining: float,
    k: float,
    cer_max: float = math.inf,
) -> tuple[np.ndarray, float]:
    remaining = max(remaining, 0.0)
    to_depletion = _time_to_depletion(cer, mu, remaining, cer_max)
    growth = np.minimum(tau_h, to_depletion)
    od = od_now + k * _co2_to_come(growth, cer, mu, cer_max)
    return od, to_depletion


class Forecaster:
    def __init__(self, parameters: ForecastParameters) -> None:
        self.parameters = parameters

    def forecast(
        self,
        state: ProcessState,
        od_now: float,
        *,
        horizon_h: float = 30.0,
        step_s: float = 300.0,
        estimate: BatchEstimate | None = None,
    ) -> Forecast | None:
        """The rest of the batch from one window; None when the signal cannot carry it."""
        return self.forecast_values(
            now=state.end,
            od_now=od_now,
            cer=state.cer_smooth,
            cum_co2=state.cum_co2_mmol_per_l,
            mu_cer=state.mu_cer,
            mu_carbon=state.mu_carbon,
            depletion_time=state.depletion_time if state.depleted else math.nan,
            do_now=float(state.channel_mean[_DO]),
            stirrer_now=float(state.channel_mean[_STIRRER]),
            o2_flow_now=float(state.channel_mean[_O2_FLOW]),
            horizon_h=horizon_h,
            step_s=step_s,
            estimate=estimate,
        )

    def forecast_values(
        self,
        *,
        now: float,
        od_now: float,
        cer: float,
        cum_co2: float,
        mu_cer: float,
        mu_carbon: float,
        depletion_time: float = math.nan,
        do_now: float = math.nan,
        stirrer_now: float = math.nan,
        o2_flow_now: float = math.nan,
        horizon_h: float = 30.0,
        step_s: float = 300.0,
        estimate: BatchEstimate | None = None,
    ) -> Forecast | None:
        """Same as :meth:`forecast` from the plain numbers (feature-table rows).

        ``do_now`` (% sat), ``stirrer_now`` (rpm) and ``o2_flow_now`` (L/min) are the window
        means; without ``do_now`` (or a DO model in the card) the forecast has no DO.
        ``estimate`` (the batch's own carbon budget and growth rate,
        :mod:`~bptwin.twin.forecast_online`) replaces the card's C_end and the window's μ.
        """
        p = self.parameters
        provisional = not math.isfinite(mu_cer)
        if estimate is not None and math.isfinite(estimate.cum_co2_at_depletion):
            p = _with_estimate(p, estimate)
            if math.isfinite(estimate.growth_rate):
                mu_cer = estimate.growth_rate
        times = now + np.arange(0.0, horizon_h * 3600.0 + step_s, step_s)
        if math.isfinite(depletion_time):
            flat = np.full(times.shape, od_now)
            onset = depletion_time
            do = self._do_after_depletion(times, onset, do_now)
            return Forecast(
                now,
                times,
                flat,
                flat,
                flat,
                onset,
                onset,
                onset,
                0.0,
                do=do[0],
                do_lower=do[1],
                do_upper=do[2],
            )
        c_now = cum_co2
        if not (math.isfinite(cer) and cer > 0 and math.isfinite(c_now) and math.isfinite(od_now)):
            return None
        mu = mu_cer if math.isfinite(mu_cer) else mu_carbon
        if not (math.isfinite(mu) and mu >= MU_MIN):
            mu = MU_FALLBACK if not math.isfinite(mu) else MU_MIN
        stretch = p.time_stretch if p.time_stretch > 0 else 1.0
        tau_h = (times - now) / 3600.0 / stretch  # model time runs faster than the batch
        central, to_depletion = _project(
            tau_h, od_now, cer, mu, p.cum_co2_at_depletion - c_now, p.od_per_mmol_co2, p.cer_max
        )
        trajectories, depletions = [], []
        spread = Z95 * p.cum_co2_at_depletion_sd
        k = p.od_per_mmol_co2
        for c_end in (p.cum_co2_at_depletion - spread, p.cum_co2_at_depletion + spread):
            for factor in (1 - MU_SPREAD, 1 + MU_SPREAD):
                od, when = _project(tau_h, od_now, cer, mu * factor, c_end - c_now, k, p.cer_max)
                trajectories.append(od)
                depletions.append(when)
        stack = np.vstack([central, *trajectories])
        delay = p.depletion_delay_s
        depletion = now + to_depletion * 3600.0 * stretch + delay
        budget_sd_s = 0.0
        if estimate is not None and p is not self.parameters:
            # The batch's own C_end is uncertain too: its SD over the CER at depletion.
            cer_end = min(cer * math.exp(mu * to_depletion), p.cer_max)
            budget_sd_s = p.cum_co2_at_depletion_sd / cer_end * 3600.0 * stretch
        do = self._do_before_depletion(
            p,
            times,
            tau_h,
            now,
            depletion,
            cer,
            mu,
            (do_now, stirrer_now, o2_flow_now),
            budget_sd_s,
        )
        return Forecast(
            made_at=now,
            times=times,
            od600=central,
            lower=stack.min(axis=0),
            upper=stack.max(axis=0),
            depletion_time=depletion,
            depletion_earliest=now + min(depletions) * 3600.0 * stretch + delay,
            depletion_latest=now + max(depletions) * 3600.0 * stretch + delay,
            growth_rate=mu,
            method="carbon-balance hybrid, batch's own budget"
            if p is not self.parameters
            else "carbon-balance hybrid",
            do=do[0],
            do_lower=do[1],
            do_upper=do[2],
            provisional=provisional,
        )

    # -- DO ---------------------------------------------------------------------------------
    def _do_given_depletion(
        self, offsets_min: np.ndarray, growth: np.ndarray, dp: DoParameters
    ) -> np.ndarray:
        """DO for depletion times at ``offsets_min`` (rows) before the grid times (columns)."""
        around = dp.template_value(offsets_min)
        result = np.where(offsets_min < dp.template_start_min, growth, np.fmax(growth, around))
        return np.where(offsets_min > dp.template_end_min, dp.high_level, result)

    def _band(
        self, central: np.ndarray, low: np.ndarray, high: np.ndarray, dp: DoParameters
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ceiling = max(100.0, dp.high_level) + max(dp.noise_high, 0.0)
        return (
            np.clip(central, 0.0, ceiling),
            np.clip(low + min(dp.noise_low, 0.0), 0.0, ceiling),
            np.clip(high + max(dp.noise_high, 0.0), 0.0, ceiling),
        )

    def _do_after_depletion(
        self, times: np.ndarray, onset: float, do_now: float
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        dp = self.parameters.do
        if dp is None or not math.isfinite(do_now):
            return None, None, None
        growth = np.full(times.shape, dp.controlled_level)
        do = self._do_given_depletion((times - onset)[None, :] / 60.0, growth, dp)[0]
        return self._band(do, do, do, dp)

    def _do_before_depletion(
        self,
        p: ForecastParameters,
        times: np.ndarray,
        tau_h: np.ndarray,
        now: float,
        depletion: float,
        cer: float,
        mu: float,
        window: tuple[float, float, float],
        budget_sd_s: float = 0.0,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Expected DO and band: falling phase, cascade, rise at depletion, high level.

        ``window``: the DO (% sat), stirrer (rpm) and O₂ flow (L/min) now; ``budget_sd_s``
        the depletion-time SD from an uncertain carbon budget, added in quadrature.
        """
        do_now, stirrer_now, o2_flow_now = window
        dp = p.do
        if dp is None or not math.isfinite(do_now):
            return None, None, None
        cascade_on = (math.isfinite(stirrer_now) and stirrer_now > dp.stirrer_min_rpm + 25.0) or (
            math.isfinite(o2_flow_now) and o2_flow_now > 1e-3
        )
        if cascade_on:
            growth = np.full(times.shape, dp.controlled_level)
        else:
            deficit = 100.0 - do_now
            ratio = deficit / cer
            own = deficit >= DO_MIN_DEFICIT and 0.5 <= ratio / dp.deficit_per_cer <= 2.0
            slope = ratio if own else dp.deficit_per_cer
            # CER as it would grow without depletion: the template takes over around it.
            cer_path = np.minimum(cer * np.exp(mu * tau_h), p.cer_max)
            growth = np.maximum(100.0 - slope * cer_path, dp.controlled_level)
        sd = max(
            p.depletion_error_fraction * (depletion - now),
            p.depletion_error_sd_s,
            DEPLETION_SD_FLOOR_S,
        )
        sd = math.hypot(sd, budget_sd_s)
        offsets = (times[None, :] - (depletion + sd * _NORMAL_POINTS)[:, None]) / 60.0
        expected = self._do_given_depletion(offsets, growth, dp).mean(axis=0)
        band_offsets = (times[None, :] - (depletion + sd * _BAND_POINTS)[:, None]) / 60.0
        band = self._do_given_depletion(band_offsets, growth, dp)
        return self._band(expected, band.min(axis=0), band.max(axis=0), dp)


def fit_forecast_block(table: pd.DataFrame, od_per_mmol_co2: float) -> dict[str, Any]:
    """Every forecast number the card stores (metrics.forecast), from the training table."""
    from bptwin.twin.model import co2_at_depletion

    peaks = table.groupby("batch")["cer_smooth"].quantile(0.99).tolist()
    block = fit_parameters(co2_at_depletion(table), od_per_mmol_co2, peaks)
    parameters = ForecastParameters.from_card_metrics({"forecast": block})
    if parameters is not None:
        stretch, fraction, spread_s = fit_depletion_timing(parameters, table)
        block["time_stretch"] = stretch
        block["depletion_error_fraction"] = fraction
        block["depletion_error_sd_s"] = spread_s
    block["do"] = fit_do_parameters(table)
    return block


CALIBRATION_ORIGINS_H = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)


def fit_time_stretch(parameters: ForecastParameters, table: pd.DataFrame) -> float:
    """Least-squares factor (through the origin) between true and projected time to depletion.

    The projection ignores the slow-down of growth as glycerol runs low (Monod), so it ends
    batches early by a roughly constant fraction of the time still to go; this factor, learnt
    on the training batches' windows at fixed hours, corrects that. 1.0 when nothing to learn.
    """
    return fit_depletion_timing(parameters, table)[0]


def fit_depletion_timing(
    parameters: ForecastParameters, table: pd.DataFrame
) -> tuple[float, float, float]:
    """(time stretch, SD of the stretched forecast's error as a fraction of the time to go,
    SD of that error in seconds), both SDs robust (MAD-based).

    The two SDs give the spread of the depletion time that the DO forecast averages over.
    """
    forecaster = Forecaster(parameters)
    predicted, actual = [], []
    for _, batch in table.groupby("batch"):
        hours = batch["time_since_inoculation_h"].to_numpy(float)
        depletion = float(batch["depletion_true"].iloc[0])
        if not math.isfinite(depletion):
            continue
        for origin in CALIBRATION_ORIGINS_H:
            at = int(np.searchsorted(hours, origin))
            if at >= len(batch):
                continue
            row = batch.iloc[at]
            now = float(row["window_end"])
            if now >= depletion:
                continue
            made = forecaster.forecast_values(
                now=now,
                od_now=1.0,  # the timing does not depend on the biomass level
                cer=float(row["cer_smooth"]),
                cum_co2=float(row["cum_co2_mmol_per_l"]),
                mu_cer=float(row["mu_cer"]),
                mu_carbon=float(row["mu_carbon"]),
            )
            if made is not None:
                predicted.append(made.depletion_time - now)
                actual.append(depletion - now)
    if not predicted:
        return 1.0, DEFAULT_DEPLETION_ERROR_FRACTION, DEFAULT_DEPLETION_ERROR_SD_S
    x, y = np.asarray(predicted), np.asarray(actual)
    stretch = float(np.dot(x, y) / np.dot(x, x))
    error = y - stretch * x
    # Robust (MAD) spreads: a batch outside the SOP (batch 1 runs at fixed stirring and is
    # O2-limited for hours) must not set the uncertainty of every nominal batch.
    fraction = float(MAD_TO_SD * np.median(np.abs(error / y)))
    sd_s = float(MAD_TO_SD * np.median(np.abs(error)))
    return stretch, fraction, sd_s


DO_TEMPLATE_START_MIN = -45.0
DO_TEMPLATE_END_MIN = 30.0
DO_TEMPLATE_STEP_MIN = 2.5
CASCADE_MARGIN_RPM = 25.0


def fit_do_parameters(table: pd.DataFrame) -> dict[str, Any] | None:
    """The DO model's numbers from the training batches' windows (measured DO, not truth).

    Deficit per CER from windows at minimum stirring without O₂ with a 10–60 % deficit well
    before depletion; the controlled level and its spread from the windows where the cascade
    acts; the template around depletion and the level after it from the batches whose
    cascade acted (a batch run at fixed stirring, like batch 1, falls to 0 % instead).
    None when the table has too little to learn from.
    """
    needed = {"do_mean", "stirrer_speed_mean", "o2_flow_mean", "cer_smooth", "depletion_true"}
    if not needed <= set(table.columns):
        return None
    early = table["time_since_inoculation_h"].to_numpy(float) < 2.0
    stirrer_all = table["stirrer_speed_mean"].to_numpy(float)
    finite_early = stirrer_all[early & np.isfinite(stirrer_all)]
    if not finite_early.size:
        return None
    stirrer_min = float(np.median(finite_early))
    offsets_grid = np.arange(
        DO_TEMPLATE_START_MIN, DO_TEMPLATE_END_MIN + DO_TEMPLATE_STEP_MIN / 2, DO_TEMPLATE_STEP_MIN
    )
    ratios: list[np.ndarray] = []
    controlled: list[np.ndarray] = []
    high: list[np.ndarray] = []
    templates: list[list[float]] = []
    for _, batch in table.groupby("batch"):
        depletion = float(batch["depletion_true"].iloc[0])
        ends = batch["window_end"].to_numpy(float)
        if not math.isfinite(depletion) or depletion > ends[-1]:
            continue
        do = batch["do_mean"].to_numpy(float)
        stirrer = batch["stirrer_speed_mean"].to_numpy(float)
        o2 = np.nan_to_num(batch["o2_flow_mean"].to_numpy(float), nan=0.0)
        cer = batch["cer_smooth"].to_numpy(float)
        offset = (ends - depletion) / 60.0
        before = offset < DO_TEMPLATE_START_MIN
        at_min = (stirrer < stirrer_min + 5.0) & (o2 < 1e-3)
        deficit = 100.0 - do
        usable = before & at_min & (deficit >= 10.0) & (deficit <= 60.0) & (cer > 0)
        ratios.append(deficit[usable] / cer[usable])
        cascade = before & ((stirrer > stirrer_min + CASCADE_MARGIN_RPM) | (o2 > 1e-3))
        if not cascade.any():
            continue
        controlled.append(do[cascade & np.isfinite(do)])
        high.append(do[(offset > DO_TEMPLATE_END_MIN) & np.isfinite(do)])
        half = DO_TEMPLATE_STEP_MIN / 2
        row = []
        for centre in offsets_grid:
            chosen = do[(offset > centre - half) & (offset <= centre + half)]
            chosen = chosen[np.isfinite(chosen)]
            row.append(float(chosen.mean()) if chosen.size else math.nan)
        templates.append(row)
    pooled_ratios = np.concatenate(ratios) if ratios else np.empty(0)
    pooled_controlled = np.concatenate(controlled) if controlled else np.empty(0)
    pooled_high = np.concatenate(high) if high else np.empty(0)
    if not (pooled_ratios.size and pooled_controlled.size and pooled_high.size):
        return None
    with np.errstate(all="ignore"):
        template = np.nanmedian(np.asarray(templates), axis=0)
    known = np.isfinite(template)
    if known.sum() < 2:
        return None
    template = np.interp(offsets_grid, offsets_grid[known], template[known])
    level = float(np.median(pooled_controlled))
    return {
        "method": "deficit ∝ CER at minimum stirring; cascade level; template at depletion",
        "deficit_per_cer": float(np.median(pooled_ratios)),
        "controlled_level": level,
        "high_level": float(np.median(pooled_high)),
        "stirrer_min_rpm": stirrer_min,
        "template_start_min": DO_TEMPLATE_START_MIN,
        "template_step_min": DO_TEMPLATE_STEP_MIN,
        "template": [round(float(v), 2) for v in template],
        "noise_low": float(np.quantile(pooled_controlled, 0.05)) - level,
        "noise_high": float(np.quantile(pooled_controlled, 0.95)) - level,
        "batches": len(templates),
    }


# -- comparison: a pure LightGBM forecast of the time to depletion ---------------------------
def lightgbm_time_to_depletion(
    train: pd.DataFrame, test: pd.DataFrame, *, seed: int = 42, threads: int = 2
) -> np.ndarray:
    """Hours to depletion predicted by LightGBM from the window's features alone.

    The data-driven alternative to the hybrid: trained on the training batches' windows before
    their true depletion, fixed moderate parameters. Used by :func:`compare` for docs/model.md.
    """
    import lightgbm

    from bptwin.twin.features import FEATURE_NAMES

    names = list(FEATURE_NAMES)
    before = train["window_end"] < train["depletion_true"]
    rows = train.loc[before]
    target = (rows["depletion_true"] - rows["window_end"]).to_numpy(float) / 3600.0
    params = {
        "objective": "regression",
        "verbosity": -1,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "seed": seed,
        "deterministic": True,
        "num_threads": threads,
    }
    data = lightgbm.Dataset(rows[names].to_numpy(float), target, feature_name=names)
    booster = lightgbm.train(params, data, num_boost_round=300)
    # Booster.predict is annotated with every output kind (sparse contributions included);
    # a plain regression on a dense matrix gives one float per row.
    hours: np.ndarray = np.asarray(
        booster.predict(test[names].to_numpy(float), num_threads=threads), dtype=float
    )
    return hours


def _parameters(block: dict[str, Any]) -> ForecastParameters:
    parameters = ForecastParameters.from_card_metrics({"forecast": block})
    if parameters is None:
        raise ValueError("the training batches do not give usable forecast parameters")
    return parameters


def compare(dataset: str, holdout: tuple[int, ...] = (16, 17, 18)) -> pd.DataFrame:
    """Depletion-time errors (min) of the hybrid and of pure LightGBM at fixed hours."""
    from bptwin.twin.dataset import read_manifest
    from bptwin.twin.labels import dataset_table
    from bptwin.twin.model import carbon_balance_baseline
    from bptwin.twin.validation_forecast import FORECAST_ORIGINS_H

    numbers = [r.number for r in read_manifest(dataset).batches]
    train_batches = [n for n in numbers if n not in holdout]
    train = dataset_table(dataset, train_batches, "samples")
    test = dataset_table(dataset, list(holdout), "truth")
    _, k = carbon_balance_baseline(train, train.iloc[:0])
    block = fit_forecast_block(train, k)
    hybrid = Forecaster(_parameters(block))
    raw = Forecaster(_parameters({**block, "time_stretch": 1.0}))
    pure = lightgbm_time_to_depletion(train, test)
    rows = []
    for number, batch in test.groupby("batch"):
        hours = batch["time_since_inoculation_h"].to_numpy(float)
        actual = float(batch["depletion_true"].iloc[0])
        for origin in FORECAST_ORIGINS_H:
            at = int(np.searchsorted(hours, origin))
            row = batch.iloc[at]
            made = hybrid.forecast_values(
                now=float(row["window_end"]),
                od_now=float(row["label_od600"]),
                cer=float(row["cer_smooth"]),
                cum_co2=float(row["cum_co2_mmol_per_l"]),
                mu_cer=float(row["mu_cer"]),
                mu_carbon=float(row["mu_carbon"]),
            )
            unstretched = raw.forecast_values(
                now=float(row["window_end"]),
                od_now=1.0,
                cer=float(row["cer_smooth"]),
                cum_co2=float(row["cum_co2_mmol_per_l"]),
                mu_cer=float(row["mu_cer"]),
                mu_carbon=float(row["mu_carbon"]),
            )
            pure_time = float(row["window_end"]) + 3600.0 * float(pure[batch.index[at]])
            rows.append(
                {
                    "batch": int(number),
                    "origin_h": origin,
                    "hybrid_uncorrected_error_min": (unstretched.depletion_time - actual) / 60.0
                    if unstretched
                    else math.nan,
                    "hybrid_error_min": (made.depletion_time - actual) / 60.0 if made else math.nan,
                    "lightgbm_error_min": (pure_time - actual) / 60.0,
                }
            )
    return pd.DataFrame(rows)


DO_COMPARE_ISSUE_EVERY = 60  # windows (30 min), as in the validation
DO_COMPARE_POINT_EVERY = 10  # score every 10th later window (5 min)


def lightgbm_do_model(train: pd.DataFrame, *, seed: int = 42, threads: int = 2) -> lightgbm.Booster:
    """A pure LightGBM DO forecast: DO at now + h from the window's features and h.

    Trained on the training batches: every 30 min window paired with the measured DO at
    every 5 min later window to the end of its batch (h in hours as an extra feature).
    """
    import lightgbm

    from bptwin.twin.features import FEATURE_NAMES

    names = [*FEATURE_NAMES, "horizon_h"]
    matrices, targets = [], []
    for _, batch in train.groupby("batch"):
        features = batch[list(FEATURE_NAMES)].to_numpy(float)
        ends = batch["window_end"].to_numpy(float)
        do = batch["do_mean"].to_numpy(float)
        for at in range(0, len(batch), DO_COMPARE_ISSUE_EVERY):
            later = np.arange(at, len(batch), DO_COMPARE_POINT_EVERY)
            later = later[np.isfinite(do[later])]
            horizon = (ends[later] - ends[at]) / 3600.0
            matrices.append(
                np.column_stack([np.repeat(features[at : at + 1], len(later), 0), horizon])
            )
            targets.append(do[later])
    params = {
        "objective": "regression",
        "verbosity": -1,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 50,
        "seed": seed,
        "deterministic": True,
        "num_threads": threads,
    }
    data = lightgbm.Dataset(np.vstack(matrices), np.concatenate(targets), feature_name=names)
    return lightgbm.train(params, data, num_boost_round=400)


def compare_do(dataset: str, holdout: tuple[int, ...] = (16, 17, 18)) -> pd.DataFrame:
    """DO RMSE (% sat) to the end of the batch of the hybrid and of pure LightGBM.

    Same protocol as the validation (forecasts every 30 min from the first window with an
    off-gas growth rate until depletion is detected, reference: the simulator's truth), on
    the same (issue, later window) pairs, every 5 min, for both.
    """
    from bptwin.twin.dataset import read_manifest
    from bptwin.twin.features import FEATURE_NAMES
    from bptwin.twin.labels import dataset_table
    from bptwin.twin.model import carbon_balance_baseline

    numbers = [r.number for r in read_manifest(dataset).batches]
    train_batches = [n for n in numbers if n not in holdout]
    train = dataset_table(dataset, train_batches, "samples")
    test = dataset_table(dataset, list(holdout), "truth")
    _, k = carbon_balance_baseline(train, train.iloc[:0])
    hybrid = Forecaster(_parameters(fit_forecast_block(train, k)))
    booster = lightgbm_do_model(train)
    rows = []
    for number, batch in test.groupby("batch"):
        ends = batch["window_end"].to_numpy(float)
        truth = batch["truth_do"].to_numpy(float)
        features = batch[list(FEATURE_NAMES)].to_numpy(float)
        errors: dict[str, list[np.ndarray]] = {"hybrid": [], "lightgbm": [], "persistence": []}
        for at in range(0, len(batch), DO_COMPARE_ISSUE_EVERY):
            row = batch.iloc[at]
            if bool(row["depleted"]):
                break
            if not math.isfinite(float(row["mu_cer"])):
                continue
            made = hybrid.forecast_values(
                now=float(row["window_end"]),
                od_now=float(row["label_od600"]),
                cer=float(row["cer_smooth"]),
                cum_co2=float(row["cum_co2_mmol_per_l"]),
                mu_cer=float(row["mu_cer"]),
                mu_carbon=float(row["mu_carbon"]),
                do_now=float(row["do_mean"]),
                stirrer_now=float(row["stirrer_speed_mean"]),
                o2_flow_now=float(row["o2_flow_mean"]),
            )
            if made is None or made.do is None:
                continue
            later = np.arange(at, len(batch), DO_COMPARE_POINT_EVERY)
            horizon = (ends[later] - ends[at]) / 3600.0
            matrix = np.column_stack([np.repeat(features[at : at + 1], len(later), 0), horizon])
            errors["hybrid"].append(np.interp(ends[later], made.times, made.do) - truth[later])
            errors["lightgbm"].append(booster.predict(matrix, num_threads=2) - truth[later])
            errors["persistence"].append(float(row["do_mean"]) - truth[later])
        rows.append(
            {"batch": int(number)}
            | {
                f"{name}_rmse": float(np.sqrt(np.mean(np.concatenate(values) ** 2)))
                for name, values in errors.items()
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":  # python -m bptwin.twin.forecast DATASET
    import sys

    table = compare(sys.argv[1])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print("mean |error| (min):")
    errors = table[["hybrid_uncorrected_error_min", "hybrid_error_min", "lightgbm_error_min"]]
    print(errors.abs().mean().round(1).to_string())
    print("worst |error| (min):")
    print(errors.abs().max().round(1).to_string())
    print("DO RMSE to the end of the batch (% sat), hybrid vs pure LightGBM vs persistence:")
    print(compare_do(sys.argv[1]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
