"""Alarm transitions over the bus (LocalBus and a real Mosquitto): a viewer rebuilds the list."""

from __future__ import annotations

import threading
import time

from bptwin.database.bus import Bus
from bptwin.database.reading import Reading
from bptwin.twin.alarm_rules import DEFAULT_RULES
from bptwin.twin.alarms import (
    AlarmBoard,
    AlarmEngine,
    AlarmPayloadError,
    AlarmTransition,
    alarms_pattern,
    transition_message,
)

T0 = 1_790_000_000.0
TIMEOUT_S = 10.0  # upper bound for delivery; never a speed assertion


class Viewer:
    """What an attached TUI does: subscribe to alarm topics, rebuild the board, count bad ones."""

    def __init__(self) -> None:
        self.board = AlarmBoard()
        self.received = 0
        self.rejected: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            try:
                self.board.apply(AlarmTransition.from_payload(payload, now=T0))
                self.received += 1
            except AlarmPayloadError as exc:
                self.rejected.append(str(exc))

    def wait_for(self, count: int) -> bool:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                if self.received + len(self.rejected) >= count:
                    return True
            time.sleep(0.01)
        return False


def test_a_viewer_on_the_bus_sees_the_engines_alarms(bus: Bus, mqtt_prefix: str) -> None:
    viewer = Viewer()
    bus.subscribe(alarms_pattern("R1", prefix=mqtt_prefix), viewer, qos=1)
    engine = AlarmEngine(DEFAULT_RULES)
    transitions = []
    for second in range(400):
        transitions += engine.feed(Reading(T0 + second, "R1", "do", 14.0, "%sat"))
    transitions += engine.acknowledge("R1/do_low/lo_lo", "ana", at=T0 + 401)
    transitions += engine.shelve("R1/do_low/lo", "ana", "probe check", T0 + 3600, at=T0 + 402)
    for transition in transitions:
        topic, payload = transition_message(transition, prefix=mqtt_prefix)
        assert topic == f"{mqtt_prefix}/v1/R1/alarms/do_low"
        bus.publish(topic, payload, qos=1)
    bus.publish(f"{mqtt_prefix}/v1/R1/alarms/do_low", b'{"v": 1, "to": "??"}', qos=1)
    assert viewer.wait_for(len(transitions) + 1)
    assert viewer.received == len(transitions) == 4
    assert len(viewer.rejected) == 1 and "alarm payload field" in viewer.rejected[0]
    assert viewer.board.active_alarms() == engine.active_alarms()
