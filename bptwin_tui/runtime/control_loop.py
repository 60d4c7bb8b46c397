"""The station's control path: advice every window, setpoints only when allowed (docs/control.md).

Mode 0 (the default) only advises. Mode 1 publishes a changed setpoint when the settings enable
it and a supervisor confirmed it in the app; every recommendation and actuation is audited.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from bptwin.twin.actuation import Actuator, ControlAuthorisation, ControlMode, ControlSettings
from bptwin.twin.control import AdvisoryController, Recommendation, Setpoints

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.eln.services import NotebookService
    from bptwin.twin.features import ProcessState

log = logging.getLogger(__name__)


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
    ) -> None:
        self.settings = settings
        self.notebook = notebook
        self.controllers = {reactor: AdvisoryController() for reactor in reactors}
        self.actuators = {
            reactor: Actuator(bus, reactor, settings, prefix=prefix) for reactor in reactors
        }
        self._commanded: dict[str, Setpoints] = {}
        self._lock = threading.Lock()

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
