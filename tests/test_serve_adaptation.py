"""Every sample of a reactor's running batch reaches the acquiring process's adaptation, with
or without a trend history (runtime/sample_feed.py).

The feed alone on a local bus and an in-memory source, then the whole path: a real headless
``bptwin serve`` subprocess (no trend history) on a private Mosquitto, a viewer in this
process entering a sample into the shared notebook, and the serve's next predictions, read
off the bus, adapted to it.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bptwin.database.bus import LocalBus
from bptwin.tui.runtime.sample_feed import SampleFeed, samples_hint, samples_topic
from bptwin.twin.predictor import Prediction
from tests import test_viewer
from tests.test_bus import wait_for

# The same headless `bptwin serve` (simulated batch at 30x, private broker) as the viewer tests.
serve = test_viewer.serve


class _Notebook:
    """What the feed reads: each reactor's samples (None: no running batch)."""

    def __init__(self) -> None:
        self.samples: dict[str, tuple[list[float], list[float]] | None] = {"R1": ([], [])}
        self.reads: list[str] = []
        self.away = False

    def read(self, reactor: str) -> tuple[list[float], list[float]] | None:
        if self.away:
            raise ConnectionError("notebook database unreachable")
        self.reads.append(reactor)
        return self.samples.get(reactor)


class _Adaptation:
    def __init__(self) -> None:
        self.told: dict[str, tuple[list[float], list[float]]] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def note_samples(self, reactor: str, times: list[float], od600: list[float]) -> None:
        with self.lock:
            self.told[reactor] = (list(times), list(od600))
            self.calls += 1


def test_the_feed_hands_over_the_samples_at_start_and_when_told() -> None:
    notebook, adaptation = _Notebook(), _Adaptation()
    notebook.samples["R1"] = ([100.0], [0.6])
    feed = SampleFeed(notebook.read, adaptation.note_samples, ["R1", "R2"], poll_s=3600)
    feed.start()
    try:
        assert wait_for(lambda: adaptation.told.get("R1") == ([100.0], [0.6]), timeout=10)
        assert "R2" not in adaptation.told  # no running batch there: nothing said
        notebook.samples["R1"] = ([100.0, 4000.0], [0.6, 2.1])
        feed.changed("R1")
        assert wait_for(lambda: adaptation.told["R1"] == ([100.0, 4000.0], [0.6, 2.1]), 10)
        # A corrected sample: the whole list again, not an addition to the old one.
        notebook.samples["R1"] = ([100.0, 4000.0], [0.6, 1.9])
        feed.changed("R1")
        assert wait_for(lambda: adaptation.told["R1"] == ([100.0, 4000.0], [0.6, 1.9]), 10)
    finally:
        feed.stop()


def test_a_hint_on_the_bus_reloads_from_the_notebook_and_injects_no_value() -> None:
    """Anyone on the broker may send the hint: it makes the engine re-read the notebook, its
    payload is never taken for a sample, and another reactor's or a garbled hint changes
    nothing here."""
    notebook, adaptation = _Notebook(), _Adaptation()
    bus = LocalBus()
    bus.start()
    feed = SampleFeed(notebook.read, adaptation.note_samples, ["R1"], poll_s=3600)
    subscription = feed.subscribe(bus, "lab")
    feed.start()
    try:
        assert wait_for(lambda: adaptation.calls == 1, timeout=10)
        notebook.samples["R1"] = ([50.0], [0.4])
        bus.publish("lab/v1/R9/notebook/samples", samples_hint(1))  # not ours
        bus.publish(samples_topic("R1", "lab"), b'{"times": [1], "od600": [999]}')
        assert wait_for(lambda: adaptation.told["R1"] == ([50.0], [0.4]), timeout=10)
        assert notebook.reads.count("R9") == 0
    finally:
        subscription.cancel()
        feed.stop()
        bus.stop()


def test_a_notebook_away_is_retried_at_the_next_poll_not_fatal() -> None:
    notebook, adaptation = _Notebook(), _Adaptation()
    notebook.away = True
    feed = SampleFeed(notebook.read, adaptation.note_samples, ["R1"], poll_s=0.05)
    feed.start()
    try:
        assert wait_for(lambda: feed.failures >= 1, timeout=10)
        assert "unreachable" in feed.last_problem and not adaptation.told
        notebook.samples["R1"] = ([70.0], [0.5])
        notebook.away = False
        assert wait_for(lambda: adaptation.told.get("R1") == ([70.0], [0.5]), timeout=10)
    finally:
        feed.stop()


