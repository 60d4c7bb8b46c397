"""Forecast scoring for ``bptwin validate``: the DO forecast to the end of the batch and the
fixed-hour forecasts (depletion error, OD MRE, DO RMSE, bands), each made as the live worker
would from the window then and, when the dataset has them, the batch's own samples taken by
then (``twin/forecast_online.py``). Protocol: docs/model.md, "Validation"."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bptwin.twin.labels import BATCH_COLUMN, LABEL_COLUMN, TRUTH_DO_COLUMN
from bptwin.twin.metrics import mre, rmse
from bptwin.twin.registry import ModelArtifact

if TYPE_CHECKING:
    from bptwin.twin.forecast import Forecast, Forecaster
    from bptwin.twin.forecast_online import BatchEstimate

FORECAST_ORIGINS_H = (6.0, 10.0, 14.0, 18.0)
DO_ISSUE_EVERY = 60  # windows (30 min) between two scored DO forecasts
DO_HORIZONS_MIN = (30, 60, 120)


def first_finite(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else None


_ROW_INPUTS = (
    "window_end",
    "od600_pred",
    "cer_smooth",
    "cum_co2_mmol_per_l",
    "mu_cer",
    "mu_carbon",
    "depletion_time",
    "depleted",
    "do_mean",
    "stirrer_speed_mean",
    "o2_flow_mean",
)


def card_forecaster(artifact: ModelArtifact) -> Forecaster | None:
    from bptwin.twin.forecast import Forecaster, ForecastParameters

    parameters = ForecastParameters.from_card_metrics(artifact.card.metrics)
    return Forecaster(parameters) if parameters is not None else None


Samples = dict[int, list[tuple[float, float, float, float]]]


def forecast_samples(directory: Path, batches: list[int]) -> Samples:
    """(time, DCW g/L, glycerol g/L, OD600) of each batch's offline samples (NaN: not measured)."""
    from bptwin.twin.dataset import read_batch, read_manifest
    from bptwin.twin.forecast_online import sample_rows

    records = {r.number: r for r in read_manifest(directory).batches}
    return {
        number: sample_rows(read_batch(directory, records[number], verify=False).samples)
        for number in batches
        if number in records
    }


def batch_budget(
    forecaster: Forecaster, batch: pd.DataFrame, samples: Samples | None
) -> Callable[[int], BatchEstimate | None]:
    """The batch's own carbon budget at window ``at`` (asked in increasing ``at``), learnt
    from the windows up to it and the samples taken by its end; None without samples."""
    from bptwin.twin.forecast_online import OnlineBudget

    taken = (samples or {}).get(int(batch[BATCH_COLUMN].iloc[0]), [])
    if not taken:
        return lambda at: None
    p = forecaster.parameters
    budget = OnlineBudget(p.cum_co2_at_depletion, p.od_per_mmol_co2)
    for sample in taken:
        budget.add_sample(*sample)
    inputs = row_inputs(batch)
    fed = 0

    def at_window(at: int) -> BatchEstimate | None:
        nonlocal fed
        for row in range(fed, at + 1):
            budget.add_window(
                inputs["window_end"][row],
                inputs["cer_smooth"][row],
                inputs["cum_co2_mmol_per_l"][row],
                inputs["od600_pred"][row],
            )
        fed = max(fed, at + 1)
        return budget.estimate(inputs["window_end"][at])

    return at_window


def forecast_at(
    forecaster: Forecaster,
    inputs: dict[str, np.ndarray],
    at: int,
    estimate: BatchEstimate | None = None,
) -> Forecast | None:
    """The forecast the live worker makes at window ``at`` (same inputs as the ProcessState)."""
    value = {name: float(column[at]) for name, column in inputs.items()}
    return forecaster.forecast_values(
        estimate=estimate,
        now=value["window_end"],
        od_now=value["od600_pred"],
        cer=value["cer_smooth"],
        cum_co2=value["cum_co2_mmol_per_l"],
        mu_cer=value["mu_cer"],
        mu_carbon=value["mu_carbon"],
        depletion_time=value["depletion_time"] if value["depleted"] else math.nan,
        do_now=value["do_mean"],
        stirrer_now=value["stirrer_speed_mean"],
        o2_flow_now=value["o2_flow_mean"],
    )


def row_inputs(batch: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        name: batch[name].to_numpy(float) if name in batch else np.full(len(batch), np.nan)
        for name in _ROW_INPUTS
    }


def do_reference_column(table: pd.DataFrame, label: str) -> str:
    truth = table.get(TRUTH_DO_COLUMN)
    if label == "truth" and truth is not None and np.isfinite(truth.to_numpy(float)).any():
        return TRUTH_DO_COLUMN
    return "do_mean"


