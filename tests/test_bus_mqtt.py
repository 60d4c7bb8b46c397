"""MqttBus against real Mosquitto brokers: external publishers, reconnects, sessions, auth, TLS."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus, topics
from bptwin.database.bus.mqtt import default_client_id
from bptwin.database.reading import Quality, Reading
from tests.fixtures.mqtt import MosquittoServer, mosquitto_tool
from tests.fixtures.servers import free_port, server_missing
from tests.test_bus import Inbox, wait_for

pytestmark = pytest.mark.mqtt

FAST_RECONNECT = (1, 2)  # seconds; keeps reconnect tests short


@pytest.fixture
def started() -> Iterator[list[MqttBus]]:
    """Buses a test starts; all stopped at the end whatever happens."""
    buses: list[MqttBus] = []
    yield buses
    for bus in buses:
        bus.stop()


def start(buses: list[MqttBus], *args: object, **kwargs: object) -> MqttBus:
    bus = MqttBus(*args, **kwargs)  # type: ignore[arg-type]
    bus.start()
    buses.append(bus)
    return bus


def mosquitto_pub(host: str, port: int, topic: str, message: str, *extra: str) -> None:
    tool = mosquitto_tool("mosquitto_pub")
    if tool is None:
        server_missing("mosquitto_pub is not installed (package 'mosquitto-clients')")
    command = [tool, "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-m", message, *extra]
    subprocess.run(command, check=True, timeout=30)


def test_external_client_feeds_readings(
    mqtt_broker: tuple[str, int], mqtt_prefix: str, started: list[MqttBus]
) -> None:
    host, port = mqtt_broker
    bus = start(started, host, port)
    inbox = Inbox()
    bus.subscribe_readings(inbox, prefix=mqtt_prefix)
    stamp_ms = int(time.time() * 1000)
    single = {"ts": stamp_ms, "value": 5.02, "unit": "pH", "quality": "good"}
    mosquitto_pub(
        host, port, topics.reading_topic("vessel1", "ph", mqtt_prefix), json.dumps(single)
    )
    snapshot = {"ts": stamp_ms / 1000, "values": {"do": 41.5, "offgas_co2": {"value": 1.8}}}
    mosquitto_pub(host, port, topics.snapshot_topic("vessel1", mqtt_prefix), json.dumps(snapshot))
    mosquitto_pub(host, port, topics.reading_topic("vessel1", "ph", mqtt_prefix), "5.0")
    assert inbox.wait_count(3)
    assert wait_for(lambda: bus.stats.malformed >= 1)  # the bare "5.0" is not a reading object
    by_channel = {r.channel: r for r in inbox.items}
    assert by_channel["ph"].value == 5.02 and by_channel["ph"].quality is Quality.GOOD
    assert by_channel["ph"].timestamp == pytest.approx(stamp_ms / 1000)
    assert by_channel["do"].unit == "%sat" and by_channel["offgas_co2"].unit == "%v/v"
    assert {r.reactor for r in inbox.items} == {"vessel1"}


def test_reconnects_and_resubscribes_after_broker_restart(
    private_mqtt_broker: MosquittoServer, started: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    bus = start(started, host, port, reconnect_delay_s=FAST_RECONNECT)
    inbox = Inbox()
    bus.subscribe_readings(inbox, prefix="plant")
    private_mqtt_broker.stop()
    assert wait_for(lambda: not bus.connected)
    private_mqtt_broker.start()  # no persistence: the broker forgot every subscription
    assert wait_for(lambda: bus.connected)
    assert bus.stats.reconnects == 1
    reading = Reading(round(time.time(), 3), "r1", "ph", 5.1, "pH")
    publisher = start(started, host, port)
    # The subscription may still be on its way to the broker: publish until one arrives.
    assert wait_for(lambda: publisher.publish_reading(reading, prefix="plant") or inbox.items)
    assert inbox.items[0].value == 5.1


def test_publishes_while_disconnected_are_sent_after_reconnect(
    private_mqtt_broker: MosquittoServer, started: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    bus = start(started, host, port, reconnect_delay_s=FAST_RECONNECT)
    inbox = Inbox()
    bus.subscribe_readings(inbox, prefix="plant")
    private_mqtt_broker.stop()
    assert wait_for(lambda: not bus.connected)
    stamp = round(time.time(), 3)
    for index in range(5):
        bus.publish_reading(Reading(stamp + index, "r1", "do", float(index)), prefix="plant")
    bus.publish("plant/qos0", b"lost", qos=0)  # QoS 0 is not queued: counted as dropped
    assert bus.stats.dropped == 1
    private_mqtt_broker.start()
    # After the reconnect the bus resubscribes first, then paho sends the queued messages.
    assert inbox.wait_count(5)
    assert [r.value for r in inbox.items] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_persistent_session_keeps_messages_for_a_stopped_subscriber(
    private_mqtt_broker: MosquittoServer, started: list[MqttBus]
) -> None:
    host, port = private_mqtt_broker.address
    client_id = "bptwin-test-recorder"
    recorder = MqttBus(host, port, client_id=client_id)
    recorder.start()
    recorder.subscribe_readings(Inbox(), prefix="plant")
    recorder.stop()  # explicit id: the broker keeps the session and queues QoS 1
    publisher = start(started, host, port)
    publisher.publish_reading(Reading(round(time.time(), 3), "r1", "ph", 6.5), prefix="plant")
    publisher.stop()  # stop() waits for the broker's PUBACK: the broker has the message
    inbox = Inbox()
    again = MqttBus(host, port, client_id=client_id)
    again.subscribe_readings(inbox, prefix="plant")  # before start: no message is missed
    again.start()
    started.append(again)
    assert inbox.wait_count(1)
    assert inbox.items[0].value == 6.5


def test_username_and_password(tmp_path: Path, started: list[MqttBus]) -> None:
    if mosquitto_tool("mosquitto_passwd") is None:
        server_missing("mosquitto_passwd is not installed (package 'mosquitto')")
    with MosquittoServer(tmp_path / "auth", users={"bptwin": "s3cret pass"}) as broker:
        host, port = broker.address
        bus = start(started, host, port, username="bptwin", password="s3cret pass")
        inbox = Inbox()
        bus.subscribe("x/y", inbox)
        bus.publish("x/y", b"hello", qos=1)
        assert inbox.wait_count(1)
        with pytest.raises(ConnectionRefusedError, match=r"refused.*(authori[sz]ed|password)"):
            MqttBus(host, port, username="bptwin", password="wrong").start()
        with pytest.raises(ConnectionRefusedError, match="refused"):
            MqttBus(host, port).start()


def test_tls_with_ca_file(tmp_path: Path, started: list[MqttBus]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        server_missing("openssl is not installed, so no test certificate can be made")
    ca_key, ca_cert = tmp_path / "ca.key", tmp_path / "ca.crt"
    key, csr, cert = tmp_path / "server.key", tmp_path / "server.csr", tmp_path / "server.crt"
    run = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    subprocess.run([*run, "-keyout", ca_key, "-out", ca_cert, "-subj", "/CN=bptwin test CA"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    extensions = tmp_path / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([openssl, "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions],
                   check=True, capture_output=True)  # fmt: skip
    tls = f"cafile {ca_cert}\ncertfile {cert}\nkeyfile {key}\n"
    with MosquittoServer(tmp_path / "tls", extra_config=tls) as broker:
        bus = start(started, *broker.address, tls=True, ca_file=str(ca_cert))
        inbox = Inbox()
        bus.subscribe("secure/x", inbox)
        bus.publish("secure/x", b"over tls", qos=1)
        assert inbox.wait_count(1)
        with pytest.raises(OSError, match="certificate"):
            MqttBus(*broker.address, tls=True).start()  # system CAs do not trust ours


def test_flush_waits_for_every_acknowledgement(
    mqtt_broker: tuple[str, int], mqtt_prefix: str, started: list[MqttBus]
) -> None:
    bus = start(started, *mqtt_broker)
    for index in range(200):
        bus.publish(f"{mqtt_prefix}/flush", str(index), qos=1)
    assert bus.flush()
    assert bus.unacknowledged == 0
    assert bus.stats.published == 200


def test_start_against_a_closed_port_names_the_broker() -> None:
    port = free_port()
    with pytest.raises(OSError, match=rf"127\.0\.0\.1:{port}"):
        MqttBus("127.0.0.1", port).start()


def test_missing_ca_file_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="ca_file"):
        MqttBus("127.0.0.1", free_port(), tls=True, ca_file="/nonexistent/ca.crt").start()


def test_default_client_ids_are_unique_and_readable() -> None:
    first, second = default_client_id(), default_client_id()
    assert first != second
    assert re.fullmatch(r"bptwin-.+-\d+(-\d+)?", first)
