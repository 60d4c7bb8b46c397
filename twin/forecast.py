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

The band takes the extremes over C_end ± 1.96 SD and μ ± 15 %, the two uncertain inputs. A pure
data-driven forecast has no mechanism to extrapolate a batch's future from its present; this
one stays on the carbon budget by construction. DO is not forecast (see docs/model.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.features import ProcessState

MU_FALLBACK = 0.2  # h⁻¹, DOMAIN.md μmax 0.18–0.30
MU_MIN = 0.02
MU_SPREAD = 0.15
Z95 = 1.96


@dataclass(frozen=True)
class ForecastParameters:
    """Learnt from the training batches; stored in the model card under metrics.forecast."""

    cum_co2_at_depletion: float  # mmol/L
    cum_co2_at_depletion_sd: float
    od_per_mmol_co2: float
    cer_max: float = math.inf  # mmol/L/h, the O2-transfer ceiling

    @classmethod
    def from_card_metrics(cls, metrics: dict) -> ForecastParameters | None:
        block = metrics.get("forecast") or {}
        try:
            params = cls(
                float(block["cum_co2_at_depletion"]),
                float(block["cum_co2_at_depletion_sd"]),
                float(block["od_per_mmol_co2"]),
                float(block.get("cer_max") or math.inf),
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


def fit_parameters(
    cum_co2_at_depletion: list[float], od_per_mmol_co2: float, peak_cer: list[float]
) -> dict:
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
    return exponential + linear


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
        self, state: ProcessState, od_now: float, *, horizon_h: float = 30.0, step_s: float = 300.0
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
            horizon_h=horizon_h,
            step_s=step_s,
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
        horizon_h: float = 30.0,
        step_s: float = 300.0,
    ) -> Forecast | None:
        """Same as :meth:`forecast` from the plain numbers (feature-table rows)."""
        p = self.parameters
        times = now + np.arange(0.0, horizon_h * 3600.0 + step_s, step_s)
        if math.isfinite(depletion_time):
            flat = np.full(times.shape, od_now)
            onset = depletion_time
            return Forecast(now, times, flat, flat, flat, onset, onset, onset, 0.0)
        c_now = cum_co2
        if not (math.isfinite(cer) and cer > 0 and math.isfinite(c_now) and math.isfinite(od_now)):
            return None
        mu = mu_cer if math.isfinite(mu_cer) else mu_carbon
        if not (math.isfinite(mu) and mu >= MU_MIN):
            mu = MU_FALLBACK if not math.isfinite(mu) else MU_MIN
        tau_h = (times - now) / 3600.0
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
        return Forecast(
            made_at=now,
            times=times,
            od600=central,
            lower=stack.min(axis=0),
            upper=stack.max(axis=0),
            depletion_time=now + to_depletion * 3600.0,
            depletion_earliest=now + min(depletions) * 3600.0,
            depletion_latest=now + max(depletions) * 3600.0,
            growth_rate=mu,
        )
