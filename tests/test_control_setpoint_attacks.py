"""Threat: setpoints from someone who should not send them, through a real Mosquitto.

The finding: with the default anonymous broker and control mode 0, an anonymous
``mosquitto_pub`` to ``bptwin/v1/R1/setpoints/stirrer_speed`` (authorised until the year 2000)
drove the simulated reactor to 1999 rpm, with no record and nothing logged. Now each forgery is
refused and counted by reason, a correctly signed setpoint is obeyed in mode 1 (and recorded)
and never in mode 0, and the documented broker ACL keeps other users off the setpoint topics.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bptwin.database.bus import MqttBus
from bptwin.database.bus.payloads import iso_timestamp
from bptwin.database.migrate import upgrade
from bptwin.eln.control_service import list_control_actions
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.runtime.control_loop import StationControl
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from bptwin.twin.actuation import (
    Actuator,
    ControlAuthorisation,
    ControlKey,
    ControlMode,
    ControlSettings,
)
from bptwin.twin.control import Recommendation
from bptwin.twin.setpoints import signed_payload
from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import ReactorSimulator
from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary, mosquitto_tool
from tests.fixtures.servers import server_missing

pytestmark = pytest.mark.mqtt

WAIT_S = 30.0  # upper bound for a condition to become true on a loaded machine
DOCS = Path(__file__).resolve().parent.parent / "docs" / "control.md"
KEY = ControlKey.generate()
# The finding's payload, as it was sent.
FORGED = {"ts": "now", "value": 1999, "unit": "rpm", "authorised_until": "2000-01-01T00:00:00Z"}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def mosquitto_pub(host: str, port: int, topic: str, payload: bytes, *user: str) -> None:
    """Publish as an outside client would, with the real command-line tool."""
    tool = mosquitto_tool("mosquitto_pub")
    if tool is None:
        server_missing("mosquitto_pub is not installed (Debian package 'mosquitto-clients')")
    command = [tool, "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-s", *user]
    subprocess.run(command, input=payload, check=True, timeout=WAIT_S)


def forged_payload() -> bytes:
    return json.dumps({**FORGED, "ts": iso_timestamp(time.time())}).encode()


def signed(topic: str, key: ControlKey = KEY, **changes: Any) -> bytes:
    """A setpoint signed with ``key`` (the station's: what only the station, or a thief of its
    key, can make)."""
    now = time.time()
    reactor, parameter = topic.split("/")[-3], topic.split("/")[-1]
    data = {
        "reactor": reactor,
        "parameter": parameter,
        "ts": iso_timestamp(now),
        "seq": int(now * 1000),
        "value": 650.0,
        "unit": "rpm",
        "previous": 600.0,
        "mode": 1,
        "rule": "do_low_stirrer_up",
        "reason": "test",
        "supervisor": "sam",
        "authorised_until": iso_timestamp(now + 600),
        "source": "bptwin",
    }
    data.update(changes)
    return signed_payload(topic, data, key)


def recommendation(value: float = 650.0) -> Recommendation:
    return Recommendation(
        timestamp=time.time(),
        reactor="R1",
        parameter="stirrer_speed",
        current=600.0,
        recommended=value,
        unit="rpm",
        reason="DO 24 %: raise the stirrer",
        rule="do_low_stirrer_up",
        confidence=0.9,
    )


@pytest.fixture
def notebook(tmp_path: Path) -> Iterator[NotebookService]:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    service = NotebookService.from_url(url)
    service.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
    yield service
    service.engine.dispose()


class Receiver:
    """The station's receiving end on a real broker: StationControl.follow_setpoints."""

    def __init__(
        self,
        broker: tuple[str, int],
        prefix: str,
        mode: ControlMode,
        notebook: NotebookService,
    ) -> None:
        self.reactor = ReactorSimulator(SimulationConfig(), seed=1)
        self.bus = MqttBus(*broker)
        settings = ControlSettings(mode=mode, enabled=True)
        self.control = StationControl(
            ["R1"], bus=self.bus, prefix=prefix, settings=settings, notebook=notebook, key=KEY
        )
        self.bus.start()
        self.control.follow_setpoints(self.bus, lambda reactor: self.reactor)
        assert self.bus.drain(WAIT_S)

    def handled(self) -> int:
        follower = self.control.follower
        assert follower is not None
        return follower.obeyed + sum(follower.refused_counts().values())

    def stop(self) -> None:
        self.bus.stop()


