"""Predictions to the bus (topic contract) and to the time-series store, with real components."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from database.bus.local import LocalBus
from database.timeseries.embedded import EmbeddedStore
from tests.test_model_data import random_artifact
from tests.test_predictor import live_states  # noqa: F401 (fixture)
from twin.features import ProcessState
from twin.predictor import InferenceWorker, Predictor
from twin.serving import PREDICTION_CHANNELS, bus_sink, prediction_payload, store_sink


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
    from twin.predictor import Prediction

    payload = prediction_payload(Prediction(1.7e9, 5.0, float("nan"), 6.0, "v"))
    assert json.loads(payload)["lower"] is None
