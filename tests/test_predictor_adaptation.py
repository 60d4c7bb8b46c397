"""The live predictor adapts its nowcast to the batch's samples as they are entered."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptwin.twin.features import states_from_frame
from bptwin.twin.history import History
from bptwin.twin.predictor import Predictor
from bptwin.twin.registry import SHIPPED_MODELS_DIR, Registry
from bptwin.twin.sim_profiles import profile_config
from bptwin.twin.simulator import simulate_batch


@pytest.fixture(scope="module")
def foreign_batch():
    """10 h of a batch in another lab's reactor (a model trained at home is ~15 % off)."""
    result = simulate_batch(profile_config("lab-b"), 21, start_timestamp=1.7e9, hours=10.0)
    readings = result.sensors.drop(columns=[c for c in result.sensors if c.startswith("truth")])
    states = states_from_frame(readings.drop(columns=["time_s"]), reactor="R1")
    truth = np.interp(
        [s.end for s in states],
        result.truth["time_s"].to_numpy() + 1.7e9,
        result.truth["truth_od600"].to_numpy(),
    )
    samples = result.samples
    return states, truth, (samples["time_s"] + 1.7e9).tolist(), samples["od600"].tolist()


def test_samples_entered_in_the_history_adapt_the_live_nowcast(foreign_batch) -> None:
    states, truth, sample_times, sample_values = foreign_batch
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    predictor = Predictor(model)
    history = History(["R1"])
    history.add_sample_listener(predictor.note_samples)
    pending = list(zip(sample_times, sample_values, strict=True))
    adapted, raw, used, drift = [], [], [], []
    for state in states:
        while pending and pending[0][0] <= state.end - 60:  # entered a minute after it is taken
            history.add_sample("R1", *pending.pop(0))
        prediction = predictor.predict(state, forecast=False)
        adapted.append(prediction.od600)
        raw.append(prediction.model_od600)
        used.append(prediction.samples_used)
        drift.append(prediction.drift)
    adapted, raw, used = np.array(adapted), np.array(raw), np.array(used)
    after_4h = used >= 3
    assert after_4h.any() and (used[:10] == 0).all()
    raw_error = np.mean(np.abs(raw[after_4h] / truth[after_4h] - 1))
    adapted_error = np.mean(np.abs(adapted[after_4h] / truth[after_4h] - 1))
    assert raw_error > 0.08
    assert adapted_error < 0.04
    assert drift[0] == ""


def test_a_sample_far_off_the_model_trips_the_drift_watch(foreign_batch) -> None:
    states = foreign_batch[0]
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    predictor = Predictor(model)
    for state in states[:100]:
        first = predictor.predict(state, forecast=False)
    assert first.drift == ""
    # A sample 60 % above what the model says (another probe, or a wrong dilution).
    predictor.note_sample("R1", states[99].end - 10, first.model_od600 * 1.6)
    tripped = predictor.predict(states[100], forecast=False)
    assert "off the model" in tripped.drift
    assert tripped.upper / tripped.lower > first.upper / first.lower


def test_adaptation_off_leaves_the_model_alone(foreign_batch) -> None:
    states, _, sample_times, sample_values = foreign_batch
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    predictor = Predictor(model, adapt=False)
    predictor.note_samples("R1", sample_times, sample_values)
    prediction = predictor.predict(states[-1], forecast=False)
    assert prediction.samples_used == 0 and math.isnan(prediction.model_od600)


def test_shipped_model_is_flagged_for_resting_on_one_feature(foreign_batch) -> None:
    from bptwin.twin.attributions import contributions, summary
    from bptwin.twin.features import FEATURE_NAMES, feature_vector

    states = foreign_batch[0]
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    matrix = np.vstack([feature_vector(s) for s in states[::10]])
    values = contributions(model.booster, matrix)
    # SHAP values add up to the model's own prediction.
    np.testing.assert_allclose(values.sum(axis=1), model.booster.predict(matrix), rtol=1e-9)
    result = summary(list(FEATURE_NAMES), values)
    assert result["concentrated"] and result["leading_feature"] == "od_probe_mean"
    assert "od_probe_mean" in result["warning"]


def test_the_live_bands_are_the_ones_validation_scores(foreign_batch) -> None:
    """Live and validate share the band: window by window, the predictor's bands are
    ``band_batch``'s causal replay of the same windows, samples and drift watch."""
    from bptwin.twin.adaptation import adapt_batch
    from bptwin.twin.conformal import ADAPTED_BAND, TRAINED_BAND, band_batch, card_base_log_sd

    states, _, sample_times, sample_values = foreign_batch
    model = Registry(SHIPPED_MODELS_DIR).load("current")
    predictor = Predictor(model, explain=False)
    predictor.note_samples("R1", sample_times, sample_values)
    made = [predictor.predict(state, forecast=False) for state in states]
    ends = np.array([s.end for s in states])
    model_log = np.log([p.model_od600 for p in made])
    drifted = np.array([p.drift != "" for p in made])
    used = np.array([p.samples_used for p in made])
    times, values = np.array(sample_times), np.array(sample_values)
    base = card_base_log_sd(model.card)
    k = model.card.metrics["baseline"]["k_od_per_mmol_co2"]
    adapted = adapt_batch(
        ends, model_log, np.array([s.cum_co2_mmol_per_l for s in states]), times, values, k
    )
    scale = np.full(len(ends), base)
    trained = band_batch(ends, model_log, scale, times, values, drifted, TRAINED_BAND)
    around = band_batch(ends, np.log(adapted["od600"]), scale, times, values, drifted, ADAPTED_BAND)
    lower = np.array([p.lower for p in made])
    upper = np.array([p.upper for p in made])
    before = used == 0
    # Adapted windows, except the drift watch's first hours (the carbon balance stands in).
    after = (used >= 2) | ((used == 1) & ~drifted)
    assert before.sum() >= 10 and after.sum() > 100
    np.testing.assert_allclose(lower[before], trained[0][before], rtol=1e-9)
    np.testing.assert_allclose(upper[before], trained[1][before], rtol=1e-9)
    np.testing.assert_allclose(lower[after], around[0][after], rtol=1e-9)
    np.testing.assert_allclose(upper[after], around[1][after], rtol=1e-9)