def _start_batch_on_r1(notebook: Any, number: int, now: datetime) -> None:
    """A running batch on R1, inoculated an hour before ``now`` on the acquisition's own
    time line, by a supervisor made for it."""
    from bptwin.eln.states import OperatorRole

    notebook.operators.create_operator("setup", "vera", OperatorRole.SUPERVISOR, "2468")
    notebook.batches.create_batch("vera", number, "A", reactor_id="R1")
    notebook.batches.start_batch(
        "vera",
        number,
        inoculated_at=now - timedelta(hours=1),
        override_reason="adaptation test: calibrations not part of it",
    )


@pytest.mark.mqtt
@pytest.mark.slow
def test_a_sample_entered_in_a_viewer_adapts_the_headless_serves_nowcast(
    serve: object, private_mqtt_broker: object, tmp_path: Path
) -> None:
    from bptwin.database.migrate import upgrade
    from bptwin.tui.runtime.acquisition_lock import acquisition_owner
    from bptwin.tui.runtime.viewer import ViewerStation

    host, port = private_mqtt_broker.address  # type: ignore[attr-defined]
    settings = test_viewer.settings_for(tmp_path, host, port)
    upgrade(settings.notebook_url())  # as the viewer tests do: the App migrates it otherwise
    owner = acquisition_owner(settings, "R1")
    assert owner is not None
    viewer = ViewerStation(settings, owner)
    viewer.start()
    try:
        notebook = viewer.notebook
        assert notebook is not None

        def latest() -> Prediction | None:
            return viewer.snapshot().predictions.get("R1")

        assert wait_for(lambda: latest() is not None, timeout=120), "no prediction on the bus"
        first = latest()
        assert first is not None and first.samples_used == 0  # no batch, no sample yet
        # The simulated acquisition runs on its own time line (hours behind the wall clock):
        # the batch and its sample are placed on it, as a replayed batch's would be.
        on_its_clock = datetime.fromtimestamp(first.timestamp, tz=timezone.utc)
        _start_batch_on_r1(notebook, 11, on_its_clock)
        # The viewer's sample screen stores the sample, then the App reloads the batch's
        # samples into the viewer's history (BptwinApp.refresh_batches after SampleSaved).
        notebook.samples.add_sample("vera", 11, taken_at=on_its_clock, od_raw=0.6)
        rows = notebook.samples.list_samples(11)
        viewer.history.set_samples(
            "R1", [r.taken_at.timestamp() for r in rows], [r.od600 for r in rows]
        )

        def adapted() -> bool:
            prediction = latest()
            return prediction is not None and prediction.samples_used >= 1

        # The serve's next predictions rest on the sample (it keeps no trend history).
        assert wait_for(adapted, timeout=120), "the serve's nowcast never used the sample"
        prediction = latest()
        assert prediction is not None and prediction.timestamp > first.timestamp
        assert math.isfinite(prediction.model_od600)
        assert prediction.od600 != pytest.approx(prediction.model_od600, rel=1e-6)
    finally:
        viewer.stop()


def test_a_sample_entered_at_the_acquiring_station_adapts_its_nowcast(tmp_path: Path) -> None:
    """``bptwin run``: the station keeps a trend history; the App's reload of the batch's
    samples after an entry reaches the adaptation through the same notebook read."""
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.station import Station
    from bptwin.tui.settings import Settings

    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.speed = 30.0
    station = Station(settings)
    station.start()
    notebook = NotebookService.from_url(settings.notebook_url())
    try:
        assert station.sample_feed is not None and station.history is not None

        def latest() -> Prediction | None:
            return station.snapshot().predictions.get("R1")

        assert wait_for(lambda: latest() is not None, timeout=120), "no prediction"
        first = latest()
        assert first is not None and first.samples_used == 0
        on_its_clock = datetime.fromtimestamp(first.timestamp, tz=timezone.utc)
        _start_batch_on_r1(notebook, 12, on_its_clock)
        notebook.samples.add_sample("vera", 12, taken_at=on_its_clock, od_raw=0.6)
        rows = notebook.samples.list_samples(12)
        station.history.set_samples(
            "R1", [r.taken_at.timestamp() for r in rows], [r.od600 for r in rows]
        )

        def adapted() -> bool:
            prediction = latest()
            return prediction is not None and prediction.samples_used >= 1

        assert wait_for(adapted, timeout=120), "the station's nowcast never used the sample"
    finally:
        notebook.engine.dispose()
        station.stop()
