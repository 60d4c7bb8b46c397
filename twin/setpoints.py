"""The setpoint message on the bus: built and signed by the station, verified by a receiver.

A setpoint is obeyed only when it is authenticated (HMAC-SHA256 with a station key kept outside
the broker), fresh (``ts`` within a bounded skew of the receiver's clock), authorised (a
supervisor's ``authorised_until`` not passed), not replayed (``seq`` rises strictly per reactor)
and within the control limits of its parameter. :class:`SetpointVerifier` checks all of it and
counts every refusal by reason; :meth:`SetpointCommand.from_message` is the documented gateway
parser built on it. Contract: docs/control.md, "MQTT setpoint contract".

The signature covers the topic and the payload's exact bytes: ``sig`` is the payload's last
member, and the MAC is taken over ``topic + "\\n" + <payload without its ',"sig":"…"' member>``,
so a receiver verifies before it parses and no JSON re-encoding can change what was signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bptwin.twin.control import O2_FLOW, PARAMETERS, STIRRER, UNITS, ControlConfig

KEY_BYTES = 32  # 256-bit HMAC key
DEFAULT_MAX_SKEW_S = 30.0  # how far a setpoint's ts may be from the receiver's clock
MAX_AUTHORISATION_S = 24 * 3600.0  # no confirmation lasts longer (control.confirmation_minutes)
MAX_PAYLOAD_BYTES = 8192

_CONTROL = ControlConfig()
# What a setpoint may ask for: the advisory controller's envelope (docs/control.md).
SETPOINT_LIMITS: Mapping[str, tuple[float, float]] = {
    STIRRER: (_CONTROL.stirrer_min_rpm, _CONTROL.stirrer_max_rpm),
    O2_FLOW: (0.0, _CONTROL.o2_max_l_min),
}

# Why a setpoint was refused (counted by these names).
REFUSED_MALFORMED = "malformed"
REFUSED_UNSIGNED = "unsigned"
REFUSED_SIGNATURE = "bad_signature"
REFUSED_CLOCK_SKEW = "clock_skew"
REFUSED_EXPIRED = "expired"
REFUSED_REPLAYED = "replayed"
REFUSED_LIMITS = "out_of_limits"
REFUSED_REACTOR = "unknown_reactor"
REFUSED_MODE = "not_closed_loop"
REFUSAL_REASONS = (
    REFUSED_MALFORMED,
    REFUSED_UNSIGNED,
    REFUSED_SIGNATURE,
    REFUSED_CLOCK_SKEW,
    REFUSED_EXPIRED,
    REFUSED_REPLAYED,
    REFUSED_LIMITS,
    REFUSED_REACTOR,
    REFUSED_MODE,
)

_SIGNED = re.compile(rb'(\{.*),"sig":"([^"]*)"\}\s*', re.S)


class ControlKeyError(ValueError):
    """A control key file that cannot be used; the message names the file and the fix."""


class SetpointRefused(ValueError):
    """A setpoint that must not be obeyed; ``reason`` is one of :data:`REFUSAL_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ControlKey:
    """The station's secret for signing setpoints; kept in a file only its owner can read."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < KEY_BYTES:
            raise ControlKeyError(f"a control key needs at least {KEY_BYTES} bytes")

    @classmethod
    def generate(cls) -> ControlKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_file(
        cls, path: Path | str, setting: str = "control.key_file", *, shared: bool = False
    ) -> ControlKey:
        """Read a key file: hex text, a regular file of this user, mode 600 or stricter.

        ``shared``: a key several accounts use (the operators' command key): it may belong to
        another user and be readable by its group (mode 640), never by others or writable.
        """
        path = Path(path).expanduser()
        where = f"{setting}: {path}"
        try:
            info = path.stat()
        except FileNotFoundError:
            raise ControlKeyError(
                f"{where} does not exist; create it with 'umask 077; openssl rand -hex 32 > {path}'"
            ) from None
        except OSError as exc:
            raise ControlKeyError(f"{where} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise ControlKeyError(f"{where} is not a regular file")
        if info.st_mode & (0o037 if shared else 0o077):
            wanted = "640" if shared else "600"
            raise ControlKeyError(
                f"{where} is readable or writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run 'chmod {wanted} {path}'"
            )
        if not shared and hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise ControlKeyError(f"{where} belongs to another user (uid {info.st_uid})")
        try:
            text = path.read_text(encoding="ascii").strip()
            secret = bytes.fromhex(text)
        except (OSError, UnicodeDecodeError, ValueError):
            raise ControlKeyError(f"{where} must hold the key as hexadecimal text") from None
        try:
            return cls(secret)
        except ControlKeyError as exc:
            raise ControlKeyError(f"{where}: {exc} ({2 * KEY_BYTES} hex digits)") from None

    def write(self, path: Path | str) -> Path:
        """Create a new key file (mode 600); an existing file is never overwritten."""
        path = Path(path).expanduser()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(self.secret.hex() + "\n")
        return path

    def mac(self, topic: str, body: bytes) -> str:
        return hmac.new(self.secret, topic.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def signed_payload(topic: str, payload: Mapping[str, Any], key: ControlKey) -> bytes:
    """The payload's JSON with ``sig`` appended as its last member (see the module doc)."""
    if "sig" in payload:
        raise ValueError("the payload to sign already has a 'sig'")
    body = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False).encode()
    return body[:-1] + b',"sig":"' + key.mac(topic, body).encode() + b'"}'


@dataclass(frozen=True, slots=True)
class SetpointCommand:
    """A verified setpoint, as a receiver (gateway, simulated reactor) may obey it."""

    reactor: str
    parameter: str
    value: float
    unit: str
    timestamp: str  # ``ts`` as sent
    seq: int
    supervisor: str
    authorised_until: float  # Unix s
    rule: str = ""

    def audit_fields(self, topic: str) -> dict[str, Any]:
        """Keyword arguments for ``bptwin.eln.control_service.record_command``."""
        return {
            "reactor": self.reactor,
            "parameter": self.parameter,
            "value": self.value,
            "unit": self.unit,
            "rule": self.rule,
            "supervisor": self.supervisor,
            "authorised_until": self.authorised_until,
            "seq": self.seq,
            "topic": topic,
        }

    @classmethod
    def from_message(
        cls, topic: str, payload: bytes | str, verifier: SetpointVerifier
    ) -> SetpointCommand:
        """Parse and verify ``<prefix>/v1/<reactor>/setpoints/<parameter>`` + signed JSON.

        Raises :class:`SetpointRefused` (a ValueError) naming what is wrong; the verifier
        counts it. A gateway keeps one verifier (it remembers each reactor's last ``seq``).
        """
        return verifier.verify(topic, payload)


class SetpointVerifier:
    """Every check a setpoint must pass before anyone obeys it; thread-safe.

    ``reactors`` (optional) limits the reactors obeyed here. ``clock`` is the receiver's.
    """

    def __init__(
        self,
        key: ControlKey,
        *,
        clock: Callable[[], float] = time.time,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        limits: Mapping[str, tuple[float, float]] = SETPOINT_LIMITS,
        reactors: Collection[str] | None = None,
    ) -> None:
        self.key = key
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.limits = dict(limits)
        self.reactors = None if reactors is None else frozenset(reactors)
        self.accepted = 0
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        self._last_seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def refuse(self, reason: str, message: str) -> SetpointRefused:
        """Count a refusal and return the exception to raise."""
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        return SetpointRefused(reason, message)

    def verify(self, topic: str, payload: bytes | str) -> SetpointCommand:
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        reactor, parameter = self._topic(topic)
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise self.refuse(REFUSED_MALFORMED, f"setpoint on {topic[:200]} is too long")
        signed = _SIGNED.fullmatch(raw)
        if signed is None:
            raise self.refuse(
                REFUSED_UNSIGNED, f"setpoint on {topic[:200]} is not signed (no 'sig' at its end)"
            )
        body, signature = signed.group(1) + b"}", signed.group(2).decode(errors="replace")
        if not hmac.compare_digest(self.key.mac(topic, body), signature):
            raise self.refuse(
                REFUSED_SIGNATURE, f"setpoint on {topic[:200]}: the signature does not match"
            )
        data = self._json(topic, body)
        return self._check(topic, reactor, parameter, data)

    def _topic(self, topic: str) -> tuple[str, str]:
        levels = topic.split("/")
        if len(levels) < 5 or levels[-2] != "setpoints" or levels[-4] != "v1":
            raise self.refuse(
                REFUSED_MALFORMED,
                f"topic {topic[:200]!r} is not <prefix>/v1/<reactor>/setpoints/<name>",
            )
        reactor, parameter = levels[-3], levels[-1]
        if parameter not in PARAMETERS:
            raise self.refuse(
                REFUSED_MALFORMED,
                f"setpoint {parameter[:80]!r} is not one of {', '.join(PARAMETERS)}",
            )
        if self.reactors is not None and reactor not in self.reactors:
            raise self.refuse(REFUSED_REACTOR, f"reactor {reactor[:80]!r} is not driven here")
        return reactor, parameter

    def _json(self, topic: str, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            message = f"setpoint on {topic[:200]} is not JSON: {exc}"
            raise self.refuse(REFUSED_MALFORMED, message) from None
        if not isinstance(data, dict):
            raise self.refuse(REFUSED_MALFORMED, f"setpoint on {topic[:200]} must be a JSON object")
        return data

    def _check(
        self, topic: str, reactor: str, parameter: str, data: Mapping[str, Any]
    ) -> SetpointCommand:
        what = f"setpoint {reactor}/{parameter}"
        if data.get("reactor") != reactor or data.get("parameter") != parameter:
            raise self.refuse(REFUSED_MALFORMED, f"{what}: the payload names another topic")
        value = data.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.refuse(
                REFUSED_MALFORMED, f"{what}: 'value' must be a number, got {value!r:.40}"
            )
        unit = data.get("unit")
        if unit != UNITS[parameter]:
            raise self.refuse(
                REFUSED_MALFORMED, f"{what}: unit must be {UNITS[parameter]!r}, got {unit!r:.40}"
            )
        seq = data.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise self.refuse(REFUSED_MALFORMED, f"{what}: 'seq' must be a whole number >= 0")
        supervisor = data.get("supervisor")
        if not isinstance(supervisor, str) or not supervisor.strip():
            raise self.refuse(REFUSED_MALFORMED, f"{what}: 'supervisor' is missing")
        now = self.clock()
        sent = self._time(what, data, "ts")
        if abs(sent - now) > self.max_skew_s:
            raise self.refuse(
                REFUSED_CLOCK_SKEW,
                f"{what}: sent {sent - now:+.0f} s from this clock (more than "
                f"{self.max_skew_s:g} s apart: late, replayed, or a clock is wrong)",
            )
        until = self._time(what, data, "authorised_until")
        if until <= now:
            raise self.refuse(
                REFUSED_EXPIRED,
                f"{what}: the supervisor's authorisation expired {now - until:.0f} s ago",
            )
        if until > now + MAX_AUTHORISATION_S + self.max_skew_s:
            raise self.refuse(REFUSED_EXPIRED, f"{what}: authorised for more than 24 h ahead")
        low, high = self.limits[parameter]
        if not low <= value <= high:
            raise self.refuse(
                REFUSED_LIMITS, f"{what} = {value:g} is outside {low:g}–{high:g} {unit}"
            )
        with self._lock:
            last = self._last_seq.get(reactor)
            if last is not None and seq <= last:
                self.refused[REFUSED_REPLAYED] += 1
                raise SetpointRefused(
                    REFUSED_REPLAYED, f"{what}: seq {seq} is not after {last} (a replay)"
                )
            self._last_seq[reactor] = seq
            self.accepted += 1
        rule = data.get("rule")
        return SetpointCommand(
            reactor,
            parameter,
            float(value),
            unit,
            str(data.get("ts")),
            seq,
            supervisor.strip(),
            until,
            rule if isinstance(rule, str) else "",
        )

    def _time(self, what: str, data: Mapping[str, Any], key: str) -> float:
        moment = _instant(data.get(key))
        if moment is None:
            raise self.refuse(
                REFUSED_MALFORMED, f"{what}: '{key}' must be an ISO 8601 time with its zone"
            )
        return moment


def parse_instant(raw: Any) -> float | None:
    """ISO 8601 text with a zone, or Unix seconds; None when it is neither."""
    return _instant(raw)


def _instant(raw: Any) -> float | None:
    """ISO 8601 text with a zone, or Unix seconds; None when it is neither."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw) if math.isfinite(raw) else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment.timestamp()
