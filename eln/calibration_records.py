"""Calibration records: storing results, their history and which one is in force (no UI code).

The rules (limits, validity, what blocks a batch start) are eln.calibration's; this module
reads and writes the records they apply to.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.eln import form_rules as check
from bptwin.eln.calibration_validity import (
    CalibrationPolicy,
    ValidityPeriod,
    blocking_problem,
    period_at,
    validity_periods,
)
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import Batch, CalibrationRecord, SignatureMeaning
from bptwin.eln.operators import OperatorService
from bptwin.eln.signatures import authenticate_signer, sign_row
from bptwin.eln.unit_of_work import AggregateService, find_batch, row_id, where


def records_of(channel: str, batch_id: int | None) -> SelectOfScalar[CalibrationRecord]:
    """Records of ``channel``: bench ones plus, with a batch, that batch's own."""
    statement = where(select(CalibrationRecord), col(CalibrationRecord.channel) == channel)
    if batch_id is None:
        return statement
    return where(
        statement,
        (col(CalibrationRecord.batch_id) == batch_id) | col(CalibrationRecord.batch_id).is_(None),
    )


def _newest_first(
    statement: SelectOfScalar[CalibrationRecord],
) -> SelectOfScalar[CalibrationRecord]:
    return statement.order_by(
        col(CalibrationRecord.performed_at).desc(), col(CalibrationRecord.id).desc()
    )


def blockers_in(
    session: Session, batch: Batch, policy: CalibrationPolicy, now: datetime
) -> list[tuple[str, str]]:
    """(channel, why) for each mandatory calibration that blocks starting ``batch`` now."""
    blockers = []
    for channel in policy.mandatory_channels:
        latest = session.exec(_newest_first(records_of(channel, row_id(batch)))).first()
        problem = blocking_problem(latest, now, policy)
        if problem is not None:
            blockers.append((channel, problem))
    return blockers


class CalibrationService(AggregateService):
    """Calibration results per channel, bench or bound to a batch."""

    def record_calibration(
        self,
        actor: str,
        *,
        channel: str,
        kind: str,
        measured: Mapping[str, Any],
        results: Mapping[str, Any],
        passed: bool,
        batch_number: int | None = None,
        performed_at: datetime | None = None,
        valid_until: datetime | None = None,
        notes: str = "",
        override_reason: str | None = None,
        override_pin: str | None = None,
    ) -> CalibrationRecord:
        """A calibration result. A failed one can be accepted only by a supervisor's reason,
        signed (``actor`` with ``override_pin``, checked now; meaning "approved")."""
        if channel not in CHANNELS_BY_NAME:
            raise NotebookValidationError("channel", f"unknown channel {channel!r}")
        if not isinstance(measured, Mapping) or not isinstance(results, Mapping):
            raise NotebookValidationError(
                "results", "measured values and results must be name -> value tables"
            )
        reason = check.text("override reason", override_reason) or None
        if reason is not None and passed:
            raise NotebookValidationError(
                "override reason", "only a failed calibration can be overridden"
            )
        if valid_until is not None and (
            not isinstance(valid_until, datetime) or valid_until.tzinfo is None
        ):
            raise NotebookValidationError(
                "valid until", "valid-until must be a date and time in UTC"
            )
        record = CalibrationRecord(
            channel=channel,
            kind=check.identifier("kind", kind, required=True),
            measured=check.plain_values("measured values", measured),
            results=check.plain_values("results", results),
            passed=bool(passed),
            performed_at=check.moment("calibration time", performed_at, now=self.unit.now()),
            performed_by=actor,
            valid_until=valid_until,
            notes=check.text("notes", notes),
            override_reason=reason,
        )
        signer = None
        if reason is not None:
            signer = authenticate_signer(
                OperatorService(self.unit), actor, override_pin or "", supervisor=True
            )
        with self.unit.write(actor, supervisor=reason is not None) as session:
            if batch_number is not None:
                record.batch_id = row_id(find_batch(session, batch_number))
            session.add(record)
            if signer is not None:
                sign_row(
                    session,
                    record,
                    signer,
                    SignatureMeaning.APPROVED,
                    self.unit.now(),
                    batch_id=record.batch_id,
                )
        return record

    def list_calibrations(
        self, *, channel: str | None = None, batch_number: int | None = None, limit: int = 100
    ) -> list[CalibrationRecord]:
        """Calibrations, newest first; for a batch: its own and the unbound (bench) ones."""
        statement = select(CalibrationRecord)
        with self.unit.read() as session:
            if channel is not None:
                statement = where(statement, col(CalibrationRecord.channel) == channel)
            if batch_number is not None:
                batch_id = row_id(find_batch(session, batch_number))
                statement = where(
                    statement,
                    (col(CalibrationRecord.batch_id) == batch_id)
                    | col(CalibrationRecord.batch_id).is_(None),
                )
            return list(session.exec(_newest_first(statement).limit(limit)))

    def calibration_history(
        self, channel: str, *, batch_number: int | None = None, limit: int = 100
    ) -> list[ValidityPeriod[CalibrationRecord]]:
        """The channel's calibrations, newest first, each with the interval it was in force."""
        records = self.list_calibrations(channel=channel, batch_number=batch_number, limit=limit)
        return validity_periods(records, self.unit.calibration_policy, self.unit.now())[::-1]

    def calibration_in_force(
        self, channel: str, at: datetime, *, batch_number: int | None = None
    ) -> ValidityPeriod[CalibrationRecord] | None:
        """The calibration that ``channel``'s readings at ``at`` are traced to, with its validity
        interval; None when no accepted, unexpired calibration covered that moment."""
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise NotebookValidationError("time", "time must be a date and time in UTC")
        with self.unit.read() as session:
            batch_id = None if batch_number is None else row_id(find_batch(session, batch_number))
            base = records_of(channel, batch_id)
            latest = session.exec(
                _newest_first(where(base, col(CalibrationRecord.performed_at) <= at))
            ).first()
            following = session.exec(
                where(base, col(CalibrationRecord.performed_at) > at).order_by(
                    col(CalibrationRecord.performed_at), col(CalibrationRecord.id)
                )
            ).first()
        return period_at(latest, following, at, self.unit.calibration_policy)

    def calibration_blockers(self, number: int) -> list[tuple[str, str]]:
        """(channel, why) for each mandatory calibration that blocks starting this batch."""
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return blockers_in(session, batch, self.unit.calibration_policy, self.unit.now())

    def missing_calibrations(self, number: int) -> list[str]:
        """Mandatory channels without a current passing (or overridden) calibration."""
        return [channel for channel, _ in self.calibration_blockers(number)]
