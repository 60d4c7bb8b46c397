"""The station's control path: advice every window, setpoints only when allowed (docs/control.md).

Mode 0 (the default) only advises. Mode 1 publishes a changed setpoint, signed with the
station's control key, when the settings enable it and a supervisor confirmed it in the app;
every recommendation and actuation is audited. On the receiving side (the simulated reactors)
:class:`SetpointFollower` obeys a setpoint only in mode 1 and only when it passes every check of
``bptwin.twin.setpoints``; refusals are counted and logged, obeyed setpoints audited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bptwin.tui.runtime.refusals import RefusalTally
from bptwin.twin.actuation import Actuator, ControlAuthorisation, ControlMode, ControlSettings
from bptwin.twin.control import AdvisoryController, Recommendation, Setpoints
from bptwin.twin.setpoints import (
    REFUSAL_REASONS,
    REFUSED_MODE,
    REFUSED_REACTOR,
    ControlKey,
    ControlKeyError,
    SetpointCommand,
    SetpointRefused,
    SetpointVerifier,
)

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.eln.services import NotebookService
    from bptwin.twin.features import ProcessState

log = logging.getLogger(__name__)


class SetpointTarget(Protocol):
    """What obeys a setpoint (the simulated reactor; a gateway's PLC driver)."""

    def apply_setpoint(self, parameter: str, value: float | None) -> None: ...


def load_control_key(key_file: Path | None, settings: ControlSettings) -> ControlKey | None:
    """The station's key, or None when none is configured and mode 1 is not enabled.

    ControlKeyError names ``control.key_file`` when the file is unusable, or when closed-loop
    control is switched on without one (it could not sign a setpoint).
    """
    if key_file is not None:
        return ControlKey.from_file(key_file)
    if settings.mode == ControlMode.CLOSED_LOOP and settings.enabled:
        raise ControlKeyError(
            "control.key_file: closed-loop control (mode 1, enabled) needs the station's "
            "control key to sign setpoints; create one with 'umask 077; openssl rand -hex 32 "
            "> /etc/bptwin/control.key' and name it here (docs/control.md)"
        )
    return None


class StationControl:
    """One advisory controller and one actuator per reactor."""

    def __init__(
        self,
        reactors: tuple[str, ...] | list[str],
        *,
        bus: Bus,
        prefix: str,
        settings: ControlSettings,
        notebook: NotebookService | None,
        key: ControlKey | None = None,
    ) -> None:
        self.settings = settings
        self.notebook = notebook
        self.prefix = prefix
        self.key = key
        self.controllers = {reactor: AdvisoryController() for reactor in reactors}
        self.actuators = {
            reactor: Actuator(bus, reactor, settings, prefix=prefix, key=key)
            for reactor in reactors
        }
        self.follower: SetpointFollower | None = None
        self._commanded: dict[str, Setpoints] = {}
        self._lock = threading.Lock()

    def follow_setpoints(
        self, bus: Bus, target_of: Callable[[str], SetpointTarget | None]
    ) -> Subscription:
        """Let ``target_of(reactor)`` obey the verified setpoints of this station's reactors."""
        verifier = None
        if self.key is not None:
            verifier = SetpointVerifier(self.key, reactors=tuple(self.controllers))
        self.follower = SetpointFollower(target_of, self.settings, verifier, self.notebook)
        return bus.subscribe(f"{self.prefix}/v1/+/setpoints/+", self.follower, qos=1)

    def refused_setpoints(self) -> dict[str, int]:
        """Setpoints received and refused since start, by reason (for the status strip)."""
        return self.follower.refused_counts() if self.follower is not None else {}

    def on_state(self, state: ProcessState) -> list[Recommendation]:
        """Advice new in this window; in mode 1, changed setpoints sent when authorised."""
        controller = self.controllers.get(state.reactor)
        if controller is None:
            return []
        actuator = self.actuators[state.reactor]
        with self._lock:
            current = self._commanded.get(state.reactor) if actuator.active else None
        new_advice = controller.update(state, current)
        for recommendation in new_advice:
            self._audit_recommendation(recommendation)
            if self.settings.mode == ControlMode.CLOSED_LOOP and recommendation.is_change:
                self._actuate(actuator, recommendation, current)
        return new_advice

    def advice(self, reactor: str) -> tuple[Recommendation, ...]:
        controller = self.controllers.get(reactor)
        return controller.advice if controller is not None else ()

    def status(self, reactor: str) -> str:
        actuator = self.actuators.get(reactor)
        if actuator is None:
            return ""
        return "closed loop: setpoints are sent" if actuator.active else (actuator.refusal() or "")

    def authorise(self, supervisor: str, pin: str, reactor: str) -> ControlAuthorisation:
        """A supervisor confirms closed-loop control (checked against the notebook, audited)."""
        from bptwin.eln.control_service import record_authorisation

        if self.notebook is None:
            raise RuntimeError("closed-loop control needs the notebook to audit the confirmation")
        row = record_authorisation(
            self.notebook,
            supervisor,
            pin,
            reactor=reactor,
            minutes=self.settings.confirmation_minutes,
        )
        expires = row.valid_until
        assert expires is not None  # an authorisation row always has its expiry
        authorisation = ControlAuthorisation(
            row.supervisor or supervisor, reactor, row.occurred_at.timestamp(), expires.timestamp()
        )
        self.actuators[reactor].authorise(authorisation)
        return authorisation

    def take_authorisation(self, authorisation: ControlAuthorisation) -> None:
        """A confirmation checked and stored elsewhere (a viewer's, read back from the notebook)."""
        self.actuators[authorisation.reactor].authorise(authorisation)

    def mode_refusal(self) -> str | None:
        """Why no confirmation can be taken here (mode 0, not enabled), or None."""
        if self.settings.mode != ControlMode.CLOSED_LOOP:
            return "control mode 0 (advisory) sends no setpoint"
        if not self.settings.enabled:
            return "closed-loop control is not enabled ([control] enabled)"
        return None

    def revoke(self, actor: str, reactor: str) -> None:
        from bptwin.eln.control_service import record_revocation

        self.actuators[reactor].revoke()
        if self.notebook is not None:
            record_revocation(self.notebook, actor, reactor=reactor)

    def _actuate(
        self, actuator: Actuator, recommendation: Recommendation, current: Setpoints | None
    ) -> None:
        from bptwin.eln.control_service import record_actuation

        result = actuator.actuate(recommendation)
        if result.sent:
            base = current or Setpoints(stirrer_speed=recommendation.current)
            values = {"stirrer_speed": base.stirrer_speed, "o2_flow": base.o2_flow}
            values[recommendation.parameter] = recommendation.recommended
            with self._lock:
                self._commanded[recommendation.reactor] = Setpoints(**values)
        if self.notebook is not None:
            try:
                record_actuation(self.notebook, **result.audit_fields())
            except Exception as exc:
                log.error("actuation of %s not audited: %s", recommendation.parameter, exc)

    def _audit_recommendation(self, recommendation: Recommendation) -> None:
        from bptwin.eln.control_service import record_recommendation

        if self.notebook is None:
            return
        try:
            record_recommendation(
                self.notebook, **recommendation.to_dict(), mode=int(self.settings.mode)
            )
        except Exception as exc:
            log.error("recommendation for %s not audited: %s", recommendation.parameter, exc)


class SetpointFollower:
    """Bus handler on the receiving side: obeys a setpoint only in mode 1, enabled, and when it
    passes the verifier (signed, fresh, authorised, not replayed, within limits).

    Each refusal is counted by reason and logged (one line per reason every 10 s at most, so a
    flood cannot fill the log); each obeyed setpoint is a ``command`` row in the notebook.
    """

    def __init__(
        self,
        target_of: Callable[[str], SetpointTarget | None],
        settings: ControlSettings,
        verifier: SetpointVerifier | None,
        notebook: NotebookService | None,
    ) -> None:
        self.target_of = target_of
        self.settings = settings
        self.verifier = verifier
        self.notebook = notebook
        self.obeyed = 0
        self._refusals = RefusalTally("setpoint", log, REFUSAL_REASONS)
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        try:
            command, target = self._accept(topic, payload)
        except SetpointRefused as exc:
            self._refusals.count(exc)
            return
        try:
            target.apply_setpoint(command.parameter, command.value)
        except ValueError as exc:  # the target's own interlocks
            self._refusals.count(SetpointRefused("out_of_limits", f"{topic[:200]}: {exc}"))
            return
        with self._lock:
            self.obeyed += 1
        log.info(
            "setpoint obeyed: %s/%s = %g %s (seq %d, authorised by %s)",
            command.reactor,
            command.parameter,
            command.value,
            command.unit,
            command.seq,
            command.supervisor,
        )
        self._audit(command, topic)

    def refused_counts(self) -> dict[str, int]:
        return self._refusals.counts()

    def _accept(self, topic: str, payload: bytes) -> tuple[SetpointCommand, SetpointTarget]:
        if self.verifier is None:  # no key: nothing can be verified, so nothing is obeyed
            unkeyed = self._mode_refusal() or "no control key to verify it ([control] key_file)"
            raise SetpointRefused(REFUSED_MODE, f"setpoint on {topic[:200]} refused: {unkeyed}")
        command = SetpointCommand.from_message(topic, payload, self.verifier)
        what = f"setpoint {command.reactor}/{command.parameter}"
        why = self._mode_refusal()
        if why is not None:
            raise SetpointRefused(REFUSED_MODE, f"{what} refused: {why}")
        target = self.target_of(command.reactor)
        if target is None:
            raise SetpointRefused(REFUSED_REACTOR, f"{what} refused: nothing here obeys it")
        return command, target

    def _mode_refusal(self) -> str | None:
        if self.settings.mode != ControlMode.CLOSED_LOOP:
            return "control mode 0 (advisory) obeys no setpoint"
        if not self.settings.enabled:
            return "closed-loop control is not enabled ([control] enabled)"
        return None

    def _audit(self, command: SetpointCommand, topic: str) -> None:
        if self.notebook is None:
            return
        from bptwin.eln.control_service import record_command

        try:
            record_command(self.notebook, **command.audit_fields(topic))
        except Exception as exc:
            log.error(
                "obeyed setpoint %s/%s not audited: %s", command.reactor, command.parameter, exc
            )
