"""Sending setpoints to the reactor: only in closed-loop mode, enabled, and supervisor-confirmed.

Control mode 0 (advisory, the default) never publishes anything: recommendations are shown and
audited only. Mode 1 (closed loop) publishes a changed setpoint as signed JSON on
``<prefix>/v1/<reactor>/setpoints/<parameter>`` (QoS 1, not retained) only when

1. ``[control] enabled = true`` in the settings,
2. a supervisor confirmed closed-loop control in the app and that confirmation has not expired
   (``[control] confirmation_minutes``, default 60), and
3. the station has its control key (``[control] key_file``) to sign the setpoint with.

Otherwise :meth:`Actuator.actuate` refuses and says why. The message, its signature and what a
receiver checks before obeying it are in :mod:`bptwin.twin.setpoints`. Auditing is the caller's
job (the station writes every recommendation and every actuation attempt through
``bptwin.eln.control_service``), because twin imports no notebook code. Contract: docs/control.md.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from bptwin.database.bus.base import Bus
from bptwin.database.bus.payloads import iso_timestamp
from bptwin.database.bus.topics import DEFAULT_PREFIX, setpoint_topic
from bptwin.twin.control import PARAMETERS, Recommendation
from bptwin.twin.setpoints import (
    ControlKey,
    ControlKeyError,
    SetpointCommand,
    SetpointRefused,
    SetpointVerifier,
    signed_payload,
)

SETPOINT_SOURCE = "bptwin"
MAX_CONFIRMATION_MINUTES = 24 * 60.0


class ControlMode(IntEnum):
    ADVISORY = 0  # recommend only (the default; phase-1 rule of the campaign)
    CLOSED_LOOP = 1  # publish setpoints, when enabled and confirmed by a supervisor


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """The ``[control]`` section of the settings."""

    mode: ControlMode = ControlMode.ADVISORY
    enabled: bool = False
    confirmation_minutes: float = 60.0

    def __post_init__(self) -> None:
        try:
            mode = ControlMode(self.mode)
        except ValueError:
            raise ValueError(
                f"control.mode must be 0 (advisory) or 1 (closed loop), got {self.mode!r}"
            ) from None
        object.__setattr__(self, "mode", mode)
        if not isinstance(self.enabled, bool):
            raise ValueError(f"control.enabled must be true or false, got {self.enabled!r}")
        minutes = self.confirmation_minutes
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int | float)
            or not 0 < minutes <= MAX_CONFIRMATION_MINUTES
        ):
            raise ValueError(
                f"control.confirmation_minutes must be in (0, {MAX_CONFIRMATION_MINUTES:.0f}], "
                f"got {minutes!r}"
            )


@dataclass(frozen=True, slots=True)
class ControlAuthorisation:
    """A supervisor's confirmation of closed-loop control for one reactor, until it expires."""

    supervisor: str
    reactor: str
    confirmed_at: float  # Unix s
    expires_at: float  # Unix s

    def __post_init__(self) -> None:
        if not isinstance(self.supervisor, str) or not self.supervisor.strip():
            raise ValueError("a control authorisation needs the supervisor's name")
        if not (math.isfinite(self.confirmed_at) and math.isfinite(self.expires_at)):
            raise ValueError("control authorisation times must be finite Unix seconds")
        if self.expires_at <= self.confirmed_at:
            raise ValueError("a control authorisation must expire after it was confirmed")

    @classmethod
    def for_minutes(
        cls, supervisor: str, reactor: str, minutes: float, at: float | None = None
    ) -> ControlAuthorisation:
        confirmed = time.time() if at is None else at
        return cls(supervisor, reactor, confirmed, confirmed + minutes * 60.0)

    def valid_at(self, now: float) -> bool:
        return self.confirmed_at <= now < self.expires_at


