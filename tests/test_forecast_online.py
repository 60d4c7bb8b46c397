"""The batch's own carbon budget and growth rate (twin/forecast_online.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bptwin.twin.forecast import Forecaster, ForecastParameters
from bptwin.twin.forecast_online import (
    BIOMASS_G_PER_MMOL_C,
    GLYCEROL_G_PER_MMOL_C,
    BatchEstimate,
    OnlineBudget,
    sample_rows,
)

START = 1_700_000_000.0
CARD_C_END, CARD_K = 396.0, 0.176  # the card's numbers (home campaign)


def _batch(
    yield_ratio: float = 2.4,
    initial_glycerol: float = 38.0,
    dcw_per_od: float = 0.31,
    mu: float = 0.25,
    hours: float = 18.0,
) -> dict[str, np.ndarray]:
    """An exact exponential batch: biomass carbon formed = ``yield_ratio`` × CO₂ carbon."""
    ends = START + np.arange(30.0, hours * 3600.0 + 1.0, 30.0)
    t_h = (ends - START) / 3600.0
    x0 = 0.12  # g/L
    biomass = x0 * np.exp(mu * t_h)
    co2 = (biomass - x0) / BIOMASS_G_PER_MMOL_C / yield_ratio  # mmol/L
    cer = mu * biomass / BIOMASS_G_PER_MMOL_C / yield_ratio
    glycerol = initial_glycerol - GLYCEROL_G_PER_MMOL_C * (
        co2 + (biomass - x0) / BIOMASS_G_PER_MMOL_C
    )
    return {
        "ends": ends,
        "cer": cer,
        "co2": co2,
        "od": biomass / dcw_per_od,
        "dcw": biomass,
        "glycerol": glycerol,
    }


def _budget(batch: dict[str, np.ndarray], sample_hours=(0, 2, 4, 6, 8, 12, 16)) -> OnlineBudget:
    budget = OnlineBudget(CARD_C_END, CARD_K)
    for end, cer, co2, od in zip(
        batch["ends"], batch["cer"], batch["co2"], batch["od"], strict=True
    ):
        budget.add_window(end, cer, co2, od)
    for hours in sample_hours:
        at = int(np.searchsorted(batch["ends"], START + hours * 3600.0))
        at = min(at, len(batch["ends"]) - 1)
        budget.add_sample(
            batch["ends"][at], batch["dcw"][at], batch["glycerol"][at], batch["od"][at]
        )
    return budget


def _true_c_end(yield_ratio: float, initial_glycerol: float) -> float:
    return initial_glycerol / GLYCEROL_G_PER_MMOL_C / (1.0 + yield_ratio)


def test_recovers_a_known_yield_and_initial_glycerol_unlike_the_card() -> None:
    batch = _batch(yield_ratio=2.4, initial_glycerol=38.0)
    estimate = _budget(batch).estimate(START + 17.0 * 3600.0)
    assert estimate is not None
    truth = _true_c_end(2.4, 38.0)  # 360 mmol/L, the card says 396
    assert abs(CARD_C_END - truth) > 30.0
    assert estimate.cum_co2_at_depletion == pytest.approx(truth, rel=0.02)
    assert estimate.initial_glycerol_g_l == pytest.approx(38.0, abs=0.3)
    true_kappa = 0.31 / BIOMASS_G_PER_MMOL_C
    assert estimate.biomass_carbon_per_od == pytest.approx(true_kappa, rel=0.03)
    assert estimate.samples_used >= 10


def test_recovers_the_growth_rate_from_the_cer() -> None:
    estimate = _budget(_batch(mu=0.23)).estimate(START + 12.0 * 3600.0)
    assert estimate is not None
    assert estimate.growth_rate == pytest.approx(0.23, rel=1e-3)


def test_causality_later_windows_and_samples_never_change_an_estimate() -> None:
    batch = _batch()
    now = START + 10.0 * 3600.0
    early = int(np.searchsorted(batch["ends"], now)) + 1
    budget = OnlineBudget(CARD_C_END, CARD_K)
    for end, cer, co2, od in zip(
        batch["ends"][:early],
        batch["cer"][:early],
        batch["co2"][:early],
        batch["od"][:early],
        strict=True,
    ):
        budget.add_window(end, cer, co2, od)
    for hours in (0, 2, 4, 6, 8):
        at = int(np.searchsorted(batch["ends"], START + hours * 3600.0))
        budget.add_sample(
            batch["ends"][at], batch["dcw"][at], batch["glycerol"][at], batch["od"][at]
        )
    before = budget.estimate(now)
    # Everything after the forecast time: windows, and samples (one of them wildly off).
    for end, cer, co2, od in zip(
        batch["ends"][early:],
        batch["cer"][early:],
        batch["co2"][early:],
        batch["od"][early:],
        strict=True,
    ):
        budget.add_window(end, cer * 3.0, co2 * 3.0, od * 3.0)
    budget.add_sample(now + 60.0, 99.0, 0.0, 1.0)
    budget.add_sample(now + 2 * 3600.0, 5.0, 20.0, 15.0)
    after = budget.estimate(now)
    assert before is not None and after == before
    assert budget.estimate(now + 3 * 3600.0) != before  # the later data are used later


def test_no_estimate_until_a_sample_vouches_for_the_nowcast() -> None:
    batch = _batch()
    assert _budget(batch, sample_hours=()).estimate(START + 10.0 * 3600.0) is None
    assert _budget(batch, sample_hours=(6,)).estimate(START + 10.0 * 3600.0) is not None


def test_a_nowcast_the_samples_contradict_is_not_used() -> None:
    """A foreign probe read by an unadapted model: the OD samples are 30 % above the nowcast."""
    batch = _batch()
    budget = OnlineBudget(CARD_C_END, CARD_K)
    for end, cer, co2, od in zip(
        batch["ends"], batch["cer"], batch["co2"], batch["od"], strict=True
    ):
        budget.add_window(end, cer, co2, od)
    for hours in (2, 4, 6, 8):
        at = int(np.searchsorted(batch["ends"], START + hours * 3600.0))
        budget.add_sample(
            batch["ends"][at], batch["dcw"][at], batch["glycerol"][at], 1.3 * batch["od"][at]
        )
    assert budget.estimate(START + 10.0 * 3600.0) is None


def test_the_forecast_ends_on_the_batch_budget_not_the_cards() -> None:
    card = ForecastParameters(CARD_C_END, 20.0, CARD_K, cer_max=40.0)
    values = {"now": START, "od_now": 10.0, "cer": 20.0, "cum_co2": 100.0, "mu_cer": 0.2}
    own = BatchEstimate(START, 300.0, 5.0, 0.2, 36.0, 11.0, 8)
    with_card = Forecaster(card).forecast_values(mu_carbon=math.nan, **values)
    with_own = Forecaster(card).forecast_values(mu_carbon=math.nan, estimate=own, **values)
    assert with_card is not None and with_own is not None
    assert with_own.depletion_time < with_card.depletion_time
    # 200 mmol/L still to come at CER 20 growing at 0.2 /h (no home CER ceiling), stretched.
    tau_h = math.log1p(0.2 * 200.0 / 20.0) / 0.2
    assert with_own.depletion_time == pytest.approx(
        START + tau_h * 3600.0 * 1.033 + 155.0, rel=1e-6
    )


def test_sample_rows_keeps_what_was_measured() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": [START, START + 7200.0, math.nan],
            "od600": [0.4, 0.6, 1.0],
            "dcw_g_l": [0.12, None, 0.3],
            "glycerol_g_l": ["36.1", "bad", 35.0],
        }
    )
    rows = sample_rows(frame)
    assert len(rows) == 2
    assert rows[0] == (START, 0.12, 36.1, 0.4)
    assert math.isnan(rows[1][1]) and math.isnan(rows[1][2])
    assert sample_rows(None) == []


def test_recovers_a_simulated_batchs_higher_yield_and_glycerol() -> None:
    """A simulated batch (noisy samples) with a 7 % higher yield and 38 g/L glycerol: the
    budget at 14 h, from that batch's samples and CO₂ (perfect nowcast), lands on the CO₂ it
    really evolved by depletion, where the card's budget is ~8 % off."""
    from dataclasses import replace

    from bptwin.twin.sim_config import SimulationConfig
    from bptwin.twin.simulator import simulate_batch

    base = SimulationConfig()
    config = replace(
        base,
        kinetics=replace(base.kinetics, yield_x_s_g_g=0.62),
        reactor=replace(base.reactor, glycerol_start_g_l=38.0),
    )
    batch = simulate_batch(config, seed=3, start_timestamp=START)
    frame = batch.frame().iloc[::30]
    volume = config.reactor.volume_l
    budget = OnlineBudget(CARD_C_END, CARD_K)
    for row in frame.itertuples():
        budget.add_window(
            row.timestamp,
            row.truth_cer_mmol_l_h,
            row.truth_co2_cum_mmol / volume,
            row.truth_od600,
        )
    for row in batch.samples.itertuples():
        budget.add_sample(START + row.time_s, row.dcw_g_l, row.glycerol_g_l, row.od600)
    assert batch.depletion_time_s is not None
    seconds = frame["time_s"].to_numpy(float)
    evolved = float(
        np.interp(batch.depletion_time_s, seconds, frame["truth_co2_cum_mmol"]) / volume
    )
    estimate = budget.estimate(START + 14.0 * 3600.0)
    assert estimate is not None
    assert abs(CARD_C_END / evolved - 1.0) > 0.06
    error = estimate.cum_co2_at_depletion - evolved
    assert abs(error) < 0.04 * evolved
    assert abs(error) < 3.0 * estimate.cum_co2_at_depletion_sd
    assert estimate.initial_glycerol_g_l == pytest.approx(38.0, abs=0.8)


