"""The OPC UA source against a real asyncua server modelled on a bioreactor controller."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from bptwin.database.reading import Quality
from bptwin.drivers.base import DriverThread
from bptwin.drivers.opcua_source import OpcUaOptions, OpcUaSourceDriver
from bptwin.drivers.sources import DriverConfigError, plan_sources
from tests.driver_sinks import Collector, wait_for
from tests.fixtures.opcua_server import ASYNCUA_DELETE_WARNING, NAMESPACE, BioreactorServer


@pytest.fixture(scope="module")
def controller() -> Iterator[BioreactorServer]:
    """One controller for the tests that only read and write values."""
    with BioreactorServer(("R1", "R2")) as server:
        yield server


def options(server: BioreactorServer, nodes: list[dict[str, Any]], **values: Any) -> OpcUaOptions:
    base: dict[str, Any] = {
        "name": "dcu",
        "url": server.url,
        "namespace": NAMESPACE,
        "interval_s": 0.1,
        "timeout_s": 2.0,
    }
    return OpcUaOptions.model_validate(base | {"nodes": nodes} | values)


@contextlib.contextmanager
def start(driver: OpcUaSourceDriver) -> Iterator[DriverThread]:
    """The driver running and connected; stopped (and disconnected) on leaving."""
    with DriverThread(driver) as thread:
        wait_for(lambda: driver.stats.connected, "the driver to connect")
        yield thread


def test_nodes_by_id_and_by_path_arrive_with_the_servers_time_and_status(
    controller: BioreactorServer,
) -> None:
    sink = Collector()
    nodes = [
        {"channel": "ph", "reactor": "R1", "node": "s=R1.pH"},
        {"channel": "do", "reactor": "R1", "path": "Bioreactor/R1/DO"},
        {"channel": "temp_broth", "reactor": "R1", "node": controller.node_id("R1", "TempBroth")},
        {
            "channel": "stirrer_speed",
            "reactor": "R1",
            "path": controller.path("R1", "StirrerSpeed"),
        },
        {"channel": "ph", "reactor": "R2", "node": "s=R2.pH"},
        {"channel": "do", "reactor": "R2", "node": "s=R2.DO"},
        {"channel": "temp_broth", "reactor": "R2", "node": "s=R2.TempBroth"},
        {"channel": "stirrer_speed", "reactor": "R2", "node": "s=R2.StirrerSpeed"},
    ]
    driver = OpcUaSourceDriver(sink, options(controller, nodes))
    with start(driver):
        wait_for(lambda: sink.of("stirrer_speed", "R2"), "the initial values")
        measured_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=3)
        controller.write("R1", "pH", 6.91, source_time=measured_at)
        wait_for(lambda: any(r.value == 6.91 for r in sink.of("ph")), "pH 6.91")
        controller.write("R1", "DO", 42.0, ua.StatusCodes.UncertainLastUsableValue)
        wait_for(lambda: any(r.value == 42.0 for r in sink.of("do")), "DO 42")
        controller.write("R1", "TempBroth", 31.0, ua.StatusCodes.BadSensorFailure)
        wait_for(lambda: any(r.quality is Quality.BAD for r in sink.of("temp_broth")), "bad temp")
        controller.write("R2", "StirrerSpeed", 1000.0)
        wait_for(lambda: any(r.value == 1000.0 for r in sink.of("stirrer_speed", "R2")), "R2")
    ph = next(r for r in sink.of("ph") if r.value == 6.91)
    assert ph.timestamp == pytest.approx(measured_at.timestamp(), abs=1e-3)  # the source's time
    assert (ph.unit, ph.quality) == ("pH", Quality.GOOD)
    assert next(r for r in sink.of("do") if r.value == 42.0).quality is Quality.UNCERTAIN
    bad = next(r for r in sink.of("temp_broth") if r.quality is Quality.BAD)
    assert math.isnan(bad.value)  # a bad status carries no value into the store
    assert driver.stats.rejected == 0 and not driver.polling


def test_a_missing_node_and_nodes_of_the_wrong_type_are_named_counted_and_skipped(
    controller: BioreactorServer,
) -> None:
    sink = Collector()
    nodes = [
        {"channel": "ph", "node": "s=R1.pH"},
        {"channel": "do", "node": "s=R1.DissolvedOxygen"},  # no such node
        {"channel": "temp_broth", "path": "Bioreactor/R1/Temperature"},  # no such path
        {"channel": "stirrer_speed", "node": "s=R1.Label"},  # a String
        {"channel": "air_flow", "node": "s=R1.Running"},  # a Boolean
        {"channel": "o2_flow", "path": "Bioreactor/R1"},  # an object, not a variable
    ]
    driver = OpcUaSourceDriver(sink, options(controller, nodes, reactors=["R1"]))
    with start(driver):
        wait_for(lambda: sink.of("ph"), "pH, which exists")
    reasons = driver.stats.rejected_by_reason
    assert reasons["missing_node"] >= 2 and reasons["wrong_type"] >= 3
    missing = driver.missing_points
    assert set(missing) == {
        "R1/do",
        "R1/temp_broth",
        "R1/stirrer_speed",
        "R1/air_flow",
        "R1/o2_flow",
    }
    assert "s=R1.DissolvedOxygen" in missing["R1/do"] and "no such node" in missing["R1/do"]
    assert "String" in missing["R1/stirrer_speed"] and "Boolean" in missing["R1/air_flow"]
    assert "not a variable" in missing["R1/o2_flow"]
    assert {r.channel for r in sink.readings} == {"ph"}


def test_nan_infinity_and_text_from_a_node_are_refused_not_stored(
    controller: BioreactorServer,
) -> None:
    sink = Collector()
    driver = OpcUaSourceDriver(
        sink,
        options(controller, [{"channel": "od_probe", "node": "s=R2.Untyped"}], reactors=["R2"]),
    )
    with start(driver):
        wait_for(lambda: sink.of("od_probe", "R2"), "the first value")
        for value in (math.nan, math.inf, -math.inf):
            controller.write("R2", "Untyped", value)
        controller.write("R2", "Untyped", "7.5", kind=ua.VariantType.String)
        controller.write("R2", "Untyped", 0.42)
        wait_for(lambda: any(r.value == 0.42 for r in sink.of("od_probe", "R2")), "0.42")
    good = [r.value for r in sink.of("od_probe", "R2") if r.quality is not Quality.BAD]
    assert all(math.isfinite(v) for v in good) and 0.42 in good
    assert driver.stats.rejected_by_reason["not_finite"] == 3
    assert driver.stats.rejected_by_reason["wrong_type"] == 1


def test_poll_mode_reads_each_interval_and_skips_values_the_server_did_not_change(
    controller: BioreactorServer,
) -> None:
    sink = Collector()
    driver = OpcUaSourceDriver(
        sink,
        options(
            controller,
            [{"channel": "temp_exhaust", "node": "s=R1.TempExhaust"}],
            reactors=["R1"],
            mode="poll",
            interval_s=0.1,
        ),
    )
    with start(driver):
        wait_for(lambda: sink.of("temp_exhaust"), "the first value")
        time.sleep(0.5)  # several polls of an unchanged value (this asserts their absence)
        unchanged = len(sink.of("temp_exhaust"))
        controller.write("R1", "TempExhaust", 26.5)
        wait_for(lambda: any(r.value == 26.5 for r in sink.of("temp_exhaust")), "26.5")
    assert unchanged == 1
    assert driver.polling


@pytest.mark.filterwarnings(ASYNCUA_DELETE_WARNING)
def test_a_node_that_disappears_gives_a_bad_reading_and_a_count_the_rest_flow_on() -> None:
    with BioreactorServer(("R1",)) as server:
        sink = Collector()
        nodes = [
            {"channel": "ph", "node": "s=R1.pH"},
            {"channel": "od_probe", "node": "s=R1.Vanishing"},
        ]
        driver = OpcUaSourceDriver(sink, options(server, nodes, reactors=["R1"], recheck_s=1.0))
        with start(driver):
            wait_for(lambda: sink.of("od_probe") and sink.of("ph"), "both channels")
            server.delete("R1", "Vanishing")
            wait_for(lambda: "R1/od_probe" in driver.missing_points, "the loss to be noticed")
            server.write("R1", "pH", 7.2)
            wait_for(lambda: any(r.value == 7.2 for r in sink.of("ph")), "pH after the loss")
        last = sink.of("od_probe")[-1]
        assert last.quality is Quality.BAD and math.isnan(last.value)
        assert driver.stats.rejected_by_reason["missing_node"] >= 1
        assert "s=R1.Vanishing" in driver.missing_points["R1/od_probe"]


def test_a_controller_that_restarts_is_reconnected_with_back_off() -> None:
    with BioreactorServer(("R1",)) as server:
        sink = Collector()
        driver = OpcUaSourceDriver(
            sink,
            options(server, [{"channel": "ph", "node": "s=R1.pH"}], reactors=["R1"], timeout_s=1.0),
            backoff_initial_s=0.1,
            backoff_max_s=0.5,
        )
        with start(driver):
            wait_for(lambda: sink.of("ph"), "the first value")
            server.stop()
            wait_for(lambda: not driver.stats.connected, "the driver to notice the loss")
            server.start()
            wait_for(lambda: driver.stats.reconnects >= 1, "a reconnect")
            server.write("R1", "pH", 6.55)
            wait_for(lambda: any(r.value == 6.55 for r in sink.of("ph")), "values again")
        assert driver.stats.errors >= 1


def test_an_unreachable_server_is_counted_and_retried_without_readings() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens here once the probe is closed
    sink = Collector()
    url = f"opc.tcp://127.0.0.1:{port}/"
    driver = OpcUaSourceDriver(
        sink,
        OpcUaOptions.model_validate(
            {
                "name": "dcu",
                "url": url,
                "reactors": ["R1"],
                "nodes": [{"channel": "ph", "node": "ns=2;s=x"}],
            }
        ),
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
    )
    with DriverThread(driver):
        wait_for(lambda: driver.stats.errors >= 2, "two failed attempts")
    assert not sink.readings and not driver.stats.connected


def make_certificate(folder: Path, name: str, uri: str) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = generate_private_key()
    certificate = generate_self_signed_app_certificate(
        key,
        name,
        {},
        [
            x509.UniformResourceIdentifier(uri),
            x509.DNSName(socket.gethostname()),
            x509.DNSName("localhost"),
        ],
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
    )
    cert_path, key_path = folder / f"{name}-cert.der", folder / f"{name}-key.pem"
    cert_path.write_bytes(certificate.public_bytes(Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_signed_and_encrypted_with_a_user_and_a_wrong_password_refused(tmp_path: Path) -> None:
    server_cert, server_key = make_certificate(tmp_path, "server", "urn:bptwin:test:server")
    client_cert, client_key = make_certificate(tmp_path, "client", "urn:bptwin:opcua-client")
    password_file = tmp_path / "opcua-password"
    password_file.write_text("s3cret\n")
    with BioreactorServer(
        ("R1",), security=(server_cert, server_key), users=("bptwin", "s3cret")
    ) as server:
        secure = {
            "security_policy": "Basic256Sha256",
            "security_mode": "SignAndEncrypt",
            "certificate": str(client_cert),
            "private_key": str(client_key),
            "server_certificate": str(server_cert),
            "username": "bptwin",
            "reactors": ["R1"],
        }
        nodes = [{"channel": "ph", "node": "s=R1.pH"}]
        sink = Collector()
        driver = OpcUaSourceDriver(
            sink, options(server, nodes, password_file=str(password_file), **secure)
        )
        with start(driver):
            wait_for(lambda: sink.of("ph"), "pH over the encrypted channel")
        refused = Collector()
        wrong = OpcUaSourceDriver(
            refused,
            options(server, nodes, password="guess", **secure),
            backoff_initial_s=0.05,
            backoff_max_s=0.1,
        )
        with DriverThread(wrong):
            wait_for(lambda: wrong.stats.errors >= 1, "the refusal counted")
        assert not refused.readings and not wrong.stats.connected


def test_opcua_settings_that_cannot_work_are_refused_by_name(tmp_path: Path) -> None:
    base = {"name": "dcu", "kind": "opcua", "url": "opc.tcp://10.0.0.5:4840", "reactors": ["R1"]}
    cases = [
        ({"nodes": [{"channel": "ph"}]}, "give either 'node'"),
        ({"nodes": [{"channel": "ph", "node": "i=1", "path": "a/b"}]}, "give either 'node'"),
        ({"url": "http://x", "nodes": [{"channel": "ph", "node": "i=1"}]}, "url"),
        (
            {"security_policy": "Basic256Sha256", "nodes": [{"channel": "ph", "node": "i=1"}]},
            "needs 'certificate' and 'private_key'",
        ),
        (
            {
                "certificate": str(tmp_path / "absent.der"),
                "private_key": str(tmp_path / "k"),
                "security_policy": "Basic256Sha256",
                "nodes": [{"channel": "ph", "node": "i=1"}],
            },
            "does not exist",
        ),
        ({"password": "x", "nodes": [{"channel": "ph", "node": "i=1"}]}, "needs its 'username'"),
        ({"channels": ["*"], "nodes": [{"channel": "ph", "node": "i=1"}]}, "not '\\*'"),
    ]
    for values, message in cases:
        with pytest.raises(DriverConfigError, match=message):
            plan_sources([base | values], reactors=["R1"], bus_is_mqtt=False)
