"""The supervisor's acceptance decision on a batch, recorded and audited (see eln.acceptance).

A decision is a ``BatchAcceptance`` row written in one audited transaction, after the
supervisor's name and PIN were checked: accept or reject, a reason, the automatic verdict and
the five criteria with their evidence as the supervisor saw them. Decisions are never edited;
a later decision on the same batch supersedes the earlier one (the newest row is in force).

Rules: only an ended batch (complete or aborted) is decided. A batch that fails a criterion
cannot be accepted (a level-3 deviation, for one, excludes it from training). A batch with
undecided criteria (e.g. the time-series store was not reachable for the dropout check) is
accepted only with ``accept_incomplete=True``, the reason saying what was checked by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import Session, col, select

from bptwin.eln import form_rules as check
from bptwin.eln.acceptance import (
    DEFAULT_LIMITS,
    VERDICT_FAIL,
    VERDICT_INCOMPLETE,
    AcceptanceEvaluation,
    AcceptanceLimits,
    BatchRecords,
    evaluate_records,
)
from bptwin.eln.errors import NotebookPermissionError, NotebookValidationError
from bptwin.eln.models import (
    AcceptanceDecision,
    Batch,
    BatchAcceptance,
    BatchClosure,
    BatchStatus,
    Deviation,
    Inoculum,
    OperatorRole,
    Sample,
    SignatureMeaning,
)
from bptwin.eln.records import (
    BatchView,
    ClosureView,
    DeviationView,
    InoculumView,
    SampleView,
    view_of,
)
from bptwin.eln.services import NotebookService
from bptwin.eln.signatures import sign_row
from bptwin.eln.unit_of_work import find_batch, of_batch, row_id, where

MAX_REASON = 2000


def load_batch_records(session: Session, batch: Batch) -> BatchRecords:
    """Frozen copies of the rows of ``batch`` the criteria need, read in the caller's session."""
    samples = session.exec(of_batch(Sample, batch).order_by(col(Sample.taken_at))).all()
    deviations = session.exec(of_batch(Deviation, batch).order_by(col(Deviation.id))).all()
    closure = session.exec(of_batch(BatchClosure, batch)).first()
    inoculum = session.exec(of_batch(Inoculum, batch)).first()
    return BatchRecords(
        view_of(BatchView, batch),
        tuple(view_of(SampleView, sample) for sample in samples),
        tuple(view_of(DeviationView, deviation) for deviation in deviations),
        None if closure is None else view_of(ClosureView, closure),
        None if inoculum is None else view_of(InoculumView, inoculum),
    )


def evaluate_acceptance(
    notebook: NotebookService,
    batch_number: int,
    *,
    sensor_dropout_pct: Mapping[str, float] | None = None,
    depletion_time_h: float | None = None,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
) -> AcceptanceEvaluation:
    """Evaluate batch ``batch_number`` from the notebook (the rules are eln.acceptance's).

    ``sensor_dropout_pct``: channel -> % of expected readings missing over the batch (from
    ``bptwin.twin.dropout.sensor_dropout_pct``); None leaves that part undecided.
    ``depletion_time_h``: depletion detected in the data, hours after inoculation; None uses
    the closure record's. Raises NotebookNotFoundError for an unknown batch.
    """
    with notebook.unit.read() as session:
        records = load_batch_records(session, find_batch(session, batch_number))
    return evaluate_records(
        records,
        sensor_dropout_pct=sensor_dropout_pct,
        depletion_time_h=depletion_time_h,
        limits=limits,
        now=notebook.clock(),
    )


def _criteria_list(evaluation: AcceptanceEvaluation, failed: bool) -> str:
    chosen = evaluation.failed() if failed else evaluation.undecided()
    return ", ".join(f"{result.number} ({result.name})" for result in chosen)


