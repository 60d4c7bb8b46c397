"""The status strip's depletion forecast: a time only once the growth rate is measurable."""

from __future__ import annotations

import math
from types import MappingProxyType

from bptwin.screens.dashboard import status_line
from bptwin.twin.forecast import Forecaster, ForecastParameters
from bptwin.twin.live import LiveSnapshot
from bptwin.twin.predictor import Prediction

PARAMS = ForecastParameters(400.0, 20.0, 0.15)


def snapshot_with(mu_cer: float) -> LiveSnapshot:
    forecast = Forecaster(PARAMS).forecast_values(
        now=1000.0, od_now=10.0, cer=20.0, cum_co2=100.0, mu_cer=mu_cer, mu_carbon=0.15
    )
    prediction = Prediction(1000.0, 10.0, 9.0, 11.0, "m1", reactor="R1", forecast=forecast)
    return LiveSnapshot(taken_at=1000.0, predictions=MappingProxyType({"R1": prediction}))


def test_depletion_time_is_shown_once_the_off_gas_growth_rate_is_measured() -> None:
    line = status_line(snapshot_with(0.2), "R1", 17, "ana")
    assert "depletion ≈" in line and " h)" in line


def test_early_forecast_says_it_waits_for_a_measurable_growth_rate() -> None:
    line = status_line(snapshot_with(math.nan), "R1", 17, "ana")
    assert "depletion ≈" not in line
    assert "forecast once growth is measurable" in line