@pytest.fixture
def receivers(
    mqtt_broker: tuple[str, int], mqtt_prefix: str, notebook: NotebookService
) -> Iterator[Callable[[ControlMode], Receiver]]:
    made: list[Receiver] = []

    def make(mode: ControlMode) -> Receiver:
        made.append(Receiver(mqtt_broker, mqtt_prefix, mode, notebook))
        return made[-1]

    yield make
    for receiver in made:
        receiver.stop()


def test_forged_expired_replayed_and_out_of_range_setpoints_are_refused_and_counted(
    receivers: Callable[[ControlMode], Receiver],
    mqtt_broker: tuple[str, int],
    mqtt_prefix: str,
    notebook: NotebookService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bptwin.tui.runtime.control_loop")
    receiver = receivers(ControlMode.CLOSED_LOOP)
    host, port = mqtt_broker
    topic = f"{mqtt_prefix}/v1/R1/setpoints/stirrer_speed"

    # The station itself, confirmed by a supervisor: its setpoint is obeyed and recorded.
    station_bus = MqttBus(host, port)
    station_bus.start()
    captured: list[bytes] = []
    lock = threading.Lock()

    def capture(_: str, payload: bytes) -> None:
        with lock:
            captured.append(payload)

    station_bus.subscribe(topic, capture, qos=1)
    try:
        settings = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=True)
        actuator = Actuator(station_bus, "R1", settings, prefix=mqtt_prefix, key=KEY)
        actuator.authorise(ControlAuthorisation.for_minutes("sam", "R1", 30))
        assert actuator.actuate(recommendation()).sent
        wait_for(lambda: receiver.handled() == 1 and bool(captured), "the signed setpoint")
    finally:
        station_bus.stop()
    assert receiver.reactor.external_setpoints == {"stirrer_speed": 650.0}

    attacks = [
        forged_payload(),  # anonymous and unsigned: the finding
        signed(topic, authorised_until=iso_timestamp(time.time() - 60)),  # expired
        captured[0],  # replayed, byte for byte
        signed(topic, value=1999.0),  # out of range, even signed
        signed(topic, key=ControlKey.generate()),  # signed, but not with the station's key
    ]
    for payload in attacks:
        mosquitto_pub(host, port, topic, payload)  # anonymous, as the finding
    wait_for(lambda: receiver.handled() == 1 + len(attacks), "every attack handled")

    follower = receiver.control.follower
    assert follower is not None and follower.obeyed == 1
    assert receiver.control.refused_setpoints() == {
        "unsigned": 1,
        "expired": 1,
        "replayed": 1,
        "out_of_limits": 1,
        "bad_signature": 1,
    }
    assert receiver.reactor.external_setpoints == {"stirrer_speed": 650.0}  # unchanged
    commands = list_control_actions(notebook, reactor="R1", kind="command")
    assert [(row.value, row.supervisor, row.topic) for row in commands] == [(650.0, "sam", topic)]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for reason in ("unsigned", "expired", "replayed", "out_of_limits", "bad_signature"):
        assert f"setpoint refused [{reason}]" in logged


def test_a_correctly_signed_setpoint_is_never_obeyed_in_mode_0(
    receivers: Callable[[ControlMode], Receiver],
    mqtt_broker: tuple[str, int],
    mqtt_prefix: str,
    notebook: NotebookService,
) -> None:
    receiver = receivers(ControlMode.ADVISORY)
    host, port = mqtt_broker
    topic = f"{mqtt_prefix}/v1/R1/setpoints/stirrer_speed"
    mosquitto_pub(host, port, topic, signed(topic))
    mosquitto_pub(host, port, topic, forged_payload())
    wait_for(lambda: receiver.handled() == 2, "both setpoints handled")
    assert receiver.control.refused_setpoints() == {"not_closed_loop": 1, "unsigned": 1}
    assert receiver.reactor.external_setpoints == {}
    assert list_control_actions(notebook, reactor="R1", kind="command") == []


