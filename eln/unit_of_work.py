"""The notebook's unit of work: the relational store, clock and calibration rules that every
notebook service shares, and the transactions they run in.

A write is one audited transaction (eln.audit) by a registered, active operator (a few need a
supervisor); a read hands back detached rows, safe to use after it. An unreachable database
raises DatabaseUnavailableError in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol, TypeVar, cast

from sqlalchemy import ColumnElement, exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bptwin.database.relational import is_unavailable, session_scope, unavailable_error
from bptwin.eln import form_rules as check
from bptwin.eln.audit_seal import seal_for
from bptwin.eln.audit_verify import operator_trail_problem
from bptwin.eln.calibration_validity import CalibrationPolicy
from bptwin.eln.columns import utc_now
from bptwin.eln.errors import NotebookNotFoundError, NotebookPermissionError
from bptwin.eln.models import Batch, Operator, OperatorRole

# Written as the actor of records the software makes on its own (alarm engine transitions).
SYSTEM_ACTOR = "system"

RowT = TypeVar("RowT")


class BatchPart(Protocol):
    """A row that belongs to a batch (sample, note, deviation, inoculum, closure...)."""

    batch_id: int


PartT = TypeVar("PartT", bound=BatchPart)


class NotebookUnitOfWork:
    """One relational store (SQLite or Postgres, already migrated), the clock "now" comes from
    and the calibration rules; shared by the notebook services, so changing the clock or the
    engine here changes it for all of them."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        calibration_policy: CalibrationPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.calibration_policy = calibration_policy or CalibrationPolicy()

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def write(self, actor: str, *, supervisor: bool = False) -> Iterator[Session]:
        """One audited transaction by ``actor``, who must be an active operator."""
        with self.audited(actor) as session:
            require_operator(session, session.info["actor"], supervisor=supervisor)
            yield session

    @contextmanager
    def audited(self, actor: str) -> Iterator[Session]:
        """One audited transaction by ``actor`` without the operator check: the software's own
        records (``SYSTEM_ACTOR``) and registering the very first operator."""
        name = check.text("operator", actor, max_length=64, required=True)
        with session_scope(self.engine, name) as session:
            yield session

    def add_to_batch(self, actor: str, number: int, row: PartT) -> PartT:
        """Store ``row`` as a part of batch ``number``, written by ``actor`` (one transaction)."""
        with self.write(actor) as session:
            row.batch_id = row_id(find_batch(session, number))
            session.add(row)
        return row

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except exc.DBAPIError as error:
            if is_unavailable(error):
                raise unavailable_error(self.engine, error) from error
            raise


class AggregateService:
    """Base of the per-aggregate services (operators, batches, samples...): one unit of work."""

    def __init__(self, unit: NotebookUnitOfWork) -> None:
        self.unit = unit


def require_operator(session: Session, name: str, *, supervisor: bool = False) -> Operator:
    """The active operator ``name`` (a supervisor if asked), or NotebookPermissionError."""
    operator = session.exec(where(select(Operator), col(Operator.name) == name)).first()
    if operator is None:
        raise NotebookPermissionError(f"{name!r} is not a registered operator")
    require_audited(session, operator)
    if not operator.active:
        raise NotebookPermissionError(f"operator {name!r} is deactivated")
    if supervisor and operator.role != OperatorRole.SUPERVISOR:
        raise NotebookPermissionError(f"this needs a supervisor; {name!r} is an operator")
    return operator


def require_audited(session: Session, operator: Operator) -> None:
    """NotebookPermissionError unless ``operator``'s row is what the audit trail last recorded:
    roles, PINs and lockouts are read only from audited state."""
    problem = operator_trail_problem(session, operator, seal_for(session.get_bind()))
    if problem is not None:
        raise NotebookPermissionError(problem)


def find_batch(session: Session, number: object) -> Batch:
    """Batch ``number`` (checked as a batch number), or NotebookNotFoundError."""
    checked = check.batch_number(number)
    batch = session.exec(where(select(Batch), col(Batch.number) == checked)).first()
    if batch is None:
        raise NotebookNotFoundError("batch", f"there is no batch {checked}")
    return batch


def row_id(row: Batch | Operator) -> int:
    """The id of a stored row (the database gave it one on insert)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} is not stored yet")
    return row.id


def where(
    statement: SelectOfScalar[RowT], *conditions: ColumnElement[bool]
) -> SelectOfScalar[RowT]:
    """``statement.where(*conditions)`` keeping its row type for the type checker (sqlmodel
    types ``where`` as returning ``Self`` through a variadic generic base, which mypy reads as
    Any)."""
    return cast("SelectOfScalar[RowT]", statement.where(*conditions))


def of_batch(table: type[PartT], batch: Batch) -> SelectOfScalar[PartT]:
    """The rows of ``table`` that belong to ``batch``."""
    return where(select(table), col(table.batch_id) == row_id(batch))
