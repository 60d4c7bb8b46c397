"""The carbon-balance hybrid forecast: depletion time, OD trajectory, band."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.forecast import Forecaster, ForecastParameters, fit_parameters

PARAMS = ForecastParameters(
    cum_co2_at_depletion=400.0, cum_co2_at_depletion_sd=20.0, od_per_mmol_co2=0.15
)


def _forecast(params: ForecastParameters = PARAMS, **changes: float):
    values = {
        "now": 1000.0,
        "od_now": 10.0,
        "cer": 20.0,
        "cum_co2": 100.0,
        "mu_cer": 0.2,
        "mu_carbon": math.nan,
    }
    values.update(changes)
    return Forecaster(params).forecast_values(**values)


def test_depletion_time_closes_the_carbon_budget() -> None:
    made = _forecast()
    tau_h = (made.depletion_time - 1000.0) / 3600.0
    # CO2 still to come with CER growing at mu: CER (e^{mu tau} - 1) / mu = 300 mmol/L.
    assert 20.0 * math.expm1(0.2 * tau_h) / 0.2 == pytest.approx(300.0)
    assert made.od600[-1] == pytest.approx(10.0 + 0.15 * 300.0)
    assert made.depletion_earliest < made.depletion_time < made.depletion_latest
    assert np.all(made.lower <= made.od600) and np.all(made.od600 <= made.upper)
    assert np.all(np.diff(made.od600) >= 0)


def test_oxygen_ceiling_delays_depletion() -> None:
    capped = ForecastParameters(400.0, 20.0, 0.15, cer_max=40.0)
    free, limited = _forecast(), _forecast(capped)
    assert limited.depletion_time > free.depletion_time
    assert limited.od600[-1] == pytest.approx(free.od600[-1])


def test_depleted_batch_forecasts_a_flat_line() -> None:
    made = _forecast(depletion_time=900.0)
    assert made.depletion_time == 900.0
    assert np.all(made.od600 == 10.0)


def test_no_forecast_without_off_gas() -> None:
    assert _forecast(cer=math.nan) is None


def test_parameters_from_training_and_card() -> None:
    block = fit_parameters([390.0, 410.0, math.nan], 0.15, [80.0, 90.0, 100.0])
    assert block["cum_co2_at_depletion"] == pytest.approx(400.0)
    assert block["cer_max"] == pytest.approx(90.0)
    params = ForecastParameters.from_card_metrics({"forecast": block})
    assert params is not None and params.cer_max == pytest.approx(90.0)
    assert ForecastParameters.from_card_metrics({}) is None
    assert ForecastParameters.from_card_metrics({"forecast": fit_parameters([], 0.1, [])}) is None


def test_time_stretch_slows_the_projection_and_is_learnt_from_batches() -> None:
    import pandas as pd

    from twin.forecast import fit_time_stretch

    base, slow = _forecast(), _forecast(ForecastParameters(400.0, 20.0, 0.15, time_stretch=1.1))
    assert (slow.depletion_time - 1000.0) == pytest.approx(1.1 * (base.depletion_time - 1000.0))
    assert slow.od600[-1] == pytest.approx(base.od600[-1])
    # A batch that really ends 10 % later than projected (one window at 4 h) teaches 1.1.
    tau = base.depletion_time - 1000.0
    table = pd.DataFrame(
        {
            "batch": [1],
            "time_since_inoculation_h": [4.0],
            "window_end": [1000.0],
            "depletion_true": [1000.0 + 1.1 * tau],
            "cer_smooth": [20.0],
            "cum_co2_mmol_per_l": [100.0],
            "mu_cer": [0.2],
            "mu_carbon": [np.nan],
        }
    )
    assert fit_time_stretch(PARAMS, table) == pytest.approx(1.1)
