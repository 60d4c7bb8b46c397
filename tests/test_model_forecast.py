"""The carbon-balance hybrid forecast: depletion time, OD trajectory, band."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptwin.twin.forecast import Forecaster, ForecastParameters, fit_parameters

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


def test_forecast_is_provisional_until_the_off_gas_growth_rate_is_measurable() -> None:
    assert not _forecast().provisional
    early = _forecast(mu_cer=math.nan, mu_carbon=0.15)
    assert early is not None and early.provisional
    assert early.growth_rate == pytest.approx(0.15)  # the carbon-balance rate stands in


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

    from bptwin.twin.forecast import fit_time_stretch

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


# -- DO forecast ------------------------------------------------------------------------------
DO_BLOCK = {
    "deficit_per_cer": 3.0,
    "controlled_level": 33.0,
    "high_level": 100.0,
    "stirrer_min_rpm": 500.0,
    "template_start_min": -20.0,
    "template_step_min": 10.0,
    "template": [33.0, 50.0, 80.0, 100.0],  # −20, −10, 0, +10 min from depletion
    "noise_low": -2.5,
    "noise_high": 3.0,
}


def _do_params(**changes: float) -> ForecastParameters:
    from bptwin.twin.forecast import DoParameters

    do = DoParameters.from_block(DO_BLOCK)
    assert do is not None
    values = {"depletion_error_sd_s": 300.0, "depletion_error_fraction": 0.0, **changes}
    return ForecastParameters(400.0, 20.0, 0.15, do=do, **values)


def _at(made, seconds_from_now: float) -> tuple[float, float, float]:
    t = made.made_at + seconds_from_now
    return tuple(
        float(np.interp(t, made.times, a)) for a in (made.do, made.do_lower, made.do_upper)
    )


def test_do_falls_with_uptake_is_held_by_the_cascade_and_rises_after_depletion() -> None:
    # DO 70 % at CER 10 and minimum stirring: the window's own deficit per CER is 3.
    made = _forecast(_do_params(), do_now=70.0, cer=10.0, stirrer_now=500.0, o2_flow_now=0.0)
    assert made.do is not None and made.do.shape == made.times.shape
    assert made.do[0] == pytest.approx(70.0)
    # One hour on, CER has grown by e^0.2 and the deficit with it (before the cascade acts).
    assert _at(made, 3600.0)[0] == pytest.approx(100.0 - 3.0 * 10.0 * math.exp(0.2), rel=1e-3)
    to_depletion = made.depletion_time - made.made_at
    held, _, _ = _at(made, to_depletion - 2 * 3600.0)
    assert held == pytest.approx(33.0)  # the cascade holds its level
    after, low, high = _at(made, to_depletion + 3600.0)
    assert after == pytest.approx(100.0)
    assert low == pytest.approx(97.5) and high == pytest.approx(100.0 + 3.0)
    assert np.all(made.do_lower <= made.do) and np.all(made.do <= made.do_upper)


def test_expected_do_is_a_ramp_over_the_depletion_uncertainty() -> None:
    sharp = _forecast(_do_params(depletion_error_sd_s=1.0), do_now=33.0, stirrer_now=800.0)
    wide = _forecast(_do_params(depletion_error_sd_s=3600.0), do_now=33.0, stirrer_now=800.0)
    assert sharp.depletion_time == pytest.approx(wide.depletion_time)
    to_depletion = sharp.depletion_time - sharp.made_at
    # 45 min before the projected depletion: still controlled if certain, partly risen if not.
    assert _at(sharp, to_depletion - 2700.0)[0] == pytest.approx(33.0)
    early, low, high = _at(wide, to_depletion - 2700.0)
    assert 33.0 < early < 100.0
    assert low == pytest.approx(33.0 - 2.5) and high == pytest.approx(103.0)


def test_cascade_active_means_the_controlled_level_until_depletion() -> None:
    made = _forecast(_do_params(), do_now=36.0, cer=30.0, stirrer_now=750.0)
    before = made.times < made.depletion_time - 1800.0
    assert np.allclose(made.do[before], 33.0)


def test_deficit_from_training_when_the_window_deficit_is_too_small() -> None:
    made = _forecast(_do_params(), do_now=98.0, cer=0.5, stirrer_now=500.0, o2_flow_now=0.0)
    assert made.do[0] == pytest.approx(100.0 - 3.0 * 0.5)  # training ratio, not 2/0.5 = 4


def test_depleted_batch_do_follows_the_template_then_the_high_level() -> None:
    made = _forecast(_do_params(), depletion_time=1000.0, do_now=80.0)
    assert made.do[0] == pytest.approx(80.0)  # at the detected onset (template offset 0)
    assert _at(made, 600.0)[0] == pytest.approx(100.0)


def test_no_do_forecast_without_a_reading_or_a_do_model() -> None:
    assert _forecast(_do_params()).do is None  # no do_now
    assert _forecast(do_now=50.0).do is None  # card without a DO block
    from bptwin.twin.forecast import DoParameters

    assert DoParameters.from_block({**DO_BLOCK, "template": [33.0]}) is None
    assert DoParameters.from_block({**DO_BLOCK, "deficit_per_cer": "x"}) is None


def test_do_parameters_are_learnt_from_training_windows() -> None:
    import pandas as pd

    from bptwin.twin.forecast import fit_do_parameters

    rows = []
    for batch in (1, 2):
        depletion = 20 * 3600.0
        for i in range(0, 24 * 120):
            t = i * 30.0
            hours = t / 3600.0
            cer = 0.5 * math.exp(0.25 * hours)
            if t < depletion:
                cascade = 100.0 - 3.0 * cer < 33.0
                do = 33.0 + (1.0 if i % 2 else -1.0) if cascade else 100.0 - 3.0 * cer
                stirrer = 700.0 if cascade else 500.0
            else:
                do, stirrer, cer = 100.0, 500.0, 0.0
            rows.append(
                {
                    "batch": batch,
                    "window_end": t,
                    "time_since_inoculation_h": hours,
                    "depletion_true": depletion,
                    "do_mean": do,
                    "stirrer_speed_mean": stirrer,
                    "o2_flow_mean": 0.0,
                    "cer_smooth": cer,
                }
            )
    block = fit_do_parameters(pd.DataFrame(rows))
    assert block is not None
    assert block["deficit_per_cer"] == pytest.approx(3.0)
    assert block["controlled_level"] == pytest.approx(33.0, abs=1.0)
    assert block["high_level"] == pytest.approx(100.0)
    assert block["stirrer_min_rpm"] == pytest.approx(500.0)
    assert block["template"][0] == pytest.approx(33.0, abs=1.0)
    assert block["template"][-1] == pytest.approx(100.0)
    assert -1.5 <= block["noise_low"] < 0 < block["noise_high"] <= 1.5
    assert fit_do_parameters(pd.DataFrame(rows).drop(columns=["do_mean"])) is None
