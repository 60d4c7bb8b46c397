"""The TUI attaches as a viewer to a running ``bptwin serve`` instead of acquiring twice.

A real ``bptwin serve`` subprocess acquires a simulated batch over a private Mosquitto; the
App, started with the station factory of ``bptwin run``, finds the acquisition lock held and
shows that acquisition's live readings and alarms from the bus, says whose it is, and writes
notebook entries. A second acquisition of the same reactor is refused, naming the holder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from bptwin.database.bus import MqttBus
from bptwin.screens.value_table import ValueTable
from bptwin.tui.app import BptwinApp
from bptwin.tui.runtime.acquisition_lock import AcquisitionLockedError
from bptwin.tui.runtime.station import Station
from bptwin.tui.runtime.viewer import ViewerStation, decode_prediction, station_for
from bptwin.tui.settings import Settings
from bptwin.twin.alarms import (
    AlarmState,
    AlarmTransition,
    Priority,
    alarm_id_of,
    transition_message,
)
from tests.fixtures.mqtt import MosquittoServer
from tests.test_bus import wait_for

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "viewertest"


def settings_for(data_dir: Path, host: str, port: int) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port, settings.bus.prefix = host, port, PREFIX
    settings.ui.refresh_s = 0.2
    return settings


@pytest.fixture
def serve(private_mqtt_broker: MosquittoServer, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """``bptwin serve`` acquiring a simulated batch at 30x on the private broker."""
    host, port = private_mqtt_broker.address
    environment = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(tmp_path),
        "BPTWIN_ACQUISITION__SPEED": "30",
        # A simulation under the real reactor name (the test reads "R1").
        "BPTWIN_ACQUISITION__SIMULATED_REACTOR_PREFIX": "",
        "BPTWIN_BUS__BACKEND": "mqtt",
        "BPTWIN_BUS__HOST": host,
        "BPTWIN_BUS__PORT": str(port),
        "BPTWIN_BUS__PREFIX": PREFIX,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "serve"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = settings_for(tmp_path, host, port)
    from bptwin.tui.runtime.acquisition_lock import acquisition_owner

    try:
        assert wait_for(lambda: acquisition_owner(settings, "R1") is not None, timeout=60)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()


def critical_transition(at: float) -> AlarmTransition:
    return AlarmTransition(
        alarm_id=alarm_id_of("R1", "do_low", "lolo"),
        rule="do_low",
        reactor="R1",
        condition="lolo",
        channel="do",
        priority=Priority.CRITICAL,
        from_state=AlarmState.NORMAL,
        to_state=AlarmState.ACTIVE_UNACK,
        at=at,
        actor=None,
        value=12.0,
        message="DO 12 % below 15 % for 2 min",
        reason=None,
        condition_active=True,
    )


def test_second_acquisition_is_refused_naming_the_running_one(
    serve: subprocess.Popen, private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    host, port = private_mqtt_broker.address
    station = Station(settings_for(tmp_path, host, port))
    with pytest.raises(AcquisitionLockedError, match=rf"reactor R1: .*pid {serve.pid}"):
        station.start()
    assert station.bus is None  # nothing of a second acquisition was started


async def test_run_attaches_as_viewer_of_the_running_serve(
    serve: subprocess.Popen, private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    host, port = private_mqtt_broker.address
    settings = settings_for(tmp_path, host, port)
    assert isinstance(station_for(settings), ViewerStation)

    app = BptwinApp(settings, station_factory=station_for)
    async with app.run_test(size=(120, 34)) as pilot:
        for _ in range(150):
            await pilot.pause(0.2)
            if app.station is not None and app.station.snapshot().readings_total > 100:
                break
        viewer = app.station
        assert isinstance(viewer, ViewerStation)
        assert viewer.owner.pid == serve.pid
        # Live readings of the other process's acquisition reach the dashboard.
        table = app.screen.query_one("#current-values", ValueTable)
        for _ in range(150):
            if table.cell("ph", "value") != "—":
                break
            await pilot.pause(0.2)
        assert 3.0 < float(table.cell("ph", "value")) < 8.0
        strip = app.screen.query_one("#status-strip", Static)
        for _ in range(100):
            if "viewer of" in str(strip.content):
                break
            await pilot.pause(0.2)
        assert f"viewer of {viewer.owner.host} pid {serve.pid}" in str(strip.content)

        # An alarm transition published by the acquisition appears in the viewer.
        publisher = MqttBus(host, port)
        publisher.start()
        try:
            topic, payload = transition_message(critical_transition(time.time()), PREFIX)
            publisher.publish(topic, payload, qos=1)
            publisher.publish(f"{PREFIX}/v1/R1/alarms/do_low", b"{not json", qos=1)
            assert publisher.flush(10)
        finally:
            publisher.stop()
        for _ in range(150):
            if viewer.snapshot().alarms and viewer.rejected:
                break  # the garbled one comes after the valid one: wait for both
            await pilot.pause(0.2)
        alarms = viewer.snapshot().alarms
        assert [a.alarm_id for a in alarms] == [alarm_id_of("R1", "do_low", "lolo")]
        assert alarms[0].priority is Priority.CRITICAL
        assert viewer.rejected == 1  # the garbled transition was refused and counted

        # The viewer writes notebook entries into the acquisition's notebook.
        assert viewer.notebook is not None
        viewer.notebook.operators.create_operator("setup", "vera", "supervisor", "2468")
        viewer.notebook.batches.create_batch("vera", 11, "A")
        viewer.notebook.notes.add_note("vera", 11, "watched from a second terminal")
        assert [n.text for n in viewer.notebook.notes.list_notes(11)] == [
            "watched from a second terminal"
        ]
        await pilot.press("q")
    assert serve.poll() is None  # closing the viewer left the acquisition running


def test_prediction_payload_from_the_bus_is_decoded() -> None:
    from bptwin.twin.predictor import Prediction
    from bptwin.twin.serving import prediction_payload

    sent = Prediction(1_796_000_000.0, 12.5, 11.0, 14.0, "od600-x", reactor="R1", window_index=9)
    got = decode_prediction("bptwin/v1/R1/predictions/od600", prediction_payload(sent))
    assert (got.timestamp, got.od600, got.lower, got.upper) == (1_796_000_000.0, 12.5, 11.0, 14.0)
    assert (got.reactor, got.model_version, got.window_index) == ("R1", "od600-x", 9)
    with pytest.raises(ValueError, match="'lower' must be a number"):
        decode_prediction("bptwin/v1/R1/predictions/od600", b'{"ts": 1796000000, "value": 1}')


def test_the_viewer_keeps_adaptation_drift_and_contributions_of_a_prediction() -> None:
    """The viewer's dashboard draws the model line from the bus payload; a garbled or oversized
    field from the broker is dropped or cut, never shown whole."""
    from bptwin.tui.runtime.viewer import MAX_DRIFT_TEXT
    from bptwin.twin.predictor import Prediction
    from bptwin.twin.serving import prediction_payload

    sent = Prediction(
        1_796_000_000.0,
        12.5,
        11.0,
        14.0,
        "od600-x",
        reactor="R1",
        model_od600=13.1,
        samples_used=3,
        attributions=(("od_probe_mean", 2.4), ("cum_co2_mmol_per_l", -0.03)),
        drift="a sample is 18 % off the model (limit 4 %)",
    )
    got = decode_prediction("bptwin/v1/R1/predictions/od600", prediction_payload(sent))
    assert (got.samples_used, got.drift, got.model_od600) == (3, sent.drift, 13.1)
    assert got.attributions == sent.attributions
    garbled = (
        b'{"ts": 1796000000, "value": 1, "lower": 0.9, "upper": 1.1, "samples_used": "3",'
        b' "drift": "' + b"x" * 5000 + b'", "top_contributions": [{"feature": 5},'
        b' {"feature": "do_mean", "ln_od600": "NaN"}, {"feature": "ph_mean", "ln_od600": 0.1}]}'
    )
    got = decode_prediction("bptwin/v1/R1/predictions/od600", garbled)
    assert got.samples_used == 0 and len(got.drift) == MAX_DRIFT_TEXT
    assert got.attributions == (("ph_mean", 0.1),)
