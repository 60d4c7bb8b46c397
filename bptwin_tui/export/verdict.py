"""The acceptance checklist shown in the report: eln.acceptance's evaluation, plus the
supervisor's recorded decision when there is one. The rules live in eln.acceptance only."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bptwin.eln.acceptance import AcceptanceEvaluation
    from bptwin.eln.services import NotebookService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedDecision:
    """The decision in force: accept/reject, why, by whom, when, on which verdict."""

    decision: str
    reason: str
    decided_by: str
    decided_at: datetime
    verdict: str


@dataclass(frozen=True)
class AcceptanceView:
    """What the report's acceptance section shows (evaluation None: it could not be made)."""

    evaluation: AcceptanceEvaluation | None
    decision: RecordedDecision | None
    problem: str | None = None


def acceptance_view(
    notebook: NotebookService,
    batch_number: int,
    dropout_pct: Mapping[str, float] | None,
    depletion_time_h: float | None = None,
) -> AcceptanceView:
    """Evaluate the batch now and find the recorded decision; problems become plain text.

    ``depletion_time_h``: the depletion found in the batch's data (as `bptwin accept` uses
    it); None falls back to the closure record's time."""
    from bptwin.eln.acceptance_service import evaluate_acceptance

    evaluation = None
    problem = None
    try:
        evaluation = evaluate_acceptance(
            notebook,
            batch_number,
            sensor_dropout_pct=dropout_pct,
            depletion_time_h=depletion_time_h,
        )
    except Exception as exc:  # the report is still worth having without the checklist
        log.exception("acceptance evaluation of batch %s failed", batch_number)
        problem = f"acceptance could not be evaluated: {exc}"
    return AcceptanceView(evaluation, _decision(notebook, batch_number), problem)


def _decision(notebook: NotebookService, batch_number: int) -> RecordedDecision | None:
    try:
        from bptwin.eln.acceptance_service import latest_decision
    except ImportError:  # a notebook without the acceptance workflow
        return None
    row = latest_decision(notebook, batch_number)
    if row is None:
        return None
    return RecordedDecision(
        decision=str(getattr(row.decision, "value", row.decision)),
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        verdict=row.verdict,
    )
