"""Alarm actions in a viewer: each one a signed command to the engine, carried out there.

A viewer (``runtime/viewer.py``) has no alarm engine: :class:`ViewerAlarms` implements the alarm
screen's ``AlarmActions`` by sending ``bptwin.twin.commands.AlarmCommand`` to the engine that
runs the reactor and waiting, with a deadline, for its signed answer. The screen calls it off
the UI thread. Nothing is sent, and the screen says why, when this viewer has no command key,
is not connected to the broker, or the acquisition's claim says it is not running; no answer in
``[commands] timeout_s`` is shown as "engine unreachable". The transition itself reaches every
viewer as the engine's other transitions do (``…/alarms/<rule>``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bptwin.twin.commands import (
    ACKNOWLEDGE,
    SHELVE,
    UNSHELVE,
    AlarmCommand,
    CommandRefused,
    CommandResult,
    decode_result,
)

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.tui.runtime.acquisition_lock import AcquisitionOwner
    from bptwin.twin.alarms import AlarmView
    from bptwin.twin.setpoints import ControlKey

log = logging.getLogger(__name__)

REFUSED_NO_KEY = "no_command_key"
REFUSED_UNREACHABLE = "engine_unreachable"
_COMMAND_ID = re.compile(rb'"command_id":"([A-Za-z0-9_-]{8,64})"')


@dataclass
class _Waiting:
    done: threading.Event = field(default_factory=threading.Event)
    result: CommandResult | None = None
    unverified: str = ""  # an answer came for this command that did not verify


class ViewerAlarms:
    """``bptwin.screens.alarms.AlarmActions`` for a viewer (see the module docstring)."""

    def __init__(
        self,
        *,
        bus: Callable[[], Bus | None],
        prefix: str,
        key: ControlKey | None,
        key_problem: str,
        alarms: Callable[[], Sequence[AlarmView]],
        engine: Callable[[str], AcquisitionOwner | None],
        on_rejected: Callable[[str, Exception], None],
        timeout_s: float = 10.0,
        broker: str = "",
    ) -> None:
        """``engine(reactor)``: the acquisition's last claim for that reactor, if known."""
        self._bus = bus
        self.prefix = prefix
        self.key = key
        self.key_problem = key_problem
        self._alarms = alarms
        self._engine = engine
        self._on_rejected = on_rejected
        self.timeout_s = timeout_s
        self.broker = broker
        self.origin = f"{socket.gethostname()} pid {os.getpid()}"
        self.sent = 0
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()

    # -- AlarmActions ----------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str, actor: str) -> CommandResult:
        return self._send(ACKNOWLEDGE, alarm_id, actor)

    def shelve(self, alarm_id: str, actor: str, reason: str, until: float) -> CommandResult:
        # The engine counts the duration from the moment it applies the command (its clock).
        return self._send(
            SHELVE, alarm_id, actor, reason=reason, duration_s=max(until - time.time(), 0.0)
        )

    def unshelve(self, alarm_id: str, actor: str) -> CommandResult:
        return self._send(UNSHELVE, alarm_id, actor)

    def active_alarms(self) -> Sequence[AlarmView]:
        return self._alarms()

    # -- the engine's answers (the bus's dispatcher thread) ---------------------------------------

    def on_result(self, topic: str, payload: bytes) -> None:
        if self.key is None:
            return
        try:
            result = decode_result(topic, payload, self.key)
        except CommandRefused as exc:
            self._on_rejected(topic, exc)
            found = _COMMAND_ID.search(bytes(payload))
            waiting = self._waiting.get(found.group(1).decode()) if found else None
            if waiting is not None:
                waiting.unverified = str(exc)
            return
        with self._lock:
            waiting = self._waiting.get(result.command_id)
        if waiting is not None:  # else another control room's command
            waiting.result = result
            waiting.done.set()

    # -- sending -------------------------------------------------------------------------------

    def _send(self, action: str, alarm_id: str, actor: str, **details: object) -> CommandResult:
        reactor = alarm_id.split("/", 1)[0]
        bus = self._check_can_send(reactor)
        command = AlarmCommand.new(
            reactor,
            action,
            alarm_id,
            actor,
            lifetime_s=self.timeout_s,
            origin=self.origin,
            **details,  # type: ignore[arg-type]
        )
        assert self.key is not None  # checked above
        topic, payload = command.message(self.prefix, self.key)
        waiting = _Waiting()
        with self._lock:
            self._waiting[command.command_id] = waiting
        try:
            try:
                bus.publish(topic, payload, qos=1)
            except (ConnectionError, OSError) as exc:
                raise CommandRefused(
                    REFUSED_UNREACHABLE, f"engine unreachable: {exc}; nothing was done"
                ) from None
            self.sent += 1
            if not waiting.done.wait(self.timeout_s) or waiting.result is None:
                raise CommandRefused(REFUSED_UNREACHABLE, self._no_answer(command, waiting))
        finally:
            with self._lock:
                self._waiting.pop(command.command_id, None)
        result = waiting.result
        if not result.ok:
            raise CommandRefused(result.reason, f"refused by the engine: {result.message}")
        return result

    def _check_can_send(self, reactor: str) -> Bus:
        if self.key is None:
            raise CommandRefused(
                REFUSED_NO_KEY,
                "alarm actions from a viewer need the operators' command key "
                f"([commands] key_file, docs/operations.md){self.key_problem}",
            )
        owner = self._engine(reactor)
        if owner is None:
            raise CommandRefused(
                REFUSED_UNREACHABLE,
                f"engine unreachable: no acquisition of {reactor} is known; nothing was sent",
            )
        from bptwin.tui.runtime.acquisition_lock import STATE_RUNNING

        if owner.state != STATE_RUNNING:
            raise CommandRefused(
                REFUSED_UNREACHABLE,
                f"engine unreachable: the acquisition on {owner.describe()} is {owner.state}; "
                "nothing was sent",
            )
        bus = self._bus()
        if bus is None or not bus.connected:
            raise CommandRefused(
                REFUSED_UNREACHABLE,
                f"engine unreachable: this viewer is not connected to the broker {self.broker}; "
                "nothing was sent",
            )
        return bus

    def _no_answer(self, command: AlarmCommand, waiting: _Waiting) -> str:
        owner = self._engine(command.reactor)
        where = owner.describe() if owner is not None else command.reactor
        expires = datetime.fromtimestamp(command.expires_at, tz=timezone.utc).strftime("%H:%M:%S")
        text = (
            f"engine unreachable: no answer from {where} within {self.timeout_s:g} s; the command "
            f"expires at {expires} UTC (if the engine got it, the alarm list shows it)"
        )
        if waiting.unverified:
            text += (
                f"; an answer came that does not verify ({waiting.unverified}): is "
                "[commands] key_file the engine's key?"
            )
        return text
