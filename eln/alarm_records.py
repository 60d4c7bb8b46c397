"""Alarm transitions kept in the notebook: the engine's own (raised, cleared) and the
operators' (acknowledged, shelved), each one audited. No UI code here."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from bptwin.eln import form_rules as check
from bptwin.eln.models import AlarmEvent, Batch, BatchStatus
from bptwin.eln.unit_of_work import SYSTEM_ACTOR, AggregateService, find_batch, row_id, where


class AlarmRecordService(AggregateService):
    """Alarm events: written one per transition, read newest first."""

    def record_alarm_event(
        self,
        actor: str | None,
        *,
        reactor: str,
        rule: str,
        priority: str,
        state: str,
        message: str = "",
        channel: str | None = None,
        value: float | None = None,
        batch_number: int | None = None,
        occurred_at: datetime | float | None = None,
    ) -> AlarmEvent:
        """One alarm transition; ``actor`` None for the engine's own (written as 'system').

        Fits ``record_alarm_event(**transition.event_fields())`` of twin.alarms. Machine
        records are never refused for their value or time: a NaN value is stored as empty,
        and a time ahead of the wall clock (accelerated simulation) is kept as given.

        Without ``batch_number`` the transition belongs to the batch running on ``reactor`` at
        its time (inoculated, not yet ended); none running: it is stored without a batch.
        """
        event = AlarmEvent(
            reactor=check.identifier("reactor", reactor, required=True),
            rule=check.text("rule", rule, max_length=128, required=True),
            priority=check.identifier("priority", priority, max_length=16, required=True),
            state=check.identifier("state", state, max_length=32, required=True),
            message=check.text("message", message),
            channel=check.identifier("channel", channel, max_length=64) or None,
            value=check.finite_or_none(value),
            occurred_at=check.machine_time("time", occurred_at, self.unit.now()),
            actor=actor,
        )
        scope = self.unit.audited(SYSTEM_ACTOR) if actor is None else self.unit.write(actor)
        with scope as session:
            if batch_number is not None:
                event.batch_id = row_id(find_batch(session, batch_number))
            else:
                running = batch_running_on(session, event.reactor, event.occurred_at)
                event.batch_id = None if running is None else row_id(running)
            session.add(event)
        return event

    def list_alarm_events(
        self, *, reactor: str | None = None, batch_number: int | None = None, limit: int = 200
    ) -> list[AlarmEvent]:
        """Alarm transitions, newest first."""
        statement = select(AlarmEvent)
        with self.unit.read() as session:
            if reactor is not None:
                statement = where(statement, col(AlarmEvent.reactor) == reactor)
            if batch_number is not None:
                batch_id = row_id(find_batch(session, batch_number))
                statement = where(statement, col(AlarmEvent.batch_id) == batch_id)
            statement = statement.order_by(
                col(AlarmEvent.occurred_at).desc(), col(AlarmEvent.id).desc()
            ).limit(limit)
            return list(session.exec(statement))


def batch_running_on(session: Session, reactor: str, at: datetime) -> Batch | None:
    """The batch that ran on ``reactor`` at ``at``: inoculated at or before it and not ended
    before it (the newest inoculation wins should records overlap)."""
    statement = where(
        select(Batch),
        col(Batch.reactor_id) == reactor,
        col(Batch.status) != BatchStatus.SETUP,
        col(Batch.inoculated_at).is_not(None),
        col(Batch.inoculated_at) <= at,
        col(Batch.ended_at).is_(None) | (col(Batch.ended_at) >= at),
    )
    statement = statement.order_by(col(Batch.inoculated_at).desc(), col(Batch.id).desc())
    return session.exec(statement.limit(1)).first()
