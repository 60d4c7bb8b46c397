"""Shared pieces of the export tests: one short simulated batch, recorded into a real notebook
and a real time-series store the way the station records it, with a few notebook entries
(deviation, review, note) so every report section has something to show."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.eln.services import NotebookService
from bptwin.tui.export.simulated import RecordedBatch, ensure_people, record_simulated_batch
from bptwin.twin.dataset import BatchRecord

BATCH = 16
HOURS = 0.75
SEED = 7
OPERATOR, SUPERVISOR = "ana", "sam"
DEVIATION_TITLE = "Antifoam added by hand at 20 min"
NOTE_TEXT = "Foam at 20 min, 0.2 mL antifoam added"


@functools.lru_cache(maxsize=1)
def simulated_batch() -> BatchRecord:
    """Campaign batch 16 (hold-out, nominal), cut at 45 min; simulated once per session."""
    from bptwin.twin.campaign import simulate_campaign_batch

    return simulate_campaign_batch(BATCH, SEED, hours=HOURS)


@functools.lru_cache(maxsize=1)
def predictor() -> object:
    from bptwin.twin.predictor import Predictor
    from bptwin.twin.registry import load_model

    return Predictor(load_model())


def record_batch(notebook: NotebookService, store: TimeSeriesStore) -> RecordedBatch:
    """The simulated batch in ``notebook`` and ``store``, plus a reviewed deviation and a note."""
    record = simulated_batch()
    ensure_people(notebook, OPERATOR, SUPERVISOR)
    recorded = record_simulated_batch(
        notebook, store, record, predictor=predictor(), operator=OPERATOR, supervisor=SUPERVISOR
    )
    start = datetime.fromtimestamp(record.start_timestamp, tz=timezone.utc)
    deviation = notebook.deviations.log_deviation(
        OPERATOR,
        BATCH,
        level=2,
        category="process",
        title=DEVIATION_TITLE,
        started_at=start + timedelta(minutes=20),
        impact="DO blip of 2 %",
    )
    assert deviation.id is not None
    notebook.deviations.review_deviation(
        SUPERVISOR, deviation.id, corrective_action="foam probe cleaned", pin="4321"
    )
    notebook.notes.add_note(OPERATOR, BATCH, NOTE_TEXT)
    return recorded


def recorded_at() -> datetime:
    return datetime.fromtimestamp(simulated_batch().start_timestamp, tz=timezone.utc)
