"""An operator's command sent from a control room to the engine, and the engine's answer.

A viewer of ``bptwin serve`` has no alarm engine of its own: acknowledging or shelving there is a
message on ``<prefix>/v1/<reactor>/commands/alarm`` that the engine obeys only when it is
authenticated (HMAC-SHA256 with the operators' command key, the scheme of
``bptwin.twin.setpoints``: the signature covers the topic and the payload's exact bytes), fresh
(``issued_at`` within a bounded skew of the engine's clock, ``expires_at`` not passed) and new
(its ``command_id`` was not seen: a duplicate is answered with the first answer and does
nothing). The engine answers on ``…/commands/alarm/result``, signed the same way, so a control
room can tell the engine's answer from anyone else's. A supervisor's confirmation of
closed-loop control goes the same way on ``…/commands/control``. Contract: docs/mqtt.md,
"Commands".
"""

from __future__ import annotations

import hmac
import json
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bptwin.database.bus import topics
from bptwin.twin.setpoints import ControlKey, parse_instant, signed_payload

ALARM = "alarm"  # the command kind: ``…/commands/alarm``
ACKNOWLEDGE = "acknowledge"
SHELVE = "shelve"
UNSHELVE = "unshelve"
ACTIONS = (ACKNOWLEDGE, SHELVE, UNSHELVE)

CONTROL = "control"  # ``…/commands/control``: a supervisor's confirmation of closed loop
AUTHORISE = "authorise"
REVOKE = "revoke"
CONTROL_ACTIONS = (AUTHORISE, REVOKE)
KINDS = (ALARM, CONTROL)

DEFAULT_MAX_SKEW_S = 30.0
MAX_LIFETIME_S = 120.0  # no command may stay valid longer than this after it was issued
MAX_PAYLOAD_BYTES = 4096
MAX_SHELVE_S = 24 * 3600.0
MAX_REASON_LENGTH = 500
MAX_ACTOR_LENGTH = 64
_COMMAND_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SIGNED = re.compile(rb'(\{.*),"sig":"([^"]*)"\}\s*', re.S)

# Why a command was refused (counted by these names). INVALID_REASONS say the message was not
# a valid command of an operator; the others that a valid command could not be carried out.
REFUSED_MALFORMED = "malformed"
REFUSED_UNSIGNED = "unsigned"
REFUSED_SIGNATURE = "bad_signature"
REFUSED_CLOCK_SKEW = "clock_skew"
REFUSED_EXPIRED = "expired"
REFUSED_OPERATOR = "unknown_operator"
REFUSED_ROLE = "not_supervisor"
REFUSED_NOTEBOOK = "notebook_unreachable"
REFUSED_NOT_APPLICABLE = "not_applicable"
REFUSED_BUSY = "busy"
INVALID_REASONS = (
    REFUSED_MALFORMED,
    REFUSED_UNSIGNED,
    REFUSED_SIGNATURE,
    REFUSED_CLOCK_SKEW,
    REFUSED_EXPIRED,
    REFUSED_OPERATOR,
    REFUSED_ROLE,
)


@dataclass(frozen=True, slots=True)
class _Common:
    """What every command has, once checked."""

    what: str
    reactor: str
    action: str
    actor: str
    command_id: str
    issued_at: float
    expires_at: float
    origin: str