def test_the_findings_setpoint_leaves_a_default_station_untouched(
    mqtt_broker: tuple[str, int],
    mqtt_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bptwin.tui.runtime.control_loop")
    host, port = mqtt_broker
    settings = Settings()  # control mode 0, no key, anonymous broker: as shipped
    settings.station.data_dir = tmp_path
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port, settings.bus.prefix = host, port, mqtt_prefix
    station = Station(settings)
    station.start()
    try:
        assert station.control is not None
        (driver,) = [thread.driver for thread in station.driver_threads]
        wait_for(lambda: getattr(driver, "simulator", None) is not None, "the simulated reactor")
        mosquitto_pub(host, port, f"{mqtt_prefix}/v1/R1/setpoints/stirrer_speed", forged_payload())
        wait_for(lambda: bool(station.control and station.control.refused_setpoints()), "refusal")
        assert station.control.refused_setpoints() == {"not_closed_loop": 1}
        simulator = getattr(driver, "simulator", None)
        assert simulator is not None and simulator.external_setpoints == {}
        assert station.notebook is not None
        assert list_control_actions(station.notebook.service, reactor="R1", kind="command") == []
    finally:
        station.stop()
    assert any("setpoint refused [not_closed_loop]" in r.getMessage() for r in caplog.records)


def acl_from_docs(prefix: str) -> str:
    """The ACL shown in docs/control.md, for this test's topic prefix."""
    block = re.search(r"```\n(# /etc/mosquitto/acl.*?)```", DOCS.read_text(), flags=re.S)
    assert block is not None, "docs/control.md lost its ACL example"
    return block.group(1).replace("bptwin/v1/", f"{prefix}/v1/")


def test_the_documented_acl_lets_only_the_station_publish_setpoints(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        server_missing("mosquitto is not installed, so no broker with an ACL can start")
    prefix = "acl"
    acl = tmp_path / "acl"
    acl.write_text(acl_from_docs(prefix))
    users = {"bptwin": "station-secret", "gateway": "gateway-secret"}
    with MosquittoServer(
        tmp_path / "broker", users=users, extra_config=f"acl_file {acl}\n"
    ) as broker:
        host, port = broker.address
        topic = f"{prefix}/v1/R1/setpoints/stirrer_speed"
        sensors = f"{prefix}/v1/R1/sensors/do"
        gateway = MqttBus(host, port, username="gateway", password="gateway-secret")
        station = MqttBus(host, port, username="bptwin", password="station-secret")
        arrived: list[tuple[str, bytes]] = []
        seen = threading.Lock()

        def collect(topic_: str, payload: bytes) -> None:
            with seen:
                arrived.append((topic_, payload))

        gateway.start()
        station.start()
        try:
            # Subscribing on a connected bus waits for the broker's SUBACK.
            gateway.subscribe(topic, collect, qos=1)
            station.subscribe(f"{prefix}/v1/#", collect, qos=1)
            # The gateway's own forgery, then a reading it may send: the broker keeps order.
            gateway.publish(topic, signed(topic, value=999.0), qos=1)
            gateway.publish(sensors, b'{"ts": 1, "value": 1}', qos=1)
            wait_for(lambda: any(t == sensors for t, _ in arrived), "the gateway's reading")
            station.publish(topic, signed(topic), qos=1)
            wait_for(lambda: sum(t == topic for t, _ in arrived) >= 2, "the station's setpoint")
        finally:
            gateway.stop()
            station.stop()
        setpoints = [json.loads(p)["value"] for t, p in arrived if t == topic]
        assert setpoints == [650.0, 650.0]  # the station's, seen by both; never the 999
        with pytest.raises((ConnectionRefusedError, OSError)):
            anonymous = MqttBus(host, port)
            anonymous.start()


def test_doctor_warns_when_the_broker_lets_anyone_in(
    mqtt_broker: tuple[str, int], tmp_path: Path
) -> None:
    from bptwin.tui.doctor import Status, check_broker

    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port = mqtt_broker
    result = check_broker(settings)
    assert result.status is Status.WARN
    assert "anonymous" in result.detail and "bus.username" in result.detail
