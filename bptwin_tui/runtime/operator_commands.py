"""The engine's side of operators' commands from other control rooms (viewers of ``serve``).

A viewer sends a signed command on ``<prefix>/v1/<reactor>/commands/alarm``
(``bptwin.twin.commands``); :class:`OperatorCommands` obeys it once: signature, freshness and
the actor (an active operator in the notebook) checked, then the same transition as a key press
in the acquiring app (stored in the notebook with the operator's name, published to every
viewer), then a signed answer on ``…/commands/alarm/result``. Every refusal is counted by reason
and logged (rate-limited); a repeat of a command gets the first answer and does nothing.

``…/commands/control`` carries a supervisor's confirmation of closed-loop control: the viewer
checked the PIN and stored the confirmation in the notebook; the engine reads that row back
(its supervisor, reactor and expiry, the supervisor's role now) before its actuator takes it.

Commands are carried out on a thread of their own: the notebook look-up must not hold up the
bus's dispatcher (readings) while the database is slow or away.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bptwin.tui.runtime.refusals import RefusalTally
from bptwin.twin.commands import (
    ACKNOWLEDGE,
    ALARM,
    CONTROL,
    INVALID_REASONS,
    MAX_LIFETIME_S,
    REFUSED_BUSY,
    REFUSED_EXPIRED,
    REFUSED_NOT_APPLICABLE,
    REFUSED_NOTEBOOK,
    REFUSED_OPERATOR,
    REFUSED_ROLE,
    REVOKE,
    SHELVE,
    AlarmCommand,
    Command,
    CommandRefused,
    CommandResult,
    CommandVerifier,
    ControlCommand,
)

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.alarm_actions import StationAlarms
    from bptwin.tui.runtime.control_loop import StationControl
    from bptwin.twin.setpoints import ControlKey

log = logging.getLogger(__name__)

MAX_WAITING = 256  # commands waiting to be carried out; a flood beyond is refused as busy


class OperatorCommands:
    """Obeys verified alarm commands for this station's reactors (see the module docstring)."""

    def __init__(
        self,
        key: ControlKey,
        reactors: tuple[str, ...] | list[str],
        *,
        bus: Bus,
        prefix: str,
        actions: StationAlarms,
        notebook: Callable[[], NotebookService | None],
        engine_now: Callable[[], float],
        control: StationControl | None = None,
        max_skew_s: float = 30.0,
    ) -> None:
        self.key = key
        self.reactors = tuple(reactors)
        self.bus = bus
        self.prefix = prefix
        self.actions = actions
        self.notebook = notebook
        self.engine_now = engine_now
        self.control = control
        self.verifier = CommandVerifier(key, self.reactors, prefix=prefix, max_skew_s=max_skew_s)
        self.applied = 0
        self.duplicates = 0
        self._refusals = RefusalTally("operator command", log)
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_WAITING)
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def subscribe(self, bus: Bus) -> list[Subscription]:
        from bptwin.database.bus import topics

        kinds = (ALARM, CONTROL) if self.control is not None else (ALARM,)
        return [
            bus.subscribe(topics.command_topic(reactor, kind, self.prefix), self, qos=1)
            for reactor in self.reactors
            for kind in kinds
        ]

    def start(self) -> OperatorCommands:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="operator-commands", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # then the thread is busy and sees no stop
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    # -- counts --------------------------------------------------------------------------------

    def refused_counts(self) -> dict[str, int]:
        """Commands refused since start, by reason."""
        return self._refusals.counts()

    def invalid_counts(self) -> dict[str, int]:
        """Refusals of messages that were not a valid operator's command (forged, stale...)."""
        return {r: n for r, n in self.refused_counts().items() if r in INVALID_REASONS}

    # -- the bus's dispatcher thread -----------------------------------------------------------

    def __call__(self, topic: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((topic, bytes(payload)))
        except queue.Full:
            self._refusals.count(
                CommandRefused(REFUSED_BUSY, f"{topic[:200]}: too many commands waiting")
            )

    # -- the service's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.handle(*item)
            except Exception:  # one command must never end the service
                log.exception("operator command on %s failed", item[0][:200])

    def handle(self, topic: str, payload: bytes) -> CommandResult | None:
        """Verify, carry out once and answer one command; None when nobody can be answered."""
        try:
            command = self.verifier.verify(topic, payload)
        except CommandRefused as refusal:
            self._refusals.count(refusal)
            if refusal.command_id is None:
                return None  # not signed with the key: no answer to someone we cannot trust
            levels = topic.split("/")  # the topic was checked before the signature
            return self._answer(
                CommandResult(
                    refusal.command_id,
                    levels[-3],
                    False,
                    refusal.reason,
                    str(refusal),
                    kind=levels[-1],
                )
            )
        first, earlier = self.verifier.claim(command.command_id)
        if not first:
            with self._lock:
                self.duplicates += 1
            log.info("operator command %s came again: not carried out twice", command.command_id)
            return self._answer(earlier.again()) if earlier is not None else None
        result = self._carry_out(command)
        self.verifier.answered(result)
        return self._answer(result)

    def _carry_out(self, command: Command) -> CommandResult:
        def refused(reason: str, message: str) -> CommandResult:
            self._refusals.count(CommandRefused(reason, f"{command.describe()}: {message}"))
            return CommandResult(
                command.command_id, command.reactor, False, reason, message, kind=command.kind
            )

        problem = self._operator_problem(command.actor)
        if problem is not None:
            return refused(*problem)
        try:
            if isinstance(command, ControlCommand):
                done = self._control(command)
            else:
                done = self._alarm(command)
        except CommandRefused as exc:  # before ValueError, which it is
            return refused(exc.reason, str(exc))
        except ValueError as exc:  # AlarmActionError: unknown alarm, nothing to acknowledge...
            return refused(REFUSED_NOT_APPLICABLE, str(exc))
        with self._lock:
            self.applied += 1
        origin = f" from {command.origin}" if command.origin else ""
        log.info("%s command %s: %s%s", command.kind, command.command_id, done, origin)
        return CommandResult(command.command_id, command.reactor, True, "", done, kind=command.kind)

    def _alarm(self, command: AlarmCommand) -> str:
        if command.action == ACKNOWLEDGE:
            self.actions.acknowledge(command.alarm_id, command.actor)
            return f"acknowledged {command.alarm_id} by {command.actor}"
        if command.action == SHELVE:
            until = self._now() + command.duration_s
            self.actions.shelve(command.alarm_id, command.actor, command.reason, until)
            return (
                f"shelved {command.alarm_id} for {command.duration_s / 60:g} min by {command.actor}"
            )
        self.actions.unshelve(command.alarm_id, command.actor)
        return f"unshelved {command.alarm_id} by {command.actor}"

    def _control(self, command: ControlCommand) -> str:
        """Take a supervisor's stored confirmation, or stop closed-loop control."""
        control = self.control
        if control is None:
            raise CommandRefused(REFUSED_NOT_APPLICABLE, "this engine runs no control path")
        if command.action == REVOKE:
            control.revoke(command.actor, command.reactor)  # recorded in the notebook
            return command.describe()
        refusal = control.mode_refusal()
        if refusal is not None:
            raise CommandRefused(REFUSED_NOT_APPLICABLE, f"the engine's control: {refusal}")
        from bptwin.eln.control_service import get_authorisation
        from bptwin.twin.actuation import ControlAuthorisation

        notebook = self.notebook()
        assert notebook is not None  # the operator check needed it
        problem = self._operator_problem(command.actor, supervisor=True)
        if problem is not None:
            raise CommandRefused(*problem)
        try:
            row = get_authorisation(notebook, command.authorisation_id, reactor=command.reactor)
        except Exception as exc:
            raise CommandRefused(REFUSED_NOTEBOOK, f"the notebook cannot be read: {exc}") from None
        if row is None or row.supervisor != command.actor:
            raise CommandRefused(
                REFUSED_ROLE,
                f"confirmation {command.authorisation_id} is not {command.actor}'s confirmation "
                f"of closed-loop control of {command.reactor}",
            )
        assert row.valid_until is not None  # get_authorisation returns confirmations only
        confirmed, expires = _unix(row.occurred_at), _unix(row.valid_until)
        now = time.time()
        fresh = self.verifier.max_skew_s + MAX_LIFETIME_S
        if not now - fresh <= confirmed <= now + self.verifier.max_skew_s or expires <= now:
            raise CommandRefused(
                REFUSED_EXPIRED,
                f"confirmation {command.authorisation_id} was not made just now or has expired",
            )
        control.take_authorisation(
            ControlAuthorisation(command.actor, command.reactor, confirmed, expires)
        )
        return f"{command.describe()} until {row.valid_until:%H:%M} UTC"

    def _operator_problem(self, actor: str, *, supervisor: bool = False) -> tuple[str, str] | None:
        """Why ``actor`` may not act here (reason, message), or None: an active operator (a
        supervisor if asked), checked as every notebook write checks its actor."""
        from bptwin.eln.errors import NotebookPermissionError
        from bptwin.eln.unit_of_work import require_operator

        notebook = self.notebook()
        if notebook is None:
            return REFUSED_NOTEBOOK, "the engine has no notebook to check the operator in"
        try:
            with notebook.unit.read() as session:
                try:
                    require_operator(session, actor)
                except NotebookPermissionError as exc:
                    return REFUSED_OPERATOR, str(exc)
                if supervisor:
                    try:
                        require_operator(session, actor, supervisor=True)
                    except NotebookPermissionError as exc:
                        return REFUSED_ROLE, str(exc)
        except Exception as exc:  # the database is away or failing: nobody can be checked
            return REFUSED_NOTEBOOK, f"the notebook cannot be read to check {actor!r}: {exc}"
        return None

    def _now(self) -> float:
        """The engine's time (a replay's stream clock), or the wall clock before any reading."""
        now = self.engine_now()
        return now if math.isfinite(now) else time.time()

    def _answer(self, result: CommandResult) -> CommandResult:
        answered = CommandResult(
            result.command_id,
            result.reactor,
            result.ok,
            result.reason,
            result.message,
            result.duplicate,
            result.answered_at or time.time(),
            result.kind,
        )
        try:
            topic, payload = answered.message_for(self.prefix, self.key)
            self.bus.publish(topic, payload, qos=1)
        except Exception as exc:  # the transition still reaches the viewers through the alarms
            log.warning("answer to alarm command %s not sent: %s", result.command_id, exc)
        return answered


def _unix(moment: datetime) -> float:
    """A stored time as Unix seconds (SQLite gives it back without its UTC zone)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
