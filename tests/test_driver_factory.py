"""build_drivers: settings values to drivers, and refusals that name the setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bptwin.database.bus import LocalBus
from bptwin.drivers.factory import DriverConfigError, build_drivers
from bptwin.drivers.mqtt_source import MqttSourceDriver
from bptwin.drivers.replay import ReplayDriver
from bptwin.drivers.serial_analyser import SerialAnalyserDriver
from bptwin.drivers.simulated import SimulatedReactorDriver


def test_each_source_builds_its_driver(tmp_path: Path) -> None:
    recording = tmp_path / "batch.parquet"
    pd.DataFrame({"timestamp": [1.78e9, 1.78e9 + 1], "ph": [5.0, 5.1]}).to_parquet(recording)
    assert build_drivers("none", print) == []
    samples: list[object] = []
    (simulated,) = build_drivers(
        "simulated", print, reactor="R3", speed=60, seed=9, on_sample=samples.append
    )
    assert isinstance(simulated, SimulatedReactorDriver) and simulated.speed == 60
    assert simulated.on_sample == samples.append
    assert simulated.reactor == "R3" and simulated.seed == 9
    (serial,) = build_drivers("serial", print, serial_port="/dev/ttyS9", baudrate=19200)
    assert isinstance(serial, SerialAnalyserDriver) and serial.baudrate == 19200
    (replay,) = build_drivers("replay", print, replay_file=recording, speed=0)
    assert isinstance(replay, ReplayDriver) and len(replay.recording) == 2
    bus = LocalBus()
    (mqtt,) = build_drivers("mqtt", print, bus=bus, bus_is_mqtt=True, topic_map={"lab/ph": "ph"})
    assert isinstance(mqtt, MqttSourceDriver)
    assert build_drivers("mqtt", print, bus=bus, bus_is_mqtt=True, topic_map={}) == []


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("modbus", {}, "acquisition.source: 'modbus' is not one of"),
        ("replay", {}, "acquisition.replay_file: needed"),
        ("replay", {"replay_file": "/nonexistent.parquet"}, "does not exist"),
        ("mqtt", {"topic_map": {"lab/ph": "ph"}}, "needs bus.backend = 'mqtt'"),
        ("serial", {"serial_port": ""}, "acquisition.serial.port"),
    ],
)
def test_bad_settings_name_the_setting(source: str, options: dict, message: str) -> None:
    with pytest.raises(DriverConfigError, match=message):
        build_drivers(source, print, **options)


def test_bad_topic_map_and_loops_are_refused() -> None:
    bus = LocalBus()
    with pytest.raises(DriverConfigError, match="unknown channel 'co2'"):
        build_drivers("mqtt", print, bus=bus, bus_is_mqtt=True, topic_map={"lab/co2": "co2"})
    with pytest.raises(DriverConfigError, match="would loop"):
        build_drivers(
            "mqtt", print, bus=bus, bus_is_mqtt=True, topic_map={"bptwin/v1/R1/sensors/ph": "ph"}
        )
