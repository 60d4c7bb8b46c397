"""``bptwin doctor`` checks each OPC UA and Modbus source against the real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bptwin.tui.doctor import Status, check_fieldbus
from bptwin.tui.settings import Settings
from tests.fixtures.modbus_server import ModbusDevices
from tests.fixtures.opcua_server import NAMESPACE, BioreactorServer, free_port


@pytest.fixture(scope="module")
def controller() -> Iterator[BioreactorServer]:
    with BioreactorServer(("R1",)) as server:
        yield server


@pytest.fixture
def probes() -> Iterator[ModbusDevices]:
    devices = ModbusDevices((1,)).serve_tcp()
    devices.set_hamilton(1, "ph", 7.0)
    try:
        yield devices
    finally:
        devices.close()


def settings_with(tmp_path: Path, sources: list[dict[str, Any]]) -> Settings:
    return Settings.model_validate(
        {"station": {"data_dir": tmp_path, "reactors": ["R1"]}, "acquisition": {"sources": sources}}
    )


def opcua(url: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "dcu",
        "kind": "opcua",
        "url": url,
        "namespace": NAMESPACE,
        "reactors": ["R1"],
        "nodes": nodes,
    }


def modbus(port: int, registers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "probes",
        "kind": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "reactors": ["R1"],
        "registers": registers,
    }


def test_reachable_sources_whose_points_all_read_pass(
    tmp_path: Path, controller: BioreactorServer, probes: ModbusDevices
) -> None:
    settings = settings_with(
        tmp_path,
        [
            opcua(controller.url, [{"channel": "temp_broth", "node": "s=R1.TempBroth"}]),
            modbus(probes.port, [{"channel": "ph", "map": "hamilton-arc", "device_id": 1}]),
        ],
    )
    results = check_fieldbus(settings)
    assert isinstance(results, list)
    by_name = {r.name: r for r in results}
    assert by_name["source dcu"].status is Status.PASS, by_name["source dcu"].detail
    assert "1 of 1 nodes read" in by_name["source dcu"].detail
    assert by_name["source probes"].status is Status.PASS, by_name["source probes"].detail
    assert "1 of 1 registers read" in by_name["source probes"].detail


def test_a_missing_node_and_an_unreadable_register_fail_naming_them(
    tmp_path: Path, controller: BioreactorServer, probes: ModbusDevices
) -> None:
    settings = settings_with(
        tmp_path,
        [
            opcua(
                controller.url,
                [
                    {"channel": "temp_broth", "node": "s=R1.TempBroth"},
                    {"channel": "stirrer_speed", "node": "s=R1.Stirrer"},
                ],
            ),
            modbus(
                probes.port,
                [
                    {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                    {"channel": "do", "device_id": 1, "address": 2999},
                ],
            ),
        ],
    )
    results = check_fieldbus(settings)
    assert isinstance(results, list)
    by_name = {r.name: r for r in results}
    dcu, probe = by_name["source dcu"], by_name["source probes"]
    assert dcu.status is Status.FAIL and "R1/stirrer_speed" in dcu.detail
    assert "s=R1.Stirrer" in dcu.detail and "acquisition.sources[0]" in dcu.detail
    assert probe.status is Status.FAIL and "R1/do" in probe.detail
    assert "illegal data address" in probe.detail


def test_unreachable_servers_fail_and_no_fieldbus_source_skips(tmp_path: Path) -> None:
    port = free_port()
    settings = settings_with(
        tmp_path,
        [
            opcua(f"opc.tcp://127.0.0.1:{port}/", [{"channel": "temp_broth", "node": "i=1"}]),
            modbus(port, [{"channel": "ph", "address": 0}]),
        ],
    )
    results = check_fieldbus(settings)
    assert isinstance(results, list)
    assert all(r.status is Status.FAIL for r in results)
    assert any("cannot connect" in r.detail for r in results)
    assert any("cannot reach modbus tcp" in r.detail for r in results)
    skipped = check_fieldbus(settings_with(tmp_path, [{"name": "sim", "kind": "simulated"}]))
    assert not isinstance(skipped, list) and skipped.status is Status.SKIP
