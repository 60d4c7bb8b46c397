"""The operator's alarm actions on a running station: engine transition, then store and publish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bptwin.tui.runtime.shadow_worker import ShadowWorker
    from bptwin.twin.alarms import AlarmTransition, AlarmView


class StationAlarms:
    """Implements ``bptwin.screens.alarms.AlarmActions`` for the station's alarm engine.

    Every transition an action makes is written to the notebook (with the operator's name) and
    published on the bus exactly like the engine's own transitions. Each is stamped on its
    reactor's clock (runtime/clock.py), the time line its alarm was raised on: a simulated
    batch's acknowledgement made seconds after the raise reads seconds, not hours.
    """

    def __init__(self, shadow_worker: ShadowWorker) -> None:
        self._worker = shadow_worker
        self._engine = shadow_worker.shadow.alarms

    def _now(self, alarm_id: str) -> float | None:
        clock = self._worker.clock
        if clock is None:
            return None  # the engine's own time
        return clock.now(alarm_id.split("/", 1)[0])

    def _done(self, transitions: tuple[AlarmTransition, ...]) -> tuple[AlarmTransition, ...]:
        self._worker.publish_transitions(transitions)
        return transitions

    def acknowledge(self, alarm_id: str, actor: str) -> tuple[AlarmTransition, ...]:
        return self._done(self._engine.acknowledge(alarm_id, actor, at=self._now(alarm_id)))

    def shelve(
        self, alarm_id: str, actor: str, reason: str, until: float
    ) -> tuple[AlarmTransition, ...]:
        return self._done(
            self._engine.shelve(alarm_id, actor, reason, until, at=self._now(alarm_id))
        )

    def unshelve(self, alarm_id: str, actor: str) -> tuple[AlarmTransition, ...]:
        return self._done(self._engine.unshelve(alarm_id, actor, at=self._now(alarm_id)))

    def active_alarms(self) -> Sequence[AlarmView]:
        return self._engine.active_alarms()

    def feed_sample(
        self, reactor: str, at: float, measured: float, predicted: float
    ) -> tuple[AlarmTransition, ...]:
        """An offline OD600 against the model: the disagreement rule may raise an alarm."""
        return self._done(self._engine.feed_sample(reactor, at, measured, predicted))