def test_live_predictor_forecasts_on_the_batchs_budget_once_a_sample_vouches() -> None:
    """Home seed 7's high-yield batch 16 parameters (yield 0.616): live, with its OD samples
    only, the forecast switches to the batch's own budget and ends nearer the truth than the
    card's budget, which ends this batch ~45 min late."""
    from dataclasses import replace

    from bptwin.twin.features import states_from_frame
    from bptwin.twin.predictor import Predictor
    from bptwin.twin.registry import SHIPPED_MODELS_DIR, Registry
    from bptwin.twin.sim_config import SimulationConfig
    from bptwin.twin.simulator import simulate_batch

    base = SimulationConfig()
    config = replace(base, kinetics=replace(base.kinetics, yield_x_s_g_g=0.616))
    result = simulate_batch(config, seed=7, start_timestamp=START)
    assert result.depletion_time_s is not None
    depletion = START + result.depletion_time_s
    readings = result.sensors.drop(columns=[c for c in result.sensors if c.startswith("truth")])
    states = states_from_frame(readings.drop(columns=["time_s"]), reactor="R1")
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    live, card_only = Predictor(model), Predictor(model, adapt=False)
    samples = [
        (START + t, od)
        for t, od in zip(result.samples["time_s"], result.samples["od600"], strict=True)
    ]
    methods, errors_live, errors_card = set(), [], []
    entered = 0
    for state in states:
        hours = (state.end - START) / 3600.0
        due = sum(1 for t, _ in samples if t < state.end - 60)  # entered a minute after
        if due > entered:
            entered = due
            live.note_samples("R1", [t for t, _ in samples[:due]], [v for _, v in samples[:due]])
        if not (12.0 <= hours <= 18.0 and state.window_index % 120 == 0):
            live.predict(state, forecast=False)
            continue
        made, reference = live.predict(state).forecast, card_only.predict(state).forecast
        assert made is not None and reference is not None
        methods.add(made.method)
        errors_live.append(abs(made.depletion_time - depletion) / 60.0)
        errors_card.append(abs(reference.depletion_time - depletion) / 60.0)
    assert methods == {"carbon-balance hybrid, batch's own budget"}
    assert np.mean(errors_card) > 25.0
    assert np.mean(errors_live) < 15.0