class CommandRefused(ValueError):
    """A command that must not be obeyed; ``reason`` is one of the ``REFUSED_*`` names."""

    def __init__(self, reason: str, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.command_id = command_id


@dataclass(frozen=True, slots=True)
class AlarmCommand:
    """An operator's acknowledge, shelve or unshelve of one alarm, as sent and as verified."""

    reactor: str
    action: str
    alarm_id: str
    actor: str
    command_id: str
    issued_at: float  # Unix s, the sender's clock
    expires_at: float  # Unix s: not obeyed after this
    reason: str = ""  # shelve only
    duration_s: float = 0.0  # shelve only: from the moment the engine applies it
    origin: str = ""  # which control room sent it (host and pid), for the log

    kind = ALARM

    @classmethod
    def new(
        cls,
        reactor: str,
        action: str,
        alarm_id: str,
        actor: str,
        *,
        lifetime_s: float,
        reason: str = "",
        duration_s: float = 0.0,
        origin: str = "",
        clock: Callable[[], float] = time.time,
    ) -> AlarmCommand:
        now = clock()
        return cls(
            reactor,
            action,
            alarm_id,
            actor,
            uuid.uuid4().hex,
            now,
            now + min(lifetime_s, MAX_LIFETIME_S),
            reason,
            duration_s,
            origin,
        )

    def topic(self, prefix: str) -> str:
        return topics.command_topic(self.reactor, ALARM, prefix)

    def describe(self) -> str:
        what = f"{self.action} {self.alarm_id} by {self.actor}"
        return f"{what} for {self.duration_s / 60:g} min" if self.action == SHELVE else what

    def message(self, prefix: str, key: ControlKey) -> tuple[str, bytes]:
        """Topic and signed payload."""
        topic = self.topic(prefix)
        return topic, signed_payload(topic, asdict(self), key)


@dataclass(frozen=True, slots=True)
class ControlCommand:
    """A supervisor's confirmation of closed-loop control (stored in the notebook by the
    sending control room, where the PIN was checked), or anyone's end of it."""

    reactor: str
    action: str  # authorise | revoke
    actor: str
    command_id: str
    issued_at: float
    expires_at: float
    authorisation_id: int = 0  # authorise: the notebook's control_action row of the confirmation
    origin: str = ""

    kind = CONTROL

    @classmethod
    def new(
        cls,
        reactor: str,
        action: str,
        actor: str,
        *,
        lifetime_s: float,
        authorisation_id: int = 0,
        origin: str = "",
        clock: Callable[[], float] = time.time,
    ) -> ControlCommand:
        now = clock()
        return cls(
            reactor,
            action,
            actor,
            uuid.uuid4().hex,
            now,
            now + min(lifetime_s, MAX_LIFETIME_S),
            authorisation_id,
            origin,
        )

    def topic(self, prefix: str) -> str:
        return topics.command_topic(self.reactor, CONTROL, prefix)

    def describe(self) -> str:
        if self.action == AUTHORISE:
            return f"closed-loop control of {self.reactor} confirmed by {self.actor}"
        return f"closed-loop control of {self.reactor} stopped by {self.actor}"

    def message(self, prefix: str, key: ControlKey) -> tuple[str, bytes]:
        topic = self.topic(prefix)
        return topic, signed_payload(topic, asdict(self), key)


Command = AlarmCommand | ControlCommand


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The engine's answer to one command: applied, or refused and why."""

    command_id: str
    reactor: str
    ok: bool
    reason: str  # "" when applied, else one of the REFUSED_* names
    message: str
    duplicate: bool = False  # the same command_id came again: nothing was done this time
    answered_at: float = 0.0
    kind: str = ALARM

    def topic(self, prefix: str) -> str:
        return topics.command_result_topic(self.reactor, self.kind, prefix)

    def message_for(self, prefix: str, key: ControlKey) -> tuple[str, bytes]:
        topic = self.topic(prefix)
        return topic, signed_payload(topic, asdict(self), key)

    def again(self) -> CommandResult:
        """This answer for a repeat of its command."""
        return CommandResult(
            self.command_id,
            self.reactor,
            self.ok,
            self.reason,
            self.message,
            True,
            time.time(),
            self.kind,
        )


def verified_body(topic: str, raw: bytes, key: ControlKey) -> bytes:
    """The signed JSON of a message, or CommandRefused (unsigned, bad signature, too long)."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise CommandRefused(REFUSED_MALFORMED, f"message on {topic[:200]} is too long")
    signed = _SIGNED.fullmatch(raw)
    if signed is None:
        raise CommandRefused(
            REFUSED_UNSIGNED, f"message on {topic[:200]} is not signed (no 'sig' at its end)"
        )
    body, signature = signed.group(1) + b"}", signed.group(2).decode(errors="replace")
    if not hmac.compare_digest(key.mac(topic, body), signature):
        raise CommandRefused(
            REFUSED_SIGNATURE,
            f"message on {topic[:200]}: the signature does not match (another key, or forged)",
        )
    return body


def _object(topic: str, body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandRefused(REFUSED_MALFORMED, f"{topic[:200]}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandRefused(REFUSED_MALFORMED, f"{topic[:200]}: must be a JSON object")
    return data


class CommandVerifier:
    """Every check an alarm command must pass before the engine obeys it; thread-safe.

    It also remembers each command's answer for as long as the command could still be fresh,
    so a repeat (a QoS 1 redelivery, a replay) gets the first answer and changes nothing.
    """

    def __init__(
        self,
        key: ControlKey,
        reactors: tuple[str, ...] | list[str],
        *,
        prefix: str,
        clock: Callable[[], float] = time.time,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        memory: int = 10_000,
    ) -> None:
        self.key = key
        self.reactors = frozenset(reactors)
        self.prefix = prefix
        self.clock = clock
        self.max_skew_s = max_skew_s
        self._memory = memory
        self._answers: OrderedDict[str, tuple[float, CommandResult | None]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, topic: str, payload: bytes | str) -> Command:
        """The command, or CommandRefused naming what is wrong (``command_id`` when known)."""
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        reactor, kind = self._topic(topic)
        data = _object(topic, verified_body(topic, raw, self.key))
        command_id = data.get("command_id")
        if not isinstance(command_id, str) or not _COMMAND_ID.fullmatch(command_id):
            raise CommandRefused(REFUSED_MALFORMED, f"{topic[:200]}: 'command_id' is missing")
        try:
            common = self._common(f"{kind} command {command_id}", reactor, kind, data, command_id)
            if kind == ALARM:
                return self._alarm(common, data)
            return self._control(common, data)
        except CommandRefused as exc:
            exc.command_id = command_id
            raise

    def _topic(self, topic: str) -> tuple[str, str]:
        levels = topic.split("/")
        reactor, kind = (levels[-3], levels[-1]) if len(levels) >= 3 else ("", "")
        if (
            kind not in KINDS
            or reactor not in self.reactors
            or topic != topics.command_topic(reactor, kind, self.prefix)
        ):
            raise CommandRefused(
                REFUSED_MALFORMED,
                f"topic {topic[:200]!r} is not {self.prefix}/v1/<reactor>/commands/"
                f"<{'|'.join(KINDS)}> of a reactor this engine runs",
            )
        return reactor, kind

    def _common(
        self, what: str, reactor: str, kind: str, data: Mapping[str, Any], command_id: str
    ) -> _Common:
        if data.get("reactor") != reactor:
            raise CommandRefused(REFUSED_MALFORMED, f"{what}: the payload names another reactor")
        allowed = ACTIONS if kind == ALARM else CONTROL_ACTIONS
        action = data.get("action")
        if action not in allowed:
            raise CommandRefused(
                REFUSED_MALFORMED, f"{what}: 'action' must be one of {', '.join(allowed)}"
            )
        actor = data.get("actor")
        if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_LENGTH:
            raise CommandRefused(REFUSED_MALFORMED, f"{what}: 'actor' names no operator")
        issued, expires = self._time(what, data, "issued_at"), self._time(what, data, "expires_at")
        now = self.clock()
        if abs(issued - now) > self.max_skew_s:
            raise CommandRefused(
                REFUSED_CLOCK_SKEW,
                f"{what}: issued {issued - now:+.0f} s from the engine's clock (more than "
                f"{self.max_skew_s:g} s apart: late, replayed, or a clock is wrong)",
            )
        if expires <= now:
            raise CommandRefused(REFUSED_EXPIRED, f"{what}: expired {now - expires:.0f} s ago")
        if expires - issued > MAX_LIFETIME_S:
            raise CommandRefused(
                REFUSED_EXPIRED, f"{what}: valid for more than {MAX_LIFETIME_S:g} s"
            )
        origin = data.get("origin", "")
        return _Common(
            what,
            reactor,
            str(action),
            actor.strip(),
            command_id,
            issued,
            expires,
            origin[:200] if isinstance(origin, str) else "",
        )

    def _alarm(self, common: _Common, data: Mapping[str, Any]) -> AlarmCommand:
        what, reactor, action = common.what, common.reactor, common.action
        alarm_id = data.get("alarm_id")
        if not isinstance(alarm_id, str) or not alarm_id.startswith(f"{reactor}/"):
            raise CommandRefused(
                REFUSED_MALFORMED, f"{what}: 'alarm_id' must be an alarm of {reactor}"
            )
        reason, duration = data.get("reason", ""), data.get("duration_s", 0.0)
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
            raise CommandRefused(REFUSED_MALFORMED, f"{what}: 'reason' must be short text")
        if action == SHELVE and (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or not 0 < duration <= MAX_SHELVE_S
        ):
            raise CommandRefused(
                REFUSED_MALFORMED, f"{what}: 'duration_s' must be above 0 and at most 24 h"
            )
        return AlarmCommand(
            reactor,
            action,
            alarm_id,
            common.actor,
            common.command_id,
            common.issued_at,
            common.expires_at,
            reason.strip(),
            float(duration) if action == SHELVE else 0.0,
            common.origin,
        )

    def _control(self, common: _Common, data: Mapping[str, Any]) -> ControlCommand:
        authorisation = data.get("authorisation_id", 0)
        if common.action == AUTHORISE and (
            isinstance(authorisation, bool)
            or not isinstance(authorisation, int)
            or authorisation < 1
        ):
            raise CommandRefused(
                REFUSED_MALFORMED,
                f"{common.what}: 'authorisation_id' must name the supervisor's stored confirmation",
            )
        return ControlCommand(
            common.reactor,
            common.action,
            common.actor,
            common.command_id,
            common.issued_at,
            common.expires_at,
            authorisation if common.action == AUTHORISE else 0,
            common.origin,
        )

    def _time(self, what: str, data: Mapping[str, Any], key: str) -> float:
        moment = parse_instant(data.get(key))
        if moment is None:
            raise CommandRefused(
                REFUSED_MALFORMED, f"{what}: '{key}' must be Unix seconds or ISO 8601 with a zone"
            )
        return moment

    # -- once only -----------------------------------------------------------------------------

    def claim(self, command_id: str) -> tuple[bool, CommandResult | None]:
        """``(True, None)`` the first time a command is seen; then ``(False, its answer)``
        (None while the first is still being carried out)."""
        now = self.clock()
        with self._lock:
            self._forget(now)
            seen = self._answers.get(command_id)
            if seen is not None:
                return False, seen[1]
            self._answers[command_id] = (now, None)
            return True, None

    def answered(self, result: CommandResult) -> None:
        with self._lock:
            if result.command_id in self._answers:
                seen_at, _ = self._answers[result.command_id]
                self._answers[result.command_id] = (seen_at, result)

    def _forget(self, now: float) -> None:
        """Drop what can no longer pass the clock check (and never keep more than ``memory``)."""
        horizon = now - (self.max_skew_s + MAX_LIFETIME_S)
        while self._answers:
            command_id, (seen_at, _) = next(iter(self._answers.items()))
            if seen_at >= horizon and len(self._answers) < self._memory:
                break
            del self._answers[command_id]


def decode_result(topic: str, payload: bytes, key: ControlKey) -> CommandResult:
    """A verified answer of the engine; CommandRefused when it is not one."""
    data = _object(topic, verified_body(topic, bytes(payload), key))
    try:
        result = CommandResult(
            command_id=str(data["command_id"]),
            reactor=str(data["reactor"]),
            ok=bool(data["ok"]),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", ""))[:500],
            duplicate=bool(data.get("duplicate", False)),
            answered_at=float(data.get("answered_at", 0.0)),
            kind=str(data.get("kind", ALARM)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandRefused(REFUSED_MALFORMED, f"{topic[:200]}: answer lacks {exc}") from None
    levels = topic.split("/")
    if len(levels) < 4 or levels[-4] != result.reactor or levels[-2] != result.kind:
        raise CommandRefused(REFUSED_MALFORMED, f"{topic[:200]}: the answer names another reactor")
    return result
