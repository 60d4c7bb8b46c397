"""Planned changes of a process parameter during a batch, approved by a supervisor's electronic
signature (eln.signatures; no UI)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col

from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookNotFoundError, NotebookValidationError
from bptwin.eln.models import ProcessChange, SignatureMeaning
from bptwin.eln.operators import OperatorService
from bptwin.eln.signatures import authenticate_signer, sign_row
from bptwin.eln.unit_of_work import AggregateService, find_batch, of_batch


class ProcessChangeService(AggregateService):
    """Process changes: planned by an operator, approved by a supervisor."""

    def plan_process_change(
        self,
        actor: str,
        number: int,
        *,
        parameter: str,
        old_value: str,
        new_value: str,
        planned_at: datetime,
        reason: str = "",
    ) -> ProcessChange:
        """A planned parameter change; it needs a supervisor's approval (approve_process_change)."""
        if not isinstance(planned_at, datetime) or planned_at.tzinfo is None:
            raise NotebookValidationError(
                "planned time", "planned time must be a date and time in UTC"
            )
        change = ProcessChange(
            parameter=check.identifier("parameter", parameter, required=True),
            old_value=check.text("old value", old_value, max_length=64),
            new_value=check.text("new value", new_value, max_length=64, required=True),
            planned_at=planned_at,
            reason=check.text("reason", reason),
            requested_by=actor,
        )
        return self.unit.add_to_batch(actor, number, change)

    def approve_process_change(self, actor: str, change_id: int, *, pin: str) -> ProcessChange:
        """A supervisor approves a planned change by signing it (name and PIN checked now,
        meaning "approved"); the approved change cannot be altered afterwards."""
        signer = authenticate_signer(OperatorService(self.unit), actor, pin, supervisor=True)
        with self.unit.write(signer.name, supervisor=True) as session:
            change = session.get(ProcessChange, change_id)
            if change is None:
                raise NotebookNotFoundError(
                    "process change", f"there is no process change {change_id}"
                )
            if change.approved_by is not None:
                raise NotebookValidationError(
                    "process change",
                    f"process change {change_id} is already approved by {change.approved_by}",
                )
            change.approved_by = signer.name
            change.approved_at = self.unit.now()
            sign_row(
                session,
                change,
                signer,
                SignatureMeaning.APPROVED,
                self.unit.now(),
                batch_id=change.batch_id,
            )
        return change

    def list_process_changes(self, number: int) -> list[ProcessChange]:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return list(
                session.exec(of_batch(ProcessChange, batch).order_by(col(ProcessChange.planned_at)))
            )
