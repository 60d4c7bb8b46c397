"""A batch's life: created in setup, started (inoculated), ended or aborted, its closure
recorded by an operator and signed off by a supervisor (an electronic signature, eln.signatures).

No UI code here. What a batch start needs (calibrations, inoculum) is checked in the start's own
transaction; a supervisor may override a block with a reason, kept as a note.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import exc, func
from sqlmodel import Session, col, select

from bptwin.eln import form_rules as check
from bptwin.eln.calibration_records import blockers_in
from bptwin.eln.closure_entry import CLOSURE_FIELDS, ClosureEntry
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import (
    Batch,
    BatchClosure,
    BatchStatus,
    CampaignPhase,
    Inoculum,
    Note,
    Operator,
    Sample,
    Signature,
    SignatureMeaning,
)
from bptwin.eln.operators import OperatorService
from bptwin.eln.sample_math import OD600_MAX
from bptwin.eln.schedule import SOP_TIMEPOINTS_H
from bptwin.eln.signatures import allow_resigning, authenticate_signer, sign_row
from bptwin.eln.unit_of_work import (
    AggregateService,
    find_batch,
    of_batch,
    require_operator,
    row_id,
    where,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

SOP_SAMPLE_COUNT = len(SOP_TIMEPOINTS_H) + 1  # plus the depletion sample
DCW_MAX = 300.0  # g/L: far above any Pichia batch, catches a value typed in mg/L
HARVEST_VOLUME_MAX_ML = 100_000.0


class BatchService(AggregateService):
    """Batches and their closure records."""

    def create_batch(
        self,
        actor: str,
        number: check.WholeNumberInput,
        phase: CampaignPhase | str,
        *,
        strain: str = "",
        medium_lot: str = "",
        vessel: str = "",
        reactor_id: str = "",
        operator: str | None = None,
        notes: str = "",
    ) -> Batch:
        """A new batch in status setup; ``operator`` (the responsible person) defaults to actor."""
        checked = check.batch_number(number)
        batch = Batch(
            number=checked,
            phase=check.choice("campaign phase", phase, CampaignPhase),
            strain=check.text("strain", strain, max_length=128),
            medium_lot=check.identifier("medium lot", medium_lot),
            vessel=check.identifier("vessel", vessel),
            reactor_id=check.identifier("reactor id", reactor_id),
            notes=check.text("notes", notes),
            operator=operator or actor,
            created_at=self.unit.now(),
        )
        try:
            with self.unit.write(actor) as session:
                if batch.operator != actor:
                    require_operator(session, batch.operator)
                if session.exec(where(select(Batch), col(Batch.number) == checked)).first():
                    raise NotebookValidationError("batch number", f"batch {checked} already exists")
                session.add(batch)
        except exc.IntegrityError:
            # Another terminal created the same number between our check and our insert.
            raise NotebookValidationError(
                "batch number", f"batch {checked} already exists"
            ) from None
        return batch

    def get_batch(self, number: int) -> Batch:
        with self.unit.read() as session:
            return find_batch(session, number)

    def list_batches(self, status: BatchStatus | str | None = None) -> list[Batch]:
        """Batches, newest number first, optionally only those in one status."""
        statement = select(Batch).order_by(col(Batch.number).desc())
        if status is not None:
            wanted = check.choice("status", status, BatchStatus)
            statement = where(statement, col(Batch.status) == wanted)
        with self.unit.read() as session:
            return list(session.exec(statement))

    def start_batch(
        self,
        actor: str,
        number: int,
        *,
        inoculated_at: datetime | None = None,
        override_reason: str | None = None,
    ) -> Batch:
        """Inoculate: the batch goes from setup to running.

        Refused while a mandatory calibration has not passed or the inoculum is missing or
        out of spec, unless a supervisor gives ``override_reason`` (kept as a note).
        """
        at = check.moment("inoculation time", inoculated_at, now=self.unit.now())
        reason = check.text("override reason", override_reason) or None
        with self.unit.write(actor) as session:
            batch = find_batch(session, number)
            if batch.status != BatchStatus.SETUP:
                raise NotebookValidationError(
                    "status", f"batch {batch.number} is {batch.status.value}, not in setup"
                )
            blockers = blockers_in(session, batch, self.unit.calibration_policy, self.unit.now())
            problems = [f"no passing calibration for {name} ({why})" for name, why in blockers]
            inoculum = session.exec(of_batch(Inoculum, batch)).first()
            if inoculum is None:
                problems.append("no inoculum recorded")
            elif not inoculum.go:
                problems.append(f"inoculum OD600 {inoculum.od600:g} is out of spec")
            if problems and reason is None:
                raise NotebookValidationError(
                    "inoculation", f"batch {batch.number} cannot start: " + "; ".join(problems)
                )
            if problems:
                require_operator(session, actor, supervisor=True)
                session.add(
                    Note(
                        batch_id=row_id(batch),
                        author=actor,
                        text=f"Started despite: {'; '.join(problems)}. Reason: {reason}",
                        created_at=self.unit.now(),
                    )
                )
            batch.status = BatchStatus.RUNNING
            batch.inoculated_at = at
        return batch

    def end_batch(
        self,
        actor: str,
        number: int,
        *,
        aborted: bool = False,
        ended_at: datetime | None = None,
        reason: str | None = None,
    ) -> Batch:
        """End a running batch (complete), or abort it (running or still in setup) giving the
        reason, at ``ended_at`` (default now)."""
        at = check.moment("end time", ended_at, now=self.unit.now())
        assert at is not None  # None means now
        why = check.text("reason", reason) or None
        if aborted and why is None:
            raise NotebookValidationError("reason", "say why the batch is aborted")
        with self.unit.write(actor) as session:
            batch = find_batch(session, number)
            if batch.status != BatchStatus.RUNNING and not (
                aborted and batch.status == BatchStatus.SETUP
            ):
                raise NotebookValidationError(
                    "status", f"batch {batch.number} is {batch.status.value}, not running"
                )
            if batch.inoculated_at is not None and at < batch.inoculated_at:
                raise NotebookValidationError("end time", "the end is before the inoculation")
            batch.status = BatchStatus.ABORTED if aborted else BatchStatus.COMPLETE
            batch.ended_at = at
            batch.ended_by = actor
            batch.end_reason = why
        return batch

    def close_batch(self, actor: str, number: int, **entry: Unpack[ClosureEntry]) -> BatchClosure:
        """The closure record of an ended batch; without the 8 SOP samples a reason is needed.
        A supervisor then closes it by signing (sign_off_batch)."""
        closure = BatchClosure(closed_at=self.unit.now(), recorded_by=actor)
        _fill_closure(closure, entry)
        with self.unit.write(actor) as session:
            batch = find_batch(session, number)
            if batch.status not in (BatchStatus.COMPLETE, BatchStatus.ABORTED):
                raise NotebookValidationError("status", f"batch {batch.number} has not ended yet")
            if session.exec(of_batch(BatchClosure, batch)).first():
                raise NotebookValidationError("closure", f"batch {batch.number} is already closed")
            _check_sample_count(session, batch, closure)
            closure.batch_id = row_id(batch)
            session.add(closure)
        return closure

    def sign_off_batch(self, actor: str, number: int, *, pin: str) -> BatchClosure:
        """A supervisor closes the batch: signs its closure record (name and PIN checked now,
        meaning "closed"); the record cannot change afterwards without a new signature."""
        signer = authenticate_signer(OperatorService(self.unit), actor, pin, supervisor=True)
        with self.unit.write(signer.name, supervisor=True) as session:
            batch = find_batch(session, number)
            closure = _recorded_closure(session, batch)
            if closure.signed_off_by is not None:
                raise NotebookValidationError(
                    "closure",
                    f"batch {batch.number} is already closed by {closure.signed_off_by}; "
                    "a change needs a new signature (amend the closure)",
                )
            self._sign_closure(session, batch, closure, signer)
        return closure

    def amend_closure(
        self, actor: str, number: int, *, pin: str, reason: str, **changes: object
    ) -> BatchClosure:
        """Change a signed closure record under a new supervisor's signature (name, PIN and the
        reason checked now); the old signature is kept, marked superseded."""
        why = check.text("correction reason", reason, required=True)
        unknown = sorted(set(changes) - set(CLOSURE_FIELDS))
        if unknown:
            raise NotebookValidationError(
                "closure", f"{', '.join(unknown)} cannot be changed in a closure record"
            )
        signer = authenticate_signer(OperatorService(self.unit), actor, pin, supervisor=True)
        with self.unit.write(signer.name, supervisor=True) as session:
            batch = find_batch(session, number)
            closure = _recorded_closure(session, batch)
            values: dict[str, object] = {
                name: getattr(closure, name) for name in CLOSURE_FIELDS
            } | changes
            staged = BatchClosure()
            _fill_closure(staged, values)  # type: ignore[arg-type]
            _check_sample_count(session, batch, staged)
            signed = session.exec(
                where(
                    select(Signature),
                    col(Signature.table_name) == "batch_closure",
                    col(Signature.record_id) == closure.id,
                )
            ).first()
            allow_resigning(session, closure)
            for name in CLOSURE_FIELDS:
                setattr(closure, name, getattr(staged, name))
            self._sign_closure(
                session, batch, closure, signer, reason=why, supersede=signed is not None
            )
        return closure

    def _sign_closure(
        self,
        session: Session,
        batch: Batch,
        closure: BatchClosure,
        signer: Operator,
        *,
        reason: str = "",
        supersede: bool = False,
    ) -> None:
        """The supervisor's signature "closed" on ``closure``, and its sign-off fields."""
        closure.signed_off_by = signer.name
        closure.signed_off_at = self.unit.now()
        sign_row(
            session,
            closure,
            signer,
            SignatureMeaning.CLOSED,
            self.unit.now(),
            batch_id=row_id(batch),
            reason=reason,
            supersede=supersede,
        )

    def get_closure(self, number: int) -> BatchClosure | None:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return session.exec(of_batch(BatchClosure, batch)).first()


