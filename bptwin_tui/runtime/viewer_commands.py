"""A viewer's operator actions: each one a signed command to the engine, carried out there.

A viewer (``runtime/viewer.py``) has no alarm engine and no actuator: :class:`ViewerAlarms`
implements the alarm screen's ``AlarmActions`` and :class:`ViewerControl` the supervisor's
confirmation of closed-loop control by sending ``bptwin.twin.commands`` commands to the engine
that runs the reactor and waiting, with a deadline, for its signed answer (the App calls them
off the UI thread). Nothing is sent, and the refusal says why, when this viewer has no command
key, is not connected to the broker, or the acquisition's claim says it is not running; no
answer within ``[commands] timeout_s`` is shown as "engine unreachable". An alarm transition
reaches every viewer as the engine's other transitions do (``…/alarms/<rule>``).
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
    AUTHORISE,
    REVOKE,
    SHELVE,
    UNSHELVE,
    AlarmCommand,
    Command,
    CommandRefused,
    CommandResult,
    ControlCommand,
    decode_result,
)

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.acquisition_lock import AcquisitionOwner
    from bptwin.twin.actuation import ControlAuthorisation
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


class CommandSender:
    """Sends a command to the engine of its reactor and waits for the answer (thread-safe)."""

    def __init__(
        self,
        *,
        bus: Callable[[], Bus | None],
        prefix: str,
        engine: Callable[[str], AcquisitionOwner | None],
        on_rejected: Callable[[str, Exception], None],
        timeout_s: float = 10.0,
        broker: str = "",
    ) -> None:
        """``engine(reactor)``: the acquisition's last claim for that reactor, if known."""
        self._bus = bus
        self.prefix = prefix
        self.key: ControlKey | None = None
        self.key_problem = ""
        self._engine = engine
        self._on_rejected = on_rejected
        self.timeout_s = timeout_s
        self.broker = broker
        self.origin = f"{socket.gethostname()} pid {os.getpid()}"
        self.sent = 0
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()

    def on_result(self, topic: str, payload: bytes) -> None:
        """Bus handler for ``…/commands/+/result`` (the bus's dispatcher thread)."""
        if self.key is None:
            return
        try:
            result = decode_result(topic, payload, self.key)
        except CommandRefused as exc:
            self._on_rejected(topic, exc)
            found = _COMMAND_ID.search(bytes(payload))
            with self._lock:
                waiting = self._waiting.get(found.group(1).decode()) if found else None
            if waiting is not None:
                waiting.unverified = str(exc)
            return
        with self._lock:
            waiting = self._waiting.get(result.command_id)
        if waiting is not None:  # else another control room's command
            waiting.result = result
            waiting.done.set()

    def check_can_send(self, reactor: str) -> Bus:
        """The bus to send on, or CommandRefused saying why nothing can be sent now."""
        if self.key is None:
            raise CommandRefused(
                REFUSED_NO_KEY,
                "actions from a viewer need the operators' command key "
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

    def send(self, command: Command) -> CommandResult:
        """Publish ``command`` and wait for the engine's answer; CommandRefused unless applied."""
        bus = self.check_can_send(command.reactor)
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

    def _no_answer(self, command: Command, waiting: _Waiting) -> str:
        owner = self._engine(command.reactor)
        where = owner.describe() if owner is not None else command.reactor
        expires = datetime.fromtimestamp(command.expires_at, tz=timezone.utc).strftime("%H:%M:%S")
        text = (
            f"engine unreachable: no answer from {where} within {self.timeout_s:g} s; the command "
            f"expires at {expires} UTC (if the engine got it, its effect shows here)"
        )
        if waiting.unverified:
            text += (
                f"; an answer came that does not verify ({waiting.unverified}): is "
                "[commands] key_file the engine's key?"
            )
        return text


class ViewerAlarms:
    """``bptwin.screens.alarms.AlarmActions`` for a viewer (see the module docstring)."""

    def __init__(self, sender: CommandSender, alarms: Callable[[], Sequence[AlarmView]]) -> None:
        self.sender = sender
        self._alarms = alarms

    @property
    def sent(self) -> int:
        return self.sender.sent

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

    def _send(
        self, action: str, alarm_id: str, actor: str, *, reason: str = "", duration_s: float = 0.0
    ) -> CommandResult:
        command = AlarmCommand.new(
            alarm_id.split("/", 1)[0],
            action,
            alarm_id,
            actor,
            lifetime_s=self.sender.timeout_s,
            reason=reason,
            duration_s=duration_s,
            origin=self.sender.origin,
        )
        return self.sender.send(command)


class ViewerControl:
    """The App's ``station.control`` in a viewer: a supervisor confirms closed-loop control here
    (name and PIN checked, the confirmation stored in the notebook), the engine takes it."""

    def __init__(
        self,
        sender: CommandSender,
        notebook: Callable[[], NotebookService | None],
        *,
        minutes: float,
    ) -> None:
        self.sender = sender
        self._notebook = notebook
        self.minutes = minutes

    def authorise(self, supervisor: str, pin: str, reactor: str) -> ControlAuthorisation:
        """Checked and stored here, then sent; a confirmation the engine refused is revoked."""
        from bptwin.eln.control_service import record_authorisation, record_revocation
        from bptwin.twin.actuation import ControlAuthorisation

        notebook = self._notebook()
        if notebook is None:
            raise RuntimeError("closed-loop control needs the notebook to audit the confirmation")
        self.sender.check_can_send(reactor)  # before a confirmation is stored for nothing
        row = record_authorisation(notebook, supervisor, pin, reactor=reactor, minutes=self.minutes)
        assert row.id is not None and row.supervisor is not None and row.valid_until is not None
        command = ControlCommand.new(
            reactor,
            AUTHORISE,
            row.supervisor,
            lifetime_s=self.sender.timeout_s,
            authorisation_id=row.id,
            origin=self.sender.origin,
        )
        try:
            self.sender.send(command)
        except CommandRefused as refusal:
            try:  # the notebook must not show a confirmation that never took effect
                record_revocation(
                    notebook, row.supervisor, reactor=reactor, reason=f"not taken: {refusal}"
                )
            except Exception as exc:
                log.error("confirmation %s not marked as not taken: %s", row.id, exc)
            raise
        return ControlAuthorisation(
            row.supervisor, reactor, _unix(row.occurred_at), _unix(row.valid_until)
        )

    def revoke(self, actor: str, reactor: str) -> None:
        """Back to advice only: the engine stops sending setpoints and records who stopped it."""
        self.sender.send(
            ControlCommand.new(
                reactor, REVOKE, actor, lifetime_s=self.sender.timeout_s, origin=self.sender.origin
            )
        )


def _unix(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
