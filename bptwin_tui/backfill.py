"""Start-up backfill of the dashboard's trend history for the batches that are running.

Only a running batch's own span is read back (from its inoculation, at most the history's
length): a restarted control room or a viewer shows the whole batch, never an older one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.eln.services import NotebookService
    from bptwin.twin.backfill import BackfillResult
    from bptwin.twin.history import History

log = logging.getLogger(__name__)


def running_batch_starts(notebook: NotebookService, reactors: list[str]) -> dict[str, float]:
    """Reactor -> inoculation time (Unix s) of its running batch (newest wins)."""
    from bptwin.eln.models import BatchStatus

    starts: dict[str, float] = {}
    for batch in notebook.batches.list_batches(BatchStatus.RUNNING):
        reactor = batch.reactor_id or reactors[0]
        if reactor not in reactors or batch.inoculated_at is None:
            continue
        inoculated = batch.inoculated_at
        if inoculated.tzinfo is None:  # SQLite hands back naive UTC
            inoculated = inoculated.replace(tzinfo=timezone.utc)
        starts[reactor] = max(starts.get(reactor, 0.0), inoculated.timestamp())
    return starts


def backfill_running_batches(
    history: History,
    store: TimeSeriesStore,
    notebook: NotebookService,
    reactors: list[str],
    *,
    now: float | None = None,
) -> dict[str, BackfillResult]:
    """Each running batch's stored trends into ``history``; problems are logged, not raised."""
    from bptwin.twin.backfill import backfill_history

    end = time.time() if now is None else now
    results: dict[str, BackfillResult] = {}
    for reactor, start in running_batch_starts(notebook, reactors).items():
        hours = min(history.hours, max(0.0, end - start) / 3600.0)
        if hours <= 0:
            continue
        result = backfill_history(history, store, reactor, end=end, hours=hours)
        results[reactor] = result
        for problem in result.problems:
            log.warning("trend backfill of %s: %s", reactor, problem)
    return results


def backfill_in_background(
    work: Callable[[], object], *, name: str = "history-backfill"
) -> threading.Thread:
    """Run the backfill beside acquisition: the station is up before its history is."""

    def run() -> None:
        try:
            work()
        except Exception:  # the live view works without the past
            log.exception("trend backfill failed")

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
