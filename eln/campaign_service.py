"""Campaign figures read from the notebook and the time-series store (the CLI's
``bptwin campaign`` and the campaign screen both call :func:`load_campaign_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from bptwin.database.timeseries.base import TimeSeriesError
from bptwin.eln.acceptance_service import decisions_in_force
from bptwin.eln.campaign_figures import (
    UPTIME_SLOT_S,
    CampaignFigures,
    Uptime,
    WindowCounts,
    batch_uptime,
    summarise_campaign,
)
from bptwin.eln.records import BatchView, view_of
from bptwin.eln.services import NotebookService


def load_campaign_figures(
    notebook: NotebookService,
    store: WindowCounts | None,
    *,
    default_reactor: str = "R1",
    phases: Sequence[str] = (),
    slot_s: float = UPTIME_SLOT_S,
) -> CampaignFigures:
    """Acceptance rate and uptime per phase (only ``phases`` if given) with their batches.

    ``store`` None leaves uptime out (said in ``problems``); a store that fails on one batch
    leaves that batch's uptime out and says which and why.
    """
    now = notebook.unit.now()
    batches = [
        view_of(BatchView, batch)
        for batch in notebook.batches.list_batches()
        if not phases or str(getattr(batch.phase, "value", batch.phase)) in phases
    ]
    decisions = {
        number: row.decision.value
        for number, row in decisions_in_force(notebook).items()
        if any(batch.number == number for batch in batches)
    }
    uptimes: dict[int, Uptime] = {}
    problems: list[str] = []
    if store is None:
        problems.append("uptime not computed: the time-series store is not available")
    else:
        for batch in batches:
            if batch.inoculated_at is None:
                continue  # never ran: no running time
            end = batch.ended_at or now
            try:
                uptimes[batch.number] = batch_uptime(
                    store,
                    batch.reactor_id or default_reactor,
                    batch.inoculated_at.timestamp(),
                    end.timestamp(),
                    slot_s=slot_s,
                )
            except (TimeSeriesError, OSError) as exc:  # one unreadable batch hides no other
                problems.append(f"batch {batch.number}: uptime not computed ({exc})")
    return summarise_campaign(
        batches,
        decisions,
        uptimes,
        computed_at=now,
        store_read=store is not None,
        problems=problems,
    )
