"""The acceptance workflow over both stores, for the CLI and the app (run it off the UI thread).

``eln`` cannot read the time-series store and ``twin`` cannot read the notebook; this module
joins them: the dropout for the criteria comes from the store, the decision goes to the
notebook, and an accepted batch goes into the training-set folder (acceptance_registry).

    evaluation = evaluate_batch(notebook, store, 7, reactor="R1")
    outcome = decide_batch(notebook, store, 7, supervisor="sam", pin=pin, decision="accept",
                           reason="all criteria met", reactor="R1", training_set=folder)

Both read up to a day of series (about 2 s for 19 channels on the embedded store; exporting
an accepted batch takes longer): call them from a worker thread, never on the UI thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.tui.export.acceptance_registry import (
    Progress,
    TrainingSetError,
    add_batch,
    batch_dataset_record,
    remove_batch,
)

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.acceptance import AcceptanceEvaluation
    from bptwin.eln.models import AcceptanceDecision, BatchAcceptance
    from bptwin.eln.services import NotebookService

log = logging.getLogger(__name__)

# What happened to the training-set folder after a decision.
TRAINING_SET_ADDED = "added"
TRAINING_SET_REMOVED = "removed"
TRAINING_SET_UNCHANGED = "unchanged"
TRAINING_SET_FAILED = "failed"


@dataclass(frozen=True)
class DecisionOutcome:
    """A recorded decision, the evaluation it was made on, and the training set's update."""

    decision: BatchAcceptance
    evaluation: AcceptanceEvaluation
    training_set: str  # added | removed | unchanged | failed
    problem: str | None = None  # why the training set could not be updated ("failed")
    rows: int = 0  # 1 Hz rows exported (added)


def _run_span(
    notebook: NotebookService, number: int, reactor: str
) -> tuple[str, float, float] | None:
    """(reactor, inoculation, end) of a batch that ran to its end, else None."""
    batch = notebook.batches.get_batch(number)
    if batch.inoculated_at is None or batch.ended_at is None:
        return None
    return batch.reactor_id or reactor, batch.inoculated_at.timestamp(), batch.ended_at.timestamp()


def batch_dropout(
    notebook: NotebookService, store: TimeSeriesStore | None, number: int, reactor: str
) -> dict[str, float] | None:
    """Dropout % per channel over the batch's run; None when it cannot be computed (no store,
    the batch has not run to its end, or the store did not answer)."""
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.twin.dropout import sensor_dropout_pct

    span = _run_span(notebook, number, reactor)
    if store is None or span is None:
        return None
    try:
        return sensor_dropout_pct(store, *span)
    except TimeSeriesError as exc:
        log.warning("dropout of batch %s not computed: %s", number, exc)
        return None


def batch_depletion_h(
    notebook: NotebookService, store: TimeSeriesStore | None, number: int, reactor: str
) -> float | None:
    """Hours after inoculation of the DO spike found in the stored series, or None (not found,
    no store, or the store did not answer: the closure record's time is used then)."""
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.twin.stored_depletion import detect_depletion

    span = _run_span(notebook, number, reactor)
    if store is None or span is None:
        return None
    try:
        seconds = detect_depletion(store, *span)
    except TimeSeriesError as exc:
        log.warning("depletion of batch %s not looked for: %s", number, exc)
        return None
    return None if seconds is None else seconds / 3600.0


def evaluate_batch(
    notebook: NotebookService, store: TimeSeriesStore | None, number: int, *, reactor: str
) -> AcceptanceEvaluation:
    """The five criteria of batch ``number``; dropout and depletion read from ``store``
    (None: the dropout stays undecided and the closure record's depletion time is used)."""
    from bptwin.eln.acceptance_service import evaluate_acceptance

    return evaluate_acceptance(
        notebook,
        number,
        sensor_dropout_pct=batch_dropout(notebook, store, number, reactor),
        depletion_time_h=batch_depletion_h(notebook, store, number, reactor),
    )


def decide_batch(
    notebook: NotebookService,
    store: TimeSeriesStore | None,
    number: int,
    *,
    supervisor: str,
    pin: str,
    decision: AcceptanceDecision | str,
    reason: str,
    reactor: str,
    training_set: Path | None,
    accept_incomplete: bool = False,
    progress: Progress | None = None,
) -> DecisionOutcome:
    """Record the supervisor's decision (audited), then update the training set.

    ``training_set`` None leaves the folder alone. The decision stands even when the folder
    cannot be updated (``training_set="failed"``, ``problem`` says why; ``bptwin accept
    --sync`` repairs it later). Raises NotebookPermissionError / NotebookValidationError
    when the decision is refused (nothing is written then).
    """
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.eln.acceptance_service import record_acceptance_decision
    from bptwin.eln.models import AcceptanceDecision
    from bptwin.tui.export.collect import ExportError

    row, evaluation = record_acceptance_decision(
        notebook,
        supervisor,
        pin,
        number,
        decision=decision,
        reason=reason,
        sensor_dropout_pct=batch_dropout(notebook, store, number, reactor),
        depletion_time_h=batch_depletion_h(notebook, store, number, reactor),
        accept_incomplete=accept_incomplete,
    )
    if training_set is None:
        return DecisionOutcome(row, evaluation, TRAINING_SET_UNCHANGED)
    try:
        if row.decision == AcceptanceDecision.REJECT:
            removed = remove_batch(training_set, number)
            state = TRAINING_SET_REMOVED if removed else TRAINING_SET_UNCHANGED
            return DecisionOutcome(row, evaluation, state)
        if store is None:
            return DecisionOutcome(
                row, evaluation, TRAINING_SET_FAILED, "the time-series store is not available"
            )
        batch = notebook.batches.get_batch(number)
        record = batch_dataset_record(
            notebook, store, number, reactor=batch.reactor_id or reactor, progress=progress
        )
        add_batch(training_set, record, row)
    except (TrainingSetError, ExportError, TimeSeriesError, OSError) as exc:
        log.warning("training set not updated for batch %s: %s", number, exc)
        return DecisionOutcome(row, evaluation, TRAINING_SET_FAILED, str(exc))
    return DecisionOutcome(row, evaluation, TRAINING_SET_ADDED, rows=record.rows)
