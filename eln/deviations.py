"""Deviations of a batch: logged at levels 1 (minor) to 3 (critical), then reviewed and closed
(levels 2 and 3 by a supervisor). No UI code here; the SOP's guidance is eln.deviation_guide's."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col

from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookNotFoundError, NotebookValidationError
from bptwin.eln.models import Deviation, DeviationStatus, SignatureMeaning
from bptwin.eln.operators import OperatorService
from bptwin.eln.signatures import allow_resigning, authenticate_signer, sign_row
from bptwin.eln.unit_of_work import (
    AggregateService,
    find_batch,
    of_batch,
    require_operator,
)


class DeviationService(AggregateService):
    """Deviations: logged open, reviewed, closed."""

    def log_deviation(
        self,
        actor: str,
        number: int,
        *,
        level: check.WholeNumberInput,
        category: str,
        title: str,
        description: str = "",
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        impact: str = "",
        root_cause: str = "",
        corrective_action: str = "",
    ) -> Deviation:
        """A deviation, level 1 (minor), 2 (major) or 3 (critical); it starts open."""
        now = self.unit.now()
        start = check.moment("start", started_at, now=now)
        end = check.moment("end", ended_at, default_now=False, now=now)
        if start is not None and end is not None and end < start:
            raise NotebookValidationError("end", "the deviation ends before it starts")
        deviation = Deviation(
            level=check.whole_number("level", level, minimum=1, maximum=3),
            category=check.identifier("category", category, required=True),
            title=check.text("title", title, max_length=256, required=True),
            description=check.text("description", description),
            started_at=start,
            ended_at=end,
            impact=check.text("impact", impact),
            root_cause=check.text("root cause", root_cause),
            corrective_action=check.text("corrective action", corrective_action),
            reported_by=actor,
        )
        return self.unit.add_to_batch(actor, number, deviation)

    def review_deviation(
        self,
        actor: str,
        deviation_id: int,
        *,
        root_cause: str | None = None,
        corrective_action: str | None = None,
        impact: str | None = None,
        close: bool = False,
        pin: str,
    ) -> Deviation:
        """Review (and optionally close) a deviation, signed by the reviewer (name and PIN
        checked now, meaning "reviewed" or "closed"); level 2 and 3 need a supervisor. Closing
        a reviewed deviation signs it anew: the review's signature is kept, superseded."""
        signer = authenticate_signer(OperatorService(self.unit), actor, pin, supervisor=False)
        actor = signer.name
        with self.unit.write(actor) as session:
            deviation = session.get(Deviation, deviation_id)
            if deviation is None:
                raise NotebookNotFoundError("deviation", f"there is no deviation {deviation_id}")
            if deviation.status == DeviationStatus.CLOSED:
                raise NotebookValidationError(
                    "status", f"deviation {deviation_id} is already closed"
                )
            if deviation.level >= 2:
                require_operator(session, actor, supervisor=True)
            resigning = deviation.status == DeviationStatus.REVIEWED
            if resigning:
                allow_resigning(session, deviation)
            if root_cause is not None:
                deviation.root_cause = check.text("root cause", root_cause)
            if corrective_action is not None:
                deviation.corrective_action = check.text("corrective action", corrective_action)
            if impact is not None:
                deviation.impact = check.text("impact", impact)
            deviation.status = DeviationStatus.CLOSED if close else DeviationStatus.REVIEWED
            deviation.reviewed_by = actor
            deviation.reviewed_at = self.unit.now()
            sign_row(
                session,
                deviation,
                signer,
                SignatureMeaning.CLOSED if close else SignatureMeaning.REVIEWED,
                self.unit.now(),
                batch_id=deviation.batch_id,
                reason=("closed after review" if close else "reviewed again") if resigning else "",
                supersede=resigning,
            )
        return deviation

    def list_deviations(self, number: int) -> list[Deviation]:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return list(session.exec(of_batch(Deviation, batch).order_by(col(Deviation.id))))
