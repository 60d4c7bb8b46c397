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
