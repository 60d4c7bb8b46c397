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
import pandas as pd

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
    time_stretch: float = 1.0  # learnt correction: the batch runs this much slower

    @classmethod
    def from_card_metrics(cls, metrics: dict) -> ForecastParameters | None:
        block = metrics.get("forecast") or {}
        try:
            params = cls(
                float(block["cum_co2_at_depletion"]),
                float(block["cum_co2_at_depletion_sd"]),
                float(block["od_per_mmol_co2"]),
                float(block.get("cer_max") or math.inf),
                float(block.get("time_stretch") or 1.0),
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
        return Forecast(
            made_at=now,
            times=times,
            od600=central,
            lower=stack.min(axis=0),
            upper=stack.max(axis=0),
            depletion_time=now + to_depletion * 3600.0 * stretch,
            depletion_earliest=now + min(depletions) * 3600.0 * stretch,
            depletion_latest=now + max(depletions) * 3600.0 * stretch,
            growth_rate=mu,
        )


CALIBRATION_ORIGINS_H = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)


def fit_time_stretch(parameters: ForecastParameters, table: pd.DataFrame) -> float:
    """Least-squares factor (through the origin) between true and projected time to depletion.

    The projection ignores the slow-down of growth as glycerol runs low (Monod), so it ends
    batches early by a roughly constant fraction of the time still to go; this factor, learnt
    on the training batches' windows at fixed hours, corrects that. 1.0 when nothing to learn.
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
        return 1.0
    x, y = np.asarray(predicted), np.asarray(actual)
    return float(np.dot(x, y) / np.dot(x, x))


# -- comparison: a pure LightGBM forecast of the time to depletion ---------------------------
def lightgbm_time_to_depletion(
    train: pd.DataFrame, test: pd.DataFrame, *, seed: int = 42, threads: int = 2
) -> np.ndarray:
    """Hours to depletion predicted by LightGBM from the window's features alone.

    The data-driven alternative to the hybrid: trained on the training batches' windows before
    their true depletion, fixed moderate parameters. Used by :func:`compare` for docs/model.md.
    """
    import lightgbm

    from twin.features import FEATURE_NAMES

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
    return booster.predict(test[names].to_numpy(float), num_threads=threads)


def compare(dataset: str, holdout: tuple[int, ...] = (16, 17, 18)) -> pd.DataFrame:
    """Depletion-time errors (min) of the hybrid and of pure LightGBM at fixed hours."""
    from twin.dataset import read_manifest
    from twin.labels import dataset_table
    from twin.model import carbon_balance_baseline, co2_at_depletion
    from twin.validation import FORECAST_ORIGINS_H

    numbers = [r.number for r in read_manifest(dataset).batches]
    train_batches = [n for n in numbers if n not in holdout]
    train = dataset_table(dataset, train_batches, "samples")
    test = dataset_table(dataset, list(holdout), "truth")
    _, k = carbon_balance_baseline(train, train.iloc[:0])
    peaks = train.groupby("batch")["cer_smooth"].quantile(0.99).tolist()
    block = fit_parameters(co2_at_depletion(train), k, peaks)
    parameters = ForecastParameters.from_card_metrics({"forecast": block})
    assert parameters is not None
    raw = Forecaster(parameters)
    block["time_stretch"] = fit_time_stretch(parameters, train)
    hybrid = Forecaster(ForecastParameters.from_card_metrics({"forecast": block}))  # type: ignore[arg-type]
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


if __name__ == "__main__":  # python -m twin.forecast DATASET
    import sys

    table = compare(sys.argv[1])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print("mean |error| (min):")
    errors = table[["hybrid_uncorrected_error_min", "hybrid_error_min", "lightgbm_error_min"]]
    print(errors.abs().mean().round(1).to_string())
    print("worst |error| (min):")
    print(errors.abs().max().round(1).to_string())
