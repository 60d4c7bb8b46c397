"""Setpoint actuation: mode 0 never publishes, mode 1 only when enabled, supervisor-confirmed
and signed with the station's key; what a receiver checks before obeying.

Publishing is checked on the real buses: LocalBus and MqttBus against a real Mosquitto.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from bptwin.database.bus import Bus, LocalBus
from bptwin.twin.actuation import (
    ActuationResult,
    Actuator,
    ControlAuthorisation,
    ControlKey,
    ControlMode,
    ControlSettings,
    SetpointCommand,
    SetpointVerifier,
)
from bptwin.twin.control import Recommendation

T0 = 1_790_000_000.0
TIMEOUT_S = 10.0  # upper bound for delivery; never a speed assertion
CLOSED_LOOP = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=True, confirmation_minutes=60)
KEY = ControlKey.generate()


def recommendation(recommended: float = 650.0, reactor: str = "R1") -> Recommendation:
    return Recommendation(
        timestamp=T0,
        reactor=reactor,
        parameter="stirrer_speed",
        current=600.0,
        recommended=recommended,
        unit="rpm",
        reason="DO 24.0 %, below the 30 % cascade level: raise the stirrer 600 → 650 rpm",
        rule="do_low_stirrer_up",
        confidence=0.9,
    )


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def wait_for(self, count: int) -> bool:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return True
            time.sleep(0.01)
        return False


def authorised(actuator: Actuator, clock: Clock, minutes: float = 60.0) -> ControlAuthorisation:
    grant = ControlAuthorisation.for_minutes("sam", actuator.reactor, minutes, at=clock.now)
    actuator.authorise(grant)
    return grant


def test_mode_0_never_publishes_even_enabled_and_confirmed(bus: Bus, mqtt_prefix: str) -> None:
    collector = Collector()
    bus.subscribe(f"{mqtt_prefix}/#", collector)
    clock = Clock()
    settings = ControlSettings(mode=ControlMode.ADVISORY, enabled=True)
    actuator = Actuator(bus, "R1", settings, prefix=mqtt_prefix, clock=clock, key=KEY)
    authorised(actuator, clock)
    result = actuator.actuate(recommendation())
    assert not result.sent and result.topic is None
    assert "mode 0" in result.reason
    assert not actuator.active
    assert bus.drain(TIMEOUT_S)
    assert collector.messages == []
    assert bus.stats.published == 0


def test_default_settings_are_advisory_and_disabled() -> None:
    settings = ControlSettings()
    assert settings.mode == ControlMode.ADVISORY and settings.enabled is False
    assert settings.confirmation_minutes == 60.0


def test_mode_1_not_enabled_in_settings_refuses() -> None:
    bus = LocalBus()
    clock = Clock()
    settings = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=False)
    actuator = Actuator(bus, "R1", settings, clock=clock, key=KEY)
    authorised(actuator, clock)
    result = actuator.actuate(recommendation())
    assert not result.sent
    assert "not enabled" in result.reason and "[control] enabled" in result.reason
    assert bus.stats.published == 0


def test_mode_1_without_supervisor_confirmation_refuses() -> None:
    bus = LocalBus()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, clock=Clock(), key=KEY)
    result = actuator.actuate(recommendation())
    assert not result.sent
    assert "supervisor" in result.reason
    assert result.audit_fields()["refusal"] == result.reason
    assert bus.stats.published == 0


def test_an_expired_or_revoked_confirmation_refuses() -> None:
    bus = LocalBus()
    clock = Clock()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, clock=clock, key=KEY)
    authorised(actuator, clock, minutes=60)
    clock.now += 59 * 60
    assert actuator.active
    clock.now += 2 * 60
    result = actuator.actuate(recommendation())
    assert not result.sent and "expired" in result.reason and "sam" in result.reason
    assert actuator.authorisation is None
    authorised(actuator, clock)
    actuator.revoke()
    assert "supervisor" in actuator.actuate(recommendation()).reason
    assert bus.stats.published == 0


def test_without_the_station_key_mode_1_refuses_to_send() -> None:
    bus = LocalBus()
    clock = Clock()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, clock=clock)
    authorised(actuator, clock)
    result = actuator.actuate(recommendation())
    assert not result.sent and "key_file" in result.reason
    assert bus.stats.published == 0


def test_confirmed_mode_1_publishes_the_documented_signed_payload(
    bus: Bus, mqtt_prefix: str
) -> None:
    collector = Collector()
    bus.subscribe(f"{mqtt_prefix}/v1/+/setpoints/+", collector, qos=1)
    clock = Clock()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, prefix=mqtt_prefix, clock=clock, key=KEY)
    grant = authorised(actuator, clock)
    result: ActuationResult = actuator.actuate(recommendation())
    assert result.sent, result.reason
    assert result.supervisor == "sam"
    assert collector.wait_for(1)
    ((topic, payload),) = collector.messages
    assert topic == f"{mqtt_prefix}/v1/R1/setpoints/stirrer_speed" == result.topic
    data = json.loads(payload)
    assert data == result.payload
    assert list(data) == [
        "reactor", "parameter", "ts", "seq", "value", "unit", "previous", "mode", "rule",
        "reason", "supervisor", "authorised_until", "source", "sig",
    ]  # fmt: skip
    assert (data["value"], data["previous"], data["unit"], data["mode"]) == (650.0, 600.0, "rpm", 1)
    assert (data["reactor"], data["parameter"]) == ("R1", "stirrer_speed")
    assert data["supervisor"] == "sam" and data["source"] == "bptwin"
    assert data["ts"].endswith("Z") and data["authorised_until"].endswith("Z")
    assert data["seq"] == int(T0 * 1000) and len(data["sig"]) == 64
    assert data["rule"] == "do_low_stirrer_up" and "DO 24.0 %" in data["reason"]
    assert grant.expires_at - grant.confirmed_at == 3600
    verifier = SetpointVerifier(KEY, clock=clock)
    command = SetpointCommand.from_message(topic, payload, verifier)
    assert (command.reactor, command.parameter, command.value) == ("R1", "stirrer_speed", 650.0)
    assert (command.supervisor, command.authorised_until) == ("sam", grant.expires_at)
    assert verifier.accepted == 1


def test_each_setpoint_gets_a_rising_seq_even_within_one_millisecond() -> None:
    bus = LocalBus()
    clock = Clock()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, clock=clock, key=KEY)
    authorised(actuator, clock)
    seqs = [actuator.actuate(recommendation(650.0 + i)).payload["seq"] for i in range(3)]
    assert seqs == [int(T0 * 1000), int(T0 * 1000) + 1, int(T0 * 1000) + 2]


def test_hold_advice_and_foreign_reactors_are_not_sent() -> None:
    bus = LocalBus()
    clock = Clock()
    actuator = Actuator(bus, "R1", CLOSED_LOOP, clock=clock, key=KEY)
    authorised(actuator, clock)
    hold = actuator.actuate(recommendation(recommended=600.0))
    assert not hold.sent and "hold" in hold.reason
    other = actuator.actuate(recommendation(reactor="R2"))
    assert not other.sent and "R2" in other.reason
    with pytest.raises(ValueError, match="R2"):
        actuator.authorise(ControlAuthorisation.for_minutes("sam", "R2", 10, at=clock.now))
    assert bus.stats.published == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mode": 2}, "0 \\(advisory\\) or 1"),
        ({"enabled": "yes"}, "true or false"),
        ({"confirmation_minutes": 0}, "confirmation_minutes"),
        ({"confirmation_minutes": 10_000}, "confirmation_minutes"),
    ],
)
def test_bad_control_settings_name_the_key(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        ControlSettings(**kwargs)


def test_bad_authorisations_are_refused() -> None:
    with pytest.raises(ValueError, match="supervisor"):
        ControlAuthorisation(" ", "R1", T0, T0 + 60)
    with pytest.raises(ValueError, match="expire after"):
        ControlAuthorisation("sam", "R1", T0, T0)