@dataclass(frozen=True, slots=True)
class ActuationResult:
    """What happened to one recommendation: sent (topic and payload) or refused (reason)."""

    recommendation: Recommendation
    sent: bool
    reason: str
    mode: ControlMode
    topic: str | None = None
    payload: dict[str, Any] | None = None
    supervisor: str | None = None

    def audit_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``bptwin.eln.control_service.record_actuation``."""
        rec = self.recommendation
        return {
            "reactor": rec.reactor,
            "parameter": rec.parameter,
            "current": rec.current,
            "value": rec.recommended,
            "unit": rec.unit,
            "rule": rec.rule,
            "reason": rec.reason,
            "mode": int(self.mode),
            "sent": self.sent,
            "refusal": None if self.sent else self.reason,
            "topic": self.topic,
            "supervisor": self.supervisor,
            "timestamp": rec.timestamp,
        }


def setpoint_payload(
    recommendation: Recommendation, authorisation: ControlAuthorisation, at: float, seq: int
) -> dict[str, Any]:
    """The JSON object published on the setpoint topic, before its signature (docs/control.md)."""
    return {
        "reactor": recommendation.reactor,
        "parameter": recommendation.parameter,
        "ts": iso_timestamp(at),
        "seq": seq,
        "value": recommendation.recommended,
        "unit": recommendation.unit,
        "previous": recommendation.current,
        "mode": int(ControlMode.CLOSED_LOOP),
        "rule": recommendation.rule,
        "reason": recommendation.reason,
        "supervisor": authorisation.supervisor,
        "authorised_until": iso_timestamp(authorisation.expires_at),
        "source": SETPOINT_SOURCE,
    }


class Actuator:
    """Publishes setpoints for one reactor, under the mode, settings and authorisation rules."""

    def __init__(
        self,
        bus: Bus | None,
        reactor: str,
        settings: ControlSettings | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        key: ControlKey | None = None,
    ) -> None:
        self.bus = bus
        self.reactor = reactor
        self.settings = settings or ControlSettings()
        self.prefix = prefix
        self.clock = clock
        self.key = key
        self._authorisation: ControlAuthorisation | None = None
        self._last_seq = 0
        self._lock = threading.Lock()
        setpoint_topic(reactor, PARAMETERS[0], prefix)  # bad reactor or prefix: fail now

    # ------------------------------------------------------------------ authorisation

    def authorise(self, authorisation: ControlAuthorisation) -> None:
        """Accept a supervisor's confirmation (the app checked name, PIN and role)."""
        if authorisation.reactor != self.reactor:
            raise ValueError(
                f"authorisation is for reactor {authorisation.reactor!r}, not {self.reactor!r}"
            )
        with self._lock:
            self._authorisation = authorisation

    def revoke(self) -> None:
        """End closed-loop control now (back to advice only until confirmed again)."""
        with self._lock:
            self._authorisation = None

    @property
    def authorisation(self) -> ControlAuthorisation | None:
        """The current authorisation, None when there is none or it has expired."""
        with self._lock:
            current = self._authorisation
        return current if current is not None and current.valid_at(self.clock()) else None

    def refusal(self) -> str | None:
        """Why a setpoint would not be sent now, or None when it would."""
        settings = self.settings
        if settings.mode != ControlMode.CLOSED_LOOP:
            return "control mode 0 (advisory): recommendations are shown, never sent"
        if not settings.enabled:
            return "closed-loop control is not enabled in the settings ([control] enabled)"
        if self.bus is None:
            return "no bus to publish setpoints on"
        if self.key is None:
            return "closed-loop control needs the station's control key ([control] key_file)"
        with self._lock:
            current = self._authorisation
        now = self.clock()
        if current is None:
            return "closed-loop control needs a supervisor's confirmation in the app"
        if not current.valid_at(now):
            return (
                f"the supervisor confirmation by {current.supervisor} expired at "
                f"{iso_timestamp(current.expires_at)}; a supervisor must confirm again"
            )
        return None

    @property
    def active(self) -> bool:
        """True when a changed setpoint would be published now."""
        return self.refusal() is None

    # ------------------------------------------------------------------ actuation

    def actuate(self, recommendation: Recommendation) -> ActuationResult:
        """Publish the recommended setpoint, or refuse with the reason; never raises for rules."""
        mode = self.settings.mode
        if recommendation.reactor != self.reactor:
            return ActuationResult(
                recommendation,
                False,
                f"recommendation is for reactor {recommendation.reactor!r}, this actuator drives "
                f"{self.reactor!r}",
                mode,
            )
        if recommendation.parameter not in PARAMETERS:
            return ActuationResult(
                recommendation, False, f"{recommendation.parameter!r} is not actuated", mode
            )
        if not recommendation.is_change:
            return ActuationResult(recommendation, False, "advice to hold: nothing to send", mode)
        refusal = self.refusal()
        authorisation = self.authorisation
        if refusal is not None or authorisation is None or self.bus is None or self.key is None:
            return ActuationResult(recommendation, False, refusal or "not authorised", mode)
        topic = setpoint_topic(self.reactor, recommendation.parameter, self.prefix)
        now = self.clock()
        payload = setpoint_payload(recommendation, authorisation, now, self._next_seq(now))
        message = signed_payload(topic, payload, self.key)
        payload = json.loads(message)  # what was sent, signature included (for the audit)
        try:
            self.bus.publish(topic, message, qos=1, retain=False)
        except (OSError, RuntimeError, ValueError) as exc:
            return ActuationResult(
                recommendation,
                False,
                f"publishing on {topic} failed: {exc}",
                mode,
                topic,
                payload,
                authorisation.supervisor,
            )
        return ActuationResult(
            recommendation,
            True,
            f"sent on {topic}, authorised by {authorisation.supervisor}",
            mode,
            topic,
            payload,
            authorisation.supervisor,
        )

    def _next_seq(self, now: float) -> int:
        """Milliseconds of the clock, strictly rising: a receiver refuses any seq it saw."""
        with self._lock:
            self._last_seq = max(self._last_seq + 1, int(now * 1000))
            return self._last_seq


__all__ = [
    "ActuationResult",
    "Actuator",
    "ControlAuthorisation",
    "ControlKey",
    "ControlKeyError",
    "ControlMode",
    "ControlSettings",
    "SetpointCommand",
    "SetpointRefused",
    "SetpointVerifier",
    "setpoint_payload",
]
