"""Audited notebook writes of the control path (see eln.control_records, docs/control.md).

Each call is one audited transaction (the notebook's unit of work and eln.audit), so
every recommendation, every actuation attempt (sent or refused) and every supervisor
confirmation leaves a ControlAction row and its audit entry. Machine records (recommendations,
actuations) are written as the actor ``system`` and never refused for their numbers: a NaN
becomes empty. The keyword names match ``Recommendation.to_dict()`` and
``ActuationResult.audit_fields()`` of twin, so callers can pass those straight through.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from bptwin.eln import form_rules as check
from bptwin.eln.control_records import ControlAction, ControlActionKind
from bptwin.eln.errors import NotebookPermissionError
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.eln.unit_of_work import SYSTEM_ACTOR, find_batch, row_id, where

MAX_REASON = 2000
MAX_CONFIRMATION_MINUTES = 24 * 60.0


def _machine_text(field: str, value: Any, max_length: int) -> str:
    """Software-made text: kept, but trimmed to fit rather than refused."""
    text = check.text(field, value if isinstance(value, str) else str(value or ""))
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def _write(service: NotebookService, row: ControlAction, batch_number: int | None) -> ControlAction:
    with service.unit.audited(SYSTEM_ACTOR) as session:
        if batch_number is not None:
            row.batch_id = row_id(find_batch(session, batch_number))
        session.add(row)
    return row


def _setpoint_columns(
    reactor: str, parameter: str, unit: str, value: Any, rule: str
) -> dict[str, Any]:
    """The columns every setpoint record has, checked."""
    return {
        "reactor": check.identifier("reactor", reactor, required=True),
        "parameter": check.identifier("parameter", parameter, required=True),
        "unit": check.text("unit", unit, max_length=16),
        "value": check.finite_or_none(value),
        "rule": check.identifier("rule", rule, max_length=128),
    }


def record_recommendation(
    service: NotebookService,
    *,
    reactor: str,
    parameter: str,
    current: float,
    recommended: float,
    unit: str,
    reason: str,
    rule: str,
    confidence: float | None = None,
    timestamp: float | datetime | None = None,
    mode: int = 0,
    batch_number: int | None = None,
) -> ControlAction:
    """One piece of controller advice (``**recommendation.to_dict()`` fits)."""
    row = ControlAction(
        kind=ControlActionKind.RECOMMENDATION,
        **_setpoint_columns(reactor, parameter, unit, recommended, rule),
        current_value=check.finite_or_none(current),
        reason=_machine_text("reason", reason, MAX_REASON),
        confidence=check.finite_or_none(confidence),
        mode=int(mode),
        occurred_at=check.machine_time("time", timestamp, service.clock()),
    )
    return _write(service, row, batch_number)


def record_actuation(
    service: NotebookService,
    *,
    reactor: str,
    parameter: str,
    current: float,
    value: float,
    unit: str,
    rule: str,
    reason: str,
    mode: int,
    sent: bool,
    refusal: str | None = None,
    topic: str | None = None,
    supervisor: str | None = None,
    timestamp: float | datetime | None = None,
    batch_number: int | None = None,
) -> ControlAction:
    """One actuation attempt: a setpoint sent, or refused with the reason."""
    row = ControlAction(
        kind=ControlActionKind.ACTUATION,
        **_setpoint_columns(reactor, parameter, unit, value, rule),
        current_value=check.finite_or_none(current),
        reason=_machine_text("reason", reason, MAX_REASON),
        mode=int(mode),
        sent=bool(sent),
        refusal=None if refusal is None else _machine_text("refusal", refusal, 1000),
        topic=None if topic is None else check.text("topic", topic, max_length=1024),
        supervisor=check.text("supervisor", supervisor, max_length=64) or None,
        occurred_at=check.machine_time("time", timestamp, service.clock()),
    )
    return _write(service, row, batch_number)


def record_authorisation(
    service: NotebookService,
    supervisor: str,
    pin: str,
    *,
    reactor: str,
    minutes: float = 60.0,
    reason: str = "",
    batch_number: int | None = None,
) -> ControlAction:
    """A supervisor confirms closed-loop control for ``minutes``; name, PIN and role checked.

    Returns the row; ``occurred_at`` and ``valid_until`` are the authorisation's window
    (``bptwin.twin.actuation.ControlAuthorisation(supervisor, reactor, start, end)``).
    """
    reactor = check.identifier("reactor", reactor, required=True)
    minutes = float(
        check.number(
            "confirmation minutes",
            minutes,
            minimum=0.0,
            exclusive_minimum=True,
            maximum=MAX_CONFIRMATION_MINUTES,
        )
        or 0.0
    )
    operator = service.operators.authenticate(supervisor, pin)  # one message for every failure
    if operator.role != OperatorRole.SUPERVISOR:
        raise NotebookPermissionError(
            f"closed-loop control needs a supervisor's confirmation; {operator.name!r} is an "
            "operator"
        )
    now = service.clock()
    row = ControlAction(
        kind=ControlActionKind.AUTHORISATION,
        reactor=reactor,
        rule="supervisor_confirmation",
        reason=check.text("reason", reason, max_length=MAX_REASON)
        or f"closed-loop control confirmed for {minutes:g} min",
        mode=1,
        supervisor=operator.name,
        valid_until=now + timedelta(minutes=minutes),
        occurred_at=now,
    )
    with service.unit.audited(operator.name) as session:
        if batch_number is not None:
            row.batch_id = row_id(find_batch(session, batch_number))
        session.add(row)
    return row


def get_authorisation(service: NotebookService, row: int, *, reactor: str) -> ControlAction | None:
    """The supervisor's stored confirmation ``row`` of closed-loop control of ``reactor``, or
    None when there is no such confirmation (another kind, another reactor, no row)."""
    with service.unit.read() as session:
        action = session.get(ControlAction, row)
    if (
        action is None
        or action.kind != ControlActionKind.AUTHORISATION
        or action.reactor != reactor
        or action.supervisor is None
        or action.valid_until is None
    ):
        return None
    return action


def record_command(
    service: NotebookService,
    *,
    reactor: str,
    parameter: str,
    value: float,
    unit: str,
    rule: str,
    supervisor: str,
    authorised_until: float,
    seq: int,
    topic: str,
    timestamp: float | datetime | None = None,
    batch_number: int | None = None,
) -> ControlAction:
    """A verified setpoint the reactor obeyed (receiving side; refusals are counted, not rows).

    ``**command.audit_fields(topic)`` of ``bptwin.twin.setpoints.SetpointCommand`` fits.
    """
    row = ControlAction(
        kind=ControlActionKind.COMMAND,
        **_setpoint_columns(reactor, parameter, unit, value, rule),
        reason=_machine_text("reason", f"setpoint obeyed (seq {int(seq)})", MAX_REASON),
        mode=1,
        sent=True,
        topic=check.text("topic", topic, max_length=1024),
        supervisor=check.text("supervisor", supervisor, max_length=64) or None,
        valid_until=check.machine_time("authorised until", authorised_until, service.clock()),
        occurred_at=check.machine_time("time", timestamp, service.clock()),
    )
    return _write(service, row, batch_number)


def record_revocation(
    service: NotebookService, actor: str, *, reactor: str, reason: str = ""
) -> ControlAction:
    """Closed-loop control ended by hand (any active operator may stop it)."""
    reactor = check.identifier("reactor", reactor, required=True)
    row = ControlAction(
        kind=ControlActionKind.REVOCATION,
        reactor=reactor,
        rule="revoked",
        reason=check.text("reason", reason, max_length=MAX_REASON) or "closed-loop control ended",
        mode=0,
        occurred_at=service.clock(),
    )
    with service.unit.write(actor) as session:
        session.add(row)
    return row


def list_control_actions(
    service: NotebookService,
    *,
    reactor: str | None = None,
    kind: ControlActionKind | str | None = None,
    batch_number: int | None = None,
    limit: int = 200,
) -> list[ControlAction]:
    """Control records, newest first."""
    statement = select(ControlAction)
    with service.unit.read() as session:
        if reactor is not None:
            statement = where(statement, col(ControlAction.reactor) == reactor)
        if kind is not None:
            statement = where(
                statement, ControlAction.kind == check.choice("kind", kind, ControlActionKind)
            )
        if batch_number is not None:
            batch = find_batch(session, batch_number)
            statement = where(statement, col(ControlAction.batch_id) == batch.id)
        statement = statement.order_by(
            col(ControlAction.occurred_at).desc(), col(ControlAction.id).desc()
        ).limit(limit)
        return list(session.exec(statement))