def record_acceptance_decision(
    notebook: NotebookService,
    supervisor: str,
    pin: str,
    batch_number: int,
    *,
    decision: AcceptanceDecision | str,
    reason: str,
    sensor_dropout_pct: Mapping[str, float] | None = None,
    depletion_time_h: float | None = None,
    accept_incomplete: bool = False,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
) -> tuple[BatchAcceptance, AcceptanceEvaluation]:
    """Check the supervisor, re-evaluate the batch and store the decision; audited.

    The evaluation is made inside the writing transaction, so the stored criteria are those
    of the records as they are when the decision is taken. Returns the row and the evaluation.
    Raises NotebookPermissionError (wrong name/PIN, not a supervisor) or
    NotebookValidationError (unknown or running batch, no reason, accepting a failing batch).
    """
    choice = check.choice("decision", decision, AcceptanceDecision)
    why = check.text("reason", reason, max_length=MAX_REASON, required=True)
    operator = notebook.operators.authenticate(supervisor, pin)  # one message for every failure
    if operator.role != OperatorRole.SUPERVISOR:
        raise NotebookPermissionError(
            f"accepting or rejecting a batch needs a supervisor; {operator.name!r} is an operator"
        )
    with notebook.unit.write(operator.name, supervisor=True) as session:
        batch = find_batch(session, batch_number)
        if batch.status not in (BatchStatus.COMPLETE, BatchStatus.ABORTED):
            raise NotebookValidationError(
                "status",
                f"batch {batch.number} is {batch.status.value}: decide on it once it has ended",
            )
        evaluation = evaluate_records(
            load_batch_records(session, batch),
            sensor_dropout_pct=sensor_dropout_pct,
            depletion_time_h=depletion_time_h,
            limits=limits,
            now=notebook.clock(),
        )
        if choice == AcceptanceDecision.ACCEPT and evaluation.verdict == VERDICT_FAIL:
            raise NotebookValidationError(
                "decision",
                f"batch {batch.number} fails criteria {_criteria_list(evaluation, True)}: it "
                "cannot be accepted for training (reject it, giving the reason)",
            )
        if (
            choice == AcceptanceDecision.ACCEPT
            and evaluation.verdict == VERDICT_INCOMPLETE
            and not accept_incomplete
        ):
            raise NotebookValidationError(
                "decision",
                f"batch {batch.number}: criteria {_criteria_list(evaluation, False)} are not "
                "decided yet; settle them first, or accept the incomplete evaluation "
                "explicitly with a reason saying what was checked by hand",
            )
        row = BatchAcceptance(
            batch_id=row_id(batch),
            decision=choice,
            reason=why,
            verdict=evaluation.verdict,
            evaluation=evaluation.to_dict(),
            decided_by=operator.name,
            decided_at=notebook.clock(),
        )
        session.add(row)
        sign_row(
            session,
            row,
            operator,
            SignatureMeaning.ACCEPTED
            if choice == AcceptanceDecision.ACCEPT
            else SignatureMeaning.REJECTED,
            notebook.clock(),
            batch_id=row.batch_id,
        )
    return row, evaluation


def list_decisions(
    notebook: NotebookService, batch_number: int | None = None
) -> list[BatchAcceptance]:
    """Acceptance decisions, newest first, of one batch or of all."""
    statement = select(BatchAcceptance)
    with notebook.unit.read() as session:
        if batch_number is not None:
            batch = find_batch(session, batch_number)
            statement = where(statement, col(BatchAcceptance.batch_id) == batch.id)
        return list(session.exec(statement.order_by(col(BatchAcceptance.id).desc())))


def latest_decision(notebook: NotebookService, batch_number: int) -> BatchAcceptance | None:
    """The decision in force for a batch (its newest), or None when it was never decided."""
    decisions = list_decisions(notebook, batch_number)
    return decisions[0] if decisions else None


def decisions_in_force(notebook: NotebookService) -> dict[int, BatchAcceptance]:
    """Batch number -> the newest decision, for every decided batch."""
    with notebook.unit.read() as session:
        rows = session.exec(
            select(Batch.number, BatchAcceptance)
            .join(Batch, col(Batch.id) == col(BatchAcceptance.batch_id))
            .order_by(col(BatchAcceptance.id))
        ).all()
    newest: dict[int, BatchAcceptance] = {}
    for number, row in rows:
        newest[int(number)] = row  # ascending ids: the last one seen is the newest
    return newest


def accepted_batch_numbers(notebook: NotebookService) -> list[int]:
    """Batches whose decision in force is accept: the training-set registry's contents."""
    return sorted(
        number
        for number, row in decisions_in_force(notebook).items()
        if row.decision == AcceptanceDecision.ACCEPT
    )
