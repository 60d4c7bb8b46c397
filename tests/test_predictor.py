"""Serving: live pipeline states in, predictions out, failures contained."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from bptwin.twin.features import FEATURE_NAMES, ProcessState, StreamingFeatures
from bptwin.twin.predictor import InferenceWorker, Prediction, PredictionError, Predictor
from bptwin.twin.registry import FeatureMismatchError, ModelArtifact, ModelCard
from bptwin.twin.simulator import ReactorSimulator
from tests.test_model_data import random_artifact


@pytest.fixture(scope="module")
def live_states() -> list[ProcessState]:
    """States from the streaming path fed reading by reading, as the live worker does."""
    simulator = ReactorSimulator(None, 3, start_timestamp=1.7e9)
    stream = StreamingFeatures(reactor="R1")
    states: list[ProcessState] = []
    for _ in range(600):
        for reading in simulator.step().to_readings("R1"):
            states.extend(stream.add(reading))
    states.extend(stream.flush())
    return states


def test_predicts_every_live_window_with_a_band(live_states: list[ProcessState]) -> None:
    predictor = Predictor(random_artifact("v7"))
    assert len(live_states) >= 19
    for state in live_states:
        prediction = predictor.predict(state)
        assert isinstance(prediction, Prediction)
        assert prediction.timestamp == state.end
        assert prediction.lower < prediction.od600 < prediction.upper
        assert prediction.model_version == "v7"
        assert prediction.reactor == "R1"
        # The three largest SHAP contributions, largest first, in the model's log space.
        assert len(prediction.attributions) == 3
        sizes = [abs(value) for _, value in prediction.attributions]
        assert sizes == sorted(sizes, reverse=True)
        assert all(name in FEATURE_NAMES for name, _ in prediction.attributions)


def test_prediction_matches_the_batch_model_output(live_states: list[ProcessState]) -> None:
    from bptwin.twin.features import feature_vector

    artifact = random_artifact()
    predictor = Predictor(artifact)
    state = live_states[-1]
    expected = np.exp(artifact.booster.predict(feature_vector(state)[None, :])[0])
    assert predictor.predict(state).od600 == pytest.approx(expected)


def test_model_with_other_features_is_refused() -> None:
    artifact = random_artifact()
    names = list(FEATURE_NAMES)
    card = ModelCard(version="x", feature_names=names[::-1])
    with pytest.raises(FeatureMismatchError, match="another order"):
        Predictor(ModelArtifact(artifact.booster, card))


def test_wrong_vector_shape_is_a_prediction_error() -> None:
    predictor = Predictor(random_artifact())
    with pytest.raises(PredictionError, match="shape"):
        predictor.predict_vector(np.zeros(3), 0.0)


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    from bptwin.twin.registry import ModelError

    with pytest.raises(ModelError, match="not found"):
        Predictor(tmp_path / "missing")


def test_worker_survives_a_failing_sink_and_keeps_predicting(
    live_states: list[ProcessState],
) -> None:
    received: list[Prediction] = []
    errors: list[str] = []
    done = threading.Event()
    total = len(live_states)

    def collect(prediction: Prediction, state: ProcessState) -> None:
        received.append(prediction)
        if len(received) == total:
            done.set()

    def broken(prediction: Prediction, state: ProcessState) -> None:
        if state.window_index % 2 == 0:
            raise RuntimeError("store went away")

    worker = InferenceWorker(
        Predictor(random_artifact()),
        [broken, collect],
        on_error=lambda state, exc: errors.append(str(exc)),
        max_pending=total + 1,
    ).start()
    for state in live_states:
        worker.submit(state)
    assert done.wait(30)
    worker.stop()
    assert worker.predicted == total
    assert worker.failed == len(errors) > 0
    assert all("store went away" in e for e in errors)
    # Broken sink comes first, collect still received every window.
    assert [p.window_index for p in received] == [s.window_index for s in live_states]


def test_submit_never_blocks_and_drops_the_oldest(live_states: list[ProcessState]) -> None:
    worker = InferenceWorker(Predictor(random_artifact()), [], max_pending=2)  # not started
    for state in live_states[:5]:
        worker.submit(state)
    assert worker.dropped == 3


def test_prediction_carries_a_forecast_when_the_card_has_its_parameters(
    live_states: list[ProcessState],
) -> None:
    import json

    artifact = random_artifact()
    artifact.card.metrics["forecast"] = {
        "cum_co2_at_depletion": 430.0,
        "cum_co2_at_depletion_sd": 20.0,
        "od_per_mmol_co2": 0.15,
        "cer_max": 80.0,
    }
    predictions = [Predictor(artifact).predict(state) for state in live_states]
    with_forecast = [p for p in predictions if p.forecast is not None]
    assert with_forecast
    last = with_forecast[-1]
    assert last.depletion_forecast > last.timestamp + 3600
    payload = json.loads(json.dumps(last.to_dict()))
    assert payload["forecast"]["od600_end"] > last.od600
    assert Predictor(random_artifact()).predict(live_states[-1]).forecast is None


def test_predictor_switches_to_the_fallback_when_the_probe_is_missing(
    live_states: list[ProcessState],
) -> None:
    import dataclasses

    primary = random_artifact()
    backup = random_artifact().booster
    card = dataclasses.replace(
        primary.card,
        fallback={
            "trigger_features": ["od_probe_mean"],
            "interval": {"lower_log": -0.3, "upper_log": 0.3},
        },
    )
    predictor = Predictor(ModelArtifact(primary.booster, card, fallback=backup))
    state = live_states[-1]
    assert not predictor.predict(state).fallback
    from bptwin.twin.features import MODEL_CHANNELS

    blind_mean = state.channel_mean.copy()
    blind_mean[MODEL_CHANNELS.index("od_probe")] = np.nan
    blind = dataclasses.replace(state, channel_mean=blind_mean)
    prediction = predictor.predict(blind)
    assert prediction.fallback
    assert prediction.upper / prediction.od600 == pytest.approx(np.exp(0.3))


def test_station_refuses_a_model_whose_features_do_not_match_and_says_why(
    tmp_path: Path,
) -> None:
    """The app side: a model trained on another pipeline is refused, the reason is shown."""
    import json

    from bptwin.tui.runtime.station import Station
    from bptwin.tui.settings import Settings

    folder = tmp_path / "old-pipeline"
    random_artifact("old-pipeline").save(folder)
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    card["feature_names"] = [*card["feature_names"][:-1], "retired_feature"]
    card_path.write_text(json.dumps(card))
    settings = Settings()
    settings.station.data_dir = tmp_path / "data"
    settings.model.path = folder
    station = Station(settings)
    assert station.start_inference(None) is None  # type: ignore[arg-type]
    problem = station.latest.snapshot().problems[0]
    assert "model.path" in problem and "does not match the feature pipeline" in problem
    assert "retired_feature" in problem and "bptwin train" in problem
    assert station.warnings == [problem]


class _PredictionSink:
    """Where the inference worker hands its results (the shadow worker's two entry points)."""

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []
        self.errors: list[Exception] = []

    def on_prediction(self, prediction: Prediction) -> None:
        self.predictions.append(prediction)

    def on_prediction_error(self, error: Exception) -> None:
        self.errors.append(error)


def test_headless_station_without_trend_history_starts_predicting(tmp_path: Path) -> None:
    """`bptwin serve` keeps no trend history: loading a model must not crash on the missing
    history (it used to: None.add_sample_listener at start)."""
    from bptwin.tui.runtime.station import Station
    from bptwin.tui.settings import Settings

    folder = tmp_path / "model"
    random_artifact("headless").save(folder)
    settings = Settings()
    settings.station.data_dir = tmp_path / "data"
    settings.model.path = folder
    station = Station(settings, keep_trends=False)
    assert station.history is None
    worker = station.start_inference(_PredictionSink())  # type: ignore[arg-type]
    try:
        assert worker is not None
        assert station.latest.model_version == "headless"
    finally:
        if worker is not None:
            worker.stop()


def test_prediction_carries_the_do_forecast_and_its_summary(
    live_states: list[ProcessState],
) -> None:
    import json

    from tests.test_model_forecast import DO_BLOCK

    artifact = random_artifact()
    artifact.card.metrics["forecast"] = {
        "cum_co2_at_depletion": 430.0,
        "cum_co2_at_depletion_sd": 20.0,
        "od_per_mmol_co2": 0.15,
        "cer_max": 80.0,
        "do": DO_BLOCK,
    }
    predictor = Predictor(artifact)
    made = [p for p in (predictor.predict(s) for s in live_states) if p.forecast is not None]
    assert made
    forecast = made[-1].forecast
    assert forecast is not None and forecast.do is not None
    assert forecast.do.shape == forecast.do_lower.shape == forecast.do_upper.shape
    assert forecast.do.shape == forecast.times.shape
    # Minutes after inoculation the DO is near 100 % and only falls from there.
    assert forecast.do[0] > 80.0
    assert np.all(np.diff(forecast.do[forecast.times < forecast.depletion_time - 3600]) <= 1e-9)
    assert np.all(forecast.do_lower <= forecast.do) and np.all(forecast.do <= forecast.do_upper)
    summary = json.loads(json.dumps(made[-1].to_dict()))["forecast"]
    assert summary["do_1h_lower"] <= summary["do_1h"] <= summary["do_1h_upper"]
    assert summary["do_min"] == pytest.approx(float(forecast.do.min()))
    assert forecast.made_at <= summary["do_min_time"] <= forecast.depletion_time
    assert summary["do_end"] == pytest.approx(float(forecast.do[-1]))


def test_the_single_row_path_gives_the_wrappers_numbers_missing_values_included() -> None:
    """The nowcast and its SHAP values through LightGBM's single-row C path are the numbers
    Booster.predict gives, for rows with missing (NaN) and extreme values too."""
    from bptwin.twin.single_row import SingleRowPredictor

    booster = random_artifact().booster
    columns = len(FEATURE_NAMES)
    nowcast = SingleRowPredictor(booster, columns)
    explainer = SingleRowPredictor(booster, columns, contributions=True)
    assert nowcast.fast and explainer.fast
    rows = np.random.default_rng(3).normal(scale=50.0, size=(200, columns))
    rows[::7, ::3] = np.nan
    rows[5] = 1e300
    expected = booster.predict(rows, num_threads=1)
    expected_shap = booster.predict(rows, pred_contrib=True, num_threads=1)
    buffer = np.empty(columns)  # the predictor's own input row, written in place per window
    bound = SingleRowPredictor(booster, columns, contributions=True, row=buffer)
    for row, value, shap in zip(rows, expected, expected_shap, strict=True):
        assert nowcast(np.ascontiguousarray(row))[0] == value
        assert np.array_equal(explainer(np.ascontiguousarray(row)), shap)
        buffer[:] = row
        assert np.array_equal(bound(), shap)
    with pytest.raises(ValueError, match="contiguous float64"):
        nowcast(rows[0, :5])
    with pytest.raises(ValueError, match="no input buffer"):
        nowcast()


def test_contributions_and_forecast_are_renewed_on_their_cadence_and_when_the_basis_changes(
    live_states: list[ProcessState],
) -> None:
    """SHAP and the forecast are not recomputed every 30 s window: carried for a few windows,
    made again on their cadence, and at once when a sample changes what the nowcast rests on."""
    from tests.test_model_forecast import DO_BLOCK

    artifact = random_artifact()
    artifact.card.metrics["forecast"] = {
        "cum_co2_at_depletion": 430.0,
        "cum_co2_at_depletion_sd": 20.0,
        "od_per_mmol_co2": 0.15,
        "cer_max": 80.0,
        "do": DO_BLOCK,
    }
    predictor = Predictor(artifact, explain_every=5, forecast_every=3)
    every = Predictor(artifact, explain_every=1, forecast_every=1)
    reference = [every.predict(state) for state in live_states]
    first = next(i for i, p in enumerate(reference) if p.forecast is not None)
    states, reference = live_states[first : first + 12], reference[first : first + 12]
    made = [predictor.predict(state) for state in states[:4]]
    forecasts = [p.forecast for p in made]
    assert forecasts[0] is not None
    assert forecasts[1] is forecasts[0] and forecasts[2] is forecasts[0]  # carried
    assert forecasts[3] is not forecasts[0] and forecasts[3] is not None  # renewed
    assert forecasts[3].made_at == states[3].end
    # A sample taken up changes the nowcast: the next window forecasts again from it.
    predictor.note_samples("R1", [states[3].end], [made[3].od600 * 1.3])
    after = predictor.predict(states[4])
    assert after.samples_used == 1
    assert after.forecast is not None and after.forecast.made_at == states[4].end
    made += [after] + [predictor.predict(state) for state in states[5:]]
    assert all(p.attributions == made[0].attributions for p in made[:5])  # carried
    assert made[0].attributions == reference[0].attributions
    assert made[5].attributions == reference[5].attributions  # renewed on the 5th window
