"""Alarm actions only from an operator's signed command, carried out once (docs/security.md).

The station's engine obeys ``<prefix>/v1/<reactor>/commands/alarm`` only when it is signed with
the operators' command key, fresh, by an active operator of the notebook, and new: an anonymous
client on the broker (as mosquitto_pub would) can neither acknowledge nor shelve an alarm, and a
replayed command changes nothing. Each refusal is counted where an operator sees it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from bptwin.twin.alarms import AlarmState, AlarmView
from bptwin.twin.commands import ACKNOWLEDGE, SHELVE, AlarmCommand, CommandResult, decode_result
from bptwin.twin.setpoints import ControlKey
from tests.adversarial.harness import (
    Outsider,
    running,
    station_settings,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.mqtt


class Answers:
    """The engine's answers on ``…/commands/alarm/result``, verified with the key."""

    def __init__(self, broker: tuple[str, int], prefix: str, key: ControlKey) -> None:
        self.key = key
        self.by_id: dict[str, list[CommandResult]] = {}
        self._lock = threading.Lock()
        self.bus = MqttBus(*broker)
        self.bus.subscribe(f"{prefix}/v1/+/commands/alarm/result", self._on, qos=1)
        self.bus.start()

    def _on(self, topic: str, payload: bytes) -> None:
        result = decode_result(topic, payload, self.key)
        with self._lock:
            self.by_id.setdefault(result.command_id, []).append(result)

    def of(self, command_id: str) -> list[CommandResult]:
        with self._lock:
            return list(self.by_id.get(command_id, []))

    def close(self) -> None:
        self.bus.stop()


def ph_alarm(station: Station) -> AlarmView | None:
    views = station.snapshot().alarms_for("R1")
    return next((view for view in views if view.rule == "ph"), None)


def raise_ph_alarm(station: Station, outsider: Outsider) -> AlarmView:
    """45 s of pH 5.5 (high limit 5.1 for 30 s): the engine raises 'ph'."""
    now = time.time()
    for second in range(46):
        outsider.reading("R1", "ph", now - 45 + second, 5.5)
    outsider.flush()
    assert wait_for(lambda: ph_alarm(station) is not None), station.snapshot().alarms_for("R1")
    view = ph_alarm(station)
    assert view is not None and view.state is AlarmState.ACTIVE_UNACK
    return view


def keyed_settings(
    tmp_path: Path, broker: tuple[str, int], notebook_url: str
) -> tuple[ControlKey, Settings]:
    key = ControlKey.generate()
    key.write(tmp_path / "commands.key")
    settings = station_settings(tmp_path / "station", broker, unique_prefix())
    settings.commands.key_file = tmp_path / "commands.key"
    settings.notebook.url = notebook_url
    return key, settings


def test_only_an_operators_signed_fresh_command_acknowledges_and_only_once(
    tmp_path: Path, mqtt_broker: tuple[str, int], notebook_url: str
) -> None:
    """On SQLite and on Postgres (the engine's operator check reads the notebook)."""
    key, settings = keyed_settings(tmp_path, mqtt_broker, notebook_url)
    prefix = settings.bus.prefix
    with running(settings) as station:
        assert station.notebook is not None and station.runtime is not None
        station.notebook.service.operators.create_operator("setup", "vera", "supervisor", "2468")
        outsider = Outsider(mqtt_broker, prefix)
        answers = Answers(mqtt_broker, prefix, key)
        try:
            alarm = raise_ph_alarm(station, outsider)

            def signed(command: AlarmCommand, with_key: ControlKey = key) -> tuple[str, bytes]:
                return command.message(prefix, with_key)

            def new(actor: str = "vera", **fields: object) -> AlarmCommand:
                made = AlarmCommand.new("R1", ACKNOWLEDGE, alarm.alarm_id, actor, lifetime_s=10)
                return replace(made, **fields)  # type: ignore[arg-type]

            topic = new().topic(prefix)
            attacks = {
                # What anyone on the anonymous broker can send without the key.
                "unsigned": json.dumps({"action": "acknowledge", "alarm_id": alarm.alarm_id}),
                "signed with another key": signed(new(), ControlKey.generate())[1],
                "changed after signing": signed(new())[1].replace(b'"vera"', b'"boss"'),
                # Signed (a stolen old message, or a wrong clock): too old to be obeyed.
                "stale": signed(new(issued_at=time.time() - 600, expires_at=time.time() - 590))[1],
                # Signed by a key holder for a name the notebook does not know.
                "unknown operator": signed(eve := new(actor="eve"))[1],
            }
            for payload in attacks.values():
                outsider.raw(topic, payload if isinstance(payload, bytes) else payload.encode())
            outsider.flush()
            commands = station.runtime.commands
            assert commands is not None
            expected = {
                "unsigned": 1,
                "bad_signature": 2,
                "clock_skew": 1,
                "unknown_operator": 1,
            }
            assert wait_for(lambda: commands.refused_counts() == expected), (
                commands.refused_counts()
            )
            rejected = station.rejected_inputs()
            assert {k: v for k, v in rejected.items() if k.startswith("operator command")} == {
                f"operator command {reason}": count for reason, count in expected.items()
            }
            strip = " ".join(station.snapshot().problems)  # the status strip's text
            assert "operator command bad_signature 2" in strip, strip
            # Only the key holder's refused command is answered (nobody else can be trusted).
            assert wait_for(lambda: bool(answers.of(eve.command_id)))
            assert answers.of(eve.command_id)[0].reason == "unknown_operator"
            assert ph_alarm(station).state is AlarmState.ACTIVE_UNACK  # type: ignore[union-attr]

            # The operator's command: carried out once, however often it arrives.
            command = new()
            _, payload = signed(command)
            outsider.raw(topic, payload)
            outsider.flush()
            assert wait_for(lambda: bool(answers.of(command.command_id)))
            outsider.raw(topic, payload)  # replayed by someone who recorded it
            outsider.flush()
            assert wait_for(lambda: len(answers.of(command.command_id)) == 2)
            first, again = answers.of(command.command_id)
            assert first.ok and not first.duplicate and "acknowledged" in first.message
            assert again.ok and again.duplicate
            assert (commands.applied, commands.duplicates) == (1, 1)
            view = ph_alarm(station)
            assert view is not None and view.state is AlarmState.ACTIVE_ACK
            assert view.acknowledged_by == "vera"

            # A shelve of the acknowledged alarm for 30 min, on the engine's clock.
            shelve = replace(new(), action=SHELVE, reason="probe swap", duration_s=1800.0)
            outsider.raw(topic, signed(shelve)[1])
            outsider.flush()
            assert wait_for(lambda: bool(answers.of(shelve.command_id)))
            assert answers.of(shelve.command_id)[0].ok
            view = ph_alarm(station)
            assert view is not None and view.state is AlarmState.SHELVED
            assert view.shelved_by == "vera" and view.shelve_reason == "probe swap"
        finally:
            answers.close()
            outsider.close()
        # The notebook holds one acknowledgement and one shelve, both by the operator.
        assert station.notebook.flush(30)

        def by_vera() -> list[str]:
            assert station.notebook is not None
            events = station.notebook.service.alarms.list_alarm_events(reactor="R1")
            return sorted(e.state for e in events if e.actor == "vera")

        assert wait_for(lambda: len(by_vera()) == 2), by_vera()
        assert by_vera() == ["active_acknowledged", "shelved"]
