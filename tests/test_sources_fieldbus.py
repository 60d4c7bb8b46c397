"""Several field-bus sources on one reactor, through a real station into a real InfluxDB 1.x.

Off-gas from the serial analyser (emulator on a pseudo-terminal), pH and DO from Hamilton ARC
probes behind a Modbus TCP server, temperatures and the stirrer from an OPC UA controller: one
station, every channel stored with exactly the count its source gave, and what a source could
not read counted and shown on the status strip.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from bptwin.drivers.serial_emulator import PtyAnalyser
from tests.adversarial.harness import running, wait_for
from tests.adversarial.test_ingest_paths import admitted_counts, assert_all_arrived, influx_settings
from tests.fixtures.modbus_server import ModbusDevices
from tests.fixtures.opcua_server import NAMESPACE, BioreactorServer

pytestmark = [pytest.mark.influx, pytest.mark.mqtt, pytest.mark.slow]

OPCUA_CHANNELS = {
    "temp_broth": "TempBroth",
    "temp_exhaust": "TempExhaust",
    "stirrer_speed": "StirrerSpeed",
}
WRITES = 20


def test_offgas_serial_probes_modbus_and_controller_opcua_into_one_store(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    with (
        PtyAnalyser(tmp_path / "analyser") as analyser,
        BioreactorServer(("R1",)) as controller,
    ):
        probes = ModbusDevices((1, 2)).serve_tcp()
        try:
            probes.set_hamilton(1, "ph", 6.9)
            probes.set_hamilton(2, "do", 95.0)
            sources = [
                {"name": "offgas", "kind": "serial", "port": analyser.path},
                {
                    "name": "probes",
                    "kind": "modbus",
                    "host": "127.0.0.1",
                    "port": probes.port,
                    "reactors": ["R1"],
                    "interval_s": 0.2,
                    "timeout_s": 0.15,
                    "registers": [
                        {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                        {"channel": "do", "map": "hamilton-arc", "device_id": 2},
                        # A probe that is not on the line: counted and shown, never stored.
                        {"channel": "od_probe", "device_id": 9, "address": 0},
                    ],
                },
                {
                    "name": "dcu",
                    "kind": "opcua",
                    "url": controller.url,
                    "namespace": NAMESPACE,
                    "reactors": ["R1"],
                    "interval_s": 0.1,
                    "nodes": [
                        {"channel": channel, "node": f"s=R1.{name}"}
                        for channel, name in OPCUA_CHANNELS.items()
                    ],
                },
            ]
            settings = influx_settings(
                tmp_path / "data", mqtt_broker, influx_url, influx_database, sources
            )
            with running(settings) as station:
                drivers = {thread.driver.name: thread.driver for thread in station.driver_threads}
                assert wait_for(lambda: all(d.stats.connected for d in drivers.values()))
                assert wait_for(lambda: drivers["dcu"].stats.emitted >= 3)  # the initial values
                for i in range(WRITES):
                    analyser.send_gas(20.9 - i / 100, 0.04 + i / 100)
                    analyser.send_flow(1.5 + i / 1000)
                    for channel, name in OPCUA_CHANNELS.items():
                        controller.write(
                            "R1", name, 30.0 + i / 10 if channel != "stirrer_speed" else 800.0 + i
                        )
                    assert wait_for(lambda i=i: drivers["offgas"].stats.emitted >= 3 * (i + 1))
                    time.sleep(0.002)  # the analyser's readings are keyed by arrival time
                assert wait_for(lambda: drivers["dcu"].stats.emitted >= 3 * (WRITES + 1))
                assert wait_for(lambda: drivers["probes"].stats.emitted >= 20)
                shown = " ".join(station.snapshot().problems)
                inputs = station.rejected_inputs()
                station.stop_drivers()
                admitted = admitted_counts(station)
                assert station.recorder is not None and station.recorder.flush(60)
                assert station.store is not None and station.store.flush(120)
                emitted = {name: driver.stats.emitted for name, driver in drivers.items()}
                modbus_refused = drivers["probes"].stats.rejected_by_reason
                # What InfluxDB holds: what was admitted, nothing refused, nothing spooled.
                assert_all_arrived(station, influx_url, influx_database, Counter(admitted))
        finally:
            probes.close()
    # What each source gave is what the station admitted, per channel.
    assert {c: admitted[c] for c in ("offgas_o2", "offgas_co2", "offgas_flow")} == {
        "offgas_o2": WRITES,
        "offgas_co2": WRITES,
        "offgas_flow": WRITES,
    }
    assert {c: admitted[c] for c in OPCUA_CHANNELS} == dict.fromkeys(OPCUA_CHANNELS, WRITES + 1)
    assert admitted["ph"] == admitted["do"] and admitted["ph"] + admitted["do"] == emitted["probes"]
    assert sum(admitted.values()) == sum(emitted.values())
    assert "od_probe" not in admitted
    # The absent probe: counted per poll, shown on the status strip and in /metrics' total.
    assert modbus_refused["modbus_exception"] >= 1
    assert 1 <= inputs["probes modbus_exception"] <= modbus_refused["modbus_exception"]
    assert "probes modbus_exception" in shown