def do_forecast_scores(
    artifact: ModelArtifact, table: pd.DataFrame, reference: str, samples: Samples | None = None
) -> tuple[list[dict[str, Any]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """DO forecast scores per batch, and the (reference, predicted) pairs of the verdict."""
    forecaster = card_forecaster(artifact)
    if forecaster is None or forecaster.parameters.do is None or reference not in table:
        return [], {}
    rows: list[dict[str, Any]] = []
    pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for number, batch in table.groupby(BATCH_COLUMN):
        inputs = row_inputs(batch)
        budget = batch_budget(forecaster, batch, samples)
        ends, actual = inputs["window_end"], batch[reference].to_numpy(float)
        gated_true, gated_pred, all_errors, inside, persistence = [], [], [], [], []
        horizon_errors: dict[int, list[float]] = {h: [] for h in DO_HORIZONS_MIN}
        issued = 0
        for at in range(0, len(batch), DO_ISSUE_EVERY):
            if inputs["depleted"][at] > 0:
                break
            made = forecast_at(forecaster, inputs, at, budget(at))
            if made is None or made.do is None or made.do_lower is None or made.do_upper is None:
                continue
            later = slice(at, None)
            predicted = np.interp(ends[later], made.times, made.do)
            known = np.isfinite(actual[later])
            all_errors.append((predicted - actual[later])[known])
            if not math.isfinite(inputs["mu_cer"][at]):
                continue  # before the off-gas signal carries a growth rate
            issued += 1
            gated_true.append(actual[later][known])
            gated_pred.append(predicted[known])
            # Baseline: the DO stays where it is now (what an operator assumes without a model).
            persistence.append(actual[later][known] - inputs["do_mean"][at])
            low = np.interp(ends[later], made.times, made.do_lower)[known]
            high = np.interp(ends[later], made.times, made.do_upper)[known]
            inside.append((actual[later][known] >= low) & (actual[later][known] <= high))
            for minutes in DO_HORIZONS_MIN:
                target = at + minutes * 2  # 30 s windows
                if target < len(batch) and math.isfinite(actual[target]):
                    value = float(np.interp(ends[target], made.times, made.do))
                    horizon_errors[minutes].append(value - actual[target])
        if not issued:
            continue
        do_true, do_pred = np.concatenate(gated_true), np.concatenate(gated_pred)
        pairs[int(number)] = (do_true, do_pred)
        everything = np.concatenate(all_errors)
        rows.append(
            {
                "batch": int(number),
                "forecasts": issued,
                "first_issue_h": float(
                    batch["time_since_inoculation_h"].to_numpy(float)[
                        int(np.argmax(np.isfinite(inputs["mu_cer"])))
                    ]
                ),
                "rmse_to_end": rmse(do_true, do_pred),
                "rmse_to_end_from_start": float(np.sqrt(np.mean(everything**2))),
                "persistence_rmse_to_end": float(
                    np.sqrt(np.nanmean(np.concatenate(persistence) ** 2))
                ),
                "band_coverage": float(np.concatenate(inside).mean()),
                "rmse_at_horizon_min": {
                    str(m): float(np.sqrt(np.mean(np.square(v)))) if v else math.nan
                    for m, v in horizon_errors.items()
                },
            }
        )
    return rows, pairs


def forecast_scores(
    artifact: ModelArtifact,
    table: pd.DataFrame,
    do_column: str = "do_mean",
    samples: Samples | None = None,
) -> list[dict[str, Any]]:
    """Forecasts made at fixed hours: depletion error, OD MRE and DO RMSE to the end, band."""
    forecaster = card_forecaster(artifact)
    if forecaster is None:
        return []
    rows = []
    for number, batch in table.groupby(BATCH_COLUMN):
        hours = batch["time_since_inoculation_h"].to_numpy(float)
        ends = batch["window_end"].to_numpy(float)
        truth = batch[LABEL_COLUMN].to_numpy(float)
        do_actual = batch[do_column].to_numpy(float) if do_column in batch else None
        actual = first_finite(batch["depletion_true"].to_numpy(float))
        inputs = row_inputs(batch)
        inputs["depleted"] = np.zeros(len(batch))  # score the projection, as before
        budget = batch_budget(forecaster, batch, samples)
        for origin in FORECAST_ORIGINS_H:
            at = int(np.searchsorted(hours, origin))
            if at >= len(batch) or (actual is not None and ends[at] >= actual):
                continue
            made = forecast_at(forecaster, inputs, at, budget(at))
            if made is None:
                continue
            do_rmse = math.nan
            if made.do is not None and do_actual is not None:
                do_rmse = rmse(do_actual[at:], np.interp(ends[at:], made.times, made.do))
            later = slice(at, None)
            predicted = np.interp(ends[later], made.times, made.od600)
            lower = np.interp(ends[later], made.times, made.lower)
            upper = np.interp(ends[later], made.times, made.upper)
            inside = (truth[later] >= lower) & (truth[later] <= upper)
            error = (made.depletion_time - actual) / 60.0 if actual is not None else math.nan
            rows.append(
                {
                    "batch": int(number),
                    "origin_h": origin,
                    "depletion_error_min": error,
                    "depletion_band_min": [
                        (made.depletion_earliest - made.depletion_time) / 60.0,
                        (made.depletion_latest - made.depletion_time) / 60.0,
                    ],
                    "depletion_in_band": bool(
                        actual is not None
                        and made.depletion_earliest <= actual <= made.depletion_latest
                    ),
                    "od_mre_to_end": mre(truth[later], predicted),
                    "od_band_coverage": float(inside.mean()),
                    "do_rmse_to_end": do_rmse,
                }
            )
    return rows
