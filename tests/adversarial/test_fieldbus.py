"""Field-bus sources as an attacker or a broken device would feed them (docs/security.md).

A station reads an OPC UA controller and Modbus probes (real asyncua and pymodbus servers on
loopback) into its embedded store. The servers send the wrong types, NaN and infinity, values
no probe can measure, a probe set to another unit, a clock an hour ahead, a node that
vanishes, and answers slower than the timeout. Each one is refused and counted (the status
strip and ``/metrics`` show it) or stored flagged ``bad``, never stored as if it were right,
and the other channels flow on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from bptwin.database.reading import Quality, Reading
from bptwin.drivers.base import Driver
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from tests.adversarial.harness import running, wait_for
from tests.fixtures.modbus_server import ModbusDevices
from tests.fixtures.opcua_server import ASYNCUA_DELETE_WARNING, NAMESPACE, BioreactorServer


@pytest.fixture(scope="module")
def controller() -> Iterator[BioreactorServer]:
    with BioreactorServer(("R1",)) as server:
        yield server


@pytest.fixture
def probes() -> Iterator[ModbusDevices]:
    devices = ModbusDevices((1, 2, 3)).serve_tcp()
    devices.set_hamilton(1, "ph", 6.9)
    devices.set_hamilton(2, "do", 90.0)
    try:
        yield devices
    finally:
        devices.close()


def settings_for(tmp_path: Path, sources: list[dict[str, Any]]) -> Settings:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.station.reactors = ["R1"]
    settings.acquisition.sources = sources
    return settings


def opcua_source(
    controller: BioreactorServer, nodes: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "name": "dcu",
        "kind": "opcua",
        "url": controller.url,
        "namespace": NAMESPACE,
        "reactors": ["R1"],
        "interval_s": 0.1,
        "nodes": [{"channel": c, "node": f"s=R1.{n}"} for c, n in nodes.items()],
    } | extra


def modbus_source(
    probes: ModbusDevices, registers: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "name": "probes",
        "kind": "modbus",
        "host": "127.0.0.1",
        "port": probes.port,
        "reactors": ["R1"],
        "interval_s": 0.2,
        "timeout_s": 0.1,
        "registers": registers,
    } | extra


def driver(station: Station, name: str) -> Driver:
    return next(t.driver for t in station.driver_threads if t.driver.name == name)


def stored(station: Station, channel: str) -> list[Reading]:
    assert station.store is not None and station.recorder is not None
    station.recorder.flush(10)
    station.store.flush(10)
    return station.store.read_range("R1", channel, 0, 4e9)


def shown(station: Station) -> str:
    return " ".join(station.snapshot().problems)


def test_an_opcua_server_sending_text_nan_and_infinity_stores_none_of_them(
    tmp_path: Path, controller: BioreactorServer
) -> None:
    settings = settings_for(
        tmp_path, [opcua_source(controller, {"od_probe": "Untyped", "ph": "pH"})]
    )
    with running(settings) as station:
        dcu = driver(station, "dcu")
        assert wait_for(lambda: dcu.stats.connected and dcu.stats.emitted >= 2)
        # One at a time: the server queues at most ten changes of a node between publishes.
        attacks: list[tuple[Any, ua.VariantType]] = [
            ("0.8", ua.VariantType.String),
            (True, ua.VariantType.Boolean),
            (math.nan, ua.VariantType.Double),
            (math.inf, ua.VariantType.Double),
            (-math.inf, ua.VariantType.Float),
            ([0.1, 0.2], ua.VariantType.Double),
        ]
        for count, (value, kind) in enumerate(attacks, start=1):
            controller.write("R1", "Untyped", value, kind=kind)
            assert wait_for(lambda count=count: dcu.stats.rejected >= count)
        controller.write("R1", "Untyped", 0.77)
        assert wait_for(
            lambda: any(r.value == pytest.approx(0.77) for r in stored(station, "od_probe"))
        )
        refused = dcu.stats.rejected_by_reason
        assert refused["wrong_type"] == 3 and refused["not_finite"] == 3
        assert "dcu wrong_type 3" in shown(station) and "dcu not_finite 3" in shown(station)
        good = [r for r in stored(station, "od_probe") if r.quality is not Quality.BAD]
        assert all(math.isfinite(r.value) for r in good)
        # Only the start value and the last one, both numbers the node really held.
        assert all(r.value == 0.1 or r.value == pytest.approx(0.77) for r in good)
        assert stored(station, "ph")  # the other channel flowed on


def test_values_no_probe_can_measure_are_stored_flagged_bad_not_as_right(
    tmp_path: Path, controller: BioreactorServer, probes: ModbusDevices
) -> None:
    settings = settings_for(
        tmp_path,
        [
            opcua_source(controller, {"do": "DO"}),
            modbus_source(
                probes,
                [
                    {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                    {"channel": "temp_broth", "device_id": 3, "address": 0},
                ],
            ),
        ],
    )
    probes.set_hamilton(1, "ph", 25.0, high=30.0)  # the probe claims its range reaches 30
    probes.set_value(3, "holding", 0, -273.0)
    with running(settings) as station:
        assert wait_for(lambda: driver(station, "dcu").stats.connected)
        controller.write("R1", "DO", 500.0)
        assert wait_for(lambda: any(r.value == 500.0 for r in stored(station, "do")))
        assert wait_for(lambda: stored(station, "ph") and stored(station, "temp_broth"))
        for channel, value in (("do", 500.0), ("ph", 25.0), ("temp_broth", -273.0)):
            rows = [r for r in stored(station, channel) if r.value == value]
            assert rows and all(r.quality is Quality.BAD for r in rows), channel


def test_a_probe_set_to_another_unit_is_refused_not_stored_as_the_channels_unit(
    tmp_path: Path, probes: ModbusDevices
) -> None:
    probes.set_hamilton(2, "do", 8.1, unit=0x80)  # mg/L: 8.1 would read as 8 %sat
    settings = settings_for(
        tmp_path,
        [
            modbus_source(
                probes,
                [
                    {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                    {"channel": "do", "map": "hamilton-arc", "device_id": 2},
                ],
            )
        ],
    )
    with running(settings) as station:
        modbus = driver(station, "probes")
        assert wait_for(lambda: modbus.stats.rejected_by_reason.get("wrong_unit", 0) >= 2)
        assert wait_for(lambda: len(stored(station, "ph")) >= 2)
        assert stored(station, "do") == []
        assert "probes wrong_unit" in shown(station)


def test_a_controller_clock_an_hour_ahead_or_years_behind_is_refused_and_counted(
    tmp_path: Path, controller: BioreactorServer
) -> None:
    settings = settings_for(tmp_path, [opcua_source(controller, {"temp_exhaust": "TempExhaust"})])
    with running(settings) as station:
        dcu = driver(station, "dcu")
        assert wait_for(lambda: dcu.stats.connected and stored(station, "temp_exhaust"))
        now = dt.datetime.now(dt.timezone.utc)
        controller.write("R1", "TempExhaust", 40.0, source_time=now + dt.timedelta(hours=1))
        controller.write("R1", "TempExhaust", 41.0, source_time=now - dt.timedelta(days=3 * 365))
        controller.write("R1", "TempExhaust", 26.0)
        assert wait_for(lambda: any(r.value == 26.0 for r in stored(station, "temp_exhaust")))
        assert station.intake is not None
        discarded = station.intake.admission.stats().discarded
        assert discarded[("dcu", "clock_ahead")] == 1 and discarded[("dcu", "too_old")] == 1
        values = {r.value for r in stored(station, "temp_exhaust")}
        assert 40.0 not in values and 41.0 not in values
        assert "clock" in shown(station)  # the clock fault is on the strip


@pytest.mark.filterwarnings(ASYNCUA_DELETE_WARNING)
def test_a_vanishing_node_is_a_counted_gap_while_the_other_nodes_flow(tmp_path: Path) -> None:
    with BioreactorServer(("R1",)) as server:
        settings = settings_for(
            tmp_path, [opcua_source(server, {"ph": "pH", "od_probe": "Vanishing"}, recheck_s=1.0)]
        )
        with running(settings) as station:
            dcu = driver(station, "dcu")
            assert wait_for(lambda: dcu.stats.connected and stored(station, "od_probe"))
            server.delete("R1", "Vanishing")
            assert wait_for(lambda: dcu.stats.rejected_by_reason.get("missing_node", 0) >= 1)
            server.write("R1", "pH", 7.3)
            assert wait_for(lambda: any(r.value == 7.3 for r in stored(station, "ph")))
            last = stored(station, "od_probe")[-1]
            assert last.quality is Quality.BAD and math.isnan(last.value)
            assert "dcu missing_node" in shown(station)


def test_a_probe_slower_than_the_timeout_costs_its_own_readings_only(
    tmp_path: Path, probes: ModbusDevices
) -> None:
    probes.delay_s[2] = 0.5  # DO answers after the driver gave up on it
    settings = settings_for(
        tmp_path,
        [
            modbus_source(
                probes,
                [
                    {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                    {"channel": "do", "map": "hamilton-arc", "device_id": 2},
                ],
                interval_s=0.5,
                timeout_s=0.2,
            )
        ],
    )
    with running(settings) as station:
        modbus = driver(station, "probes")
        assert wait_for(lambda: len(stored(station, "ph")) >= 6)
        timeouts = modbus.stats.rejected_by_reason.get("timeout", 0)
        assert timeouts >= 3
        assert stored(station, "do") == []
        assert "probes timeout" in shown(station)
        assert modbus.stats.connected  # a slow device on a live link is not a lost link