def _recorded_closure(session: Session, batch: Batch) -> BatchClosure:
    """The closure record of ``batch``; NotebookValidationError when there is none yet."""
    closure = session.exec(of_batch(BatchClosure, batch)).first()
    if closure is None:
        raise NotebookValidationError("closure", f"batch {batch.number} has no closure record yet")
    return closure


def _fill_closure(closure: BatchClosure, entry: ClosureEntry) -> None:
    """Check the closure's values and set them on ``closure`` (the first refusal is raised)."""

    def hours(field: str, value: check.NumberInput | None) -> float | None:
        return check.number(field, value, minimum=0.0, maximum=1000.0, unit="h", required=False)

    if "outcome" not in entry or not set(entry) <= set(CLOSURE_FIELDS):
        # What a keyword signature would refuse: a caller's mistake, not an operator's.
        raise TypeError(f"a closure takes 'outcome' and {CLOSURE_FIELDS[1:]}, not {sorted(entry)}")
    closure.outcome = check.identifier("outcome", entry["outcome"], required=True)
    closure.final_od600 = check.number(
        "final OD600", entry.get("final_od600"), minimum=0.0, maximum=OD600_MAX, required=False
    )
    closure.final_dcw_g_per_l = check.number(
        "final DCW",
        entry.get("final_dcw_g_per_l"),
        minimum=0.0,
        maximum=DCW_MAX,
        unit="g/L",
        required=False,
    )
    closure.harvest_volume_ml = check.number(
        "harvest volume",
        entry.get("harvest_volume_ml"),
        minimum=0.0,
        maximum=HARVEST_VOLUME_MAX_ML,
        unit="mL",
        required=False,
    )
    closure.runtime_h = hours("runtime", entry.get("runtime_h"))
    closure.depletion_time_h = hours("depletion time", entry.get("depletion_time_h"))
    closure.do_spike_time_h = hours("DO spike time", entry.get("do_spike_time_h"))
    closure.base_used_ml = check.number(
        "base used",
        entry.get("base_used_ml"),
        minimum=0.0,
        maximum=10_000.0,
        unit="mL",
        required=False,
    )
    closure.harvest = check.text("harvest", entry.get("harvest", ""))
    closure.missing_samples_reason = (
        check.text("missing-samples reason", entry.get("missing_samples_reason")) or None
    )


def _check_sample_count(session: Session, batch: Batch, closure: BatchClosure) -> None:
    """The SOP's sample rule: fewer than the SOP's samples only with the reason given."""
    count = session.exec(
        select(func.count()).select_from(Sample).where(col(Sample.batch_id) == batch.id)
    ).one()
    if count < SOP_SAMPLE_COUNT and closure.missing_samples_reason is None:
        raise NotebookValidationError(
            "missing-samples reason",
            f"batch {batch.number} has {count} of the {SOP_SAMPLE_COUNT} SOP samples; "
            "give the reason for the missing ones",
        )
