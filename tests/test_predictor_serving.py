"""Predictions to the bus (topic contract) and to the time-series store, with real components."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from bptwin.database.bus.local import LocalBus
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.twin.features import ProcessState
from bptwin.twin.predictor import InferenceWorker, Predictor
from bptwin.twin.serving import PREDICTION_CHANNELS, bus_sink, prediction_payload, store_sink
from tests.test_model_data import random_artifact
from tests.test_predictor import live_states  # noqa: F401 (fixture)


def test_worker_publishes_and_stores_every_window(
    live_states: list[ProcessState],  # noqa: F811
    tmp_path: Path,
) -> None:
    bus = LocalBus()
    bus.start()
    received: list[tuple[str, dict]] = []
    all_in = threading.Event()

    def on_message(topic: str, payload: bytes) -> None:
        received.append((topic, json.loads(payload)))
        if len(received) == len(live_states):
            all_in.set()

    bus.subscribe("bptwin/v1/R1/predictions/+", on_message)
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    worker = InferenceWorker(
        Predictor(random_artifact("v-serve")),
        [bus_sink(bus), store_sink(store)],
        max_pending=len(live_states) + 1,
    ).start()
    for state in live_states:
        worker.submit(state)
    assert all_in.wait(30)
    worker.stop()
    bus.stop()
    topic, payload = received[-1]
    assert topic == "bptwin/v1/R1/predictions/od600"
    assert payload["unit"] == "OD600" and payload["model_version"] == "v-serve"
    assert payload["lower"] < payload["value"] < payload["upper"]
    assert payload["ts"].endswith("Z")
    store.flush()
    first, last = live_states[0].end, live_states[-1].end
    stored = store.read_range("R1", PREDICTION_CHANNELS["od600"], first, last + 1)
    assert len(stored) == len(live_states)
    store.close()


def test_payload_is_strict_json_even_with_nan() -> None:
    from bptwin.twin.predictor import Prediction

    payload = prediction_payload(Prediction(1.7e9, 5.0, float("nan"), 6.0, "v"))
    assert json.loads(payload)["lower"] is None


def test_do_forecast_summary_is_stored_with_the_nowcast(
    live_states: list[ProcessState],  # noqa: F811
    tmp_path: Path,
) -> None:
    from tests.test_model_forecast import DO_BLOCK

    artifact = random_artifact("v-do")
    artifact.card.metrics["forecast"] = {
        "cum_co2_at_depletion": 430.0,
        "cum_co2_at_depletion_sd": 20.0,
        "od_per_mmol_co2": 0.15,
        "do": DO_BLOCK,
    }
    prediction = Predictor(artifact).predict(live_states[-1])
    assert prediction.forecast is not None and prediction.forecast.do is not None
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    store_sink(store)(prediction, live_states[-1])
    store.flush()
    at = prediction.timestamp
    stored = {
        key: store.read_range("R1", PREDICTION_CHANNELS[key], at, at + 1)
        for key in ("do_1h", "do_1h_lower", "do_1h_upper")
    }
    store.close()
    assert all(len(rows) == 1 for rows in stored.values())
    values = {key: rows[0].value for key, rows in stored.items()}
    assert values["do_1h_lower"] <= values["do_1h"] <= values["do_1h_upper"]
    payload = json.loads(prediction_payload(prediction))
    assert payload["forecast"]["do_1h"] == pytest.approx(values["do_1h"])
