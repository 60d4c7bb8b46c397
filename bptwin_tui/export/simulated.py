"""A simulated campaign batch recorded the way the station records a real one.

The notebook gets the batch, passing calibrations, the inoculum, the SOP samples, the alarm
events and the closure; the time-series store gets the 1 Hz readings, the derived series of
every 30 s window (the shadow's feature pipeline) and, with a predictor, the model's
predictions. Used to try ``bptwin export`` on a fresh machine, by the export tests (against
the real Postgres and InfluxDB) and by the export benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading
from bptwin.eln.sample_math import reading_and_dilution

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.services import NotebookService
    from bptwin.twin.dataset import BatchRecord
    from bptwin.twin.predictor import Predictor

WRITE_CHUNK = 20_000
CALIBRATED = ("ph", "do", "offgas_o2", "offgas_co2")


@dataclass(frozen=True)
class RecordedBatch:
    """What was recorded: the source record and counts of what went where."""

    record: BatchRecord
    readings: int
    windows: int
    predictions: int
    alarm_events: int


# The PINs of the people ensure_people registers for a simulated batch (signatures need one).
SIMULATED_SUPERVISOR_PIN = "4321"
SIMULATED_OPERATOR_PIN = "1234"


def sensor_readings(record: BatchRecord, reactor: str) -> list[Reading]:
    """The record's sensor table as readings in time order (empty cells: no reading)."""
    table = record.readings()
    stamps = table["timestamp"].to_numpy(dtype=float)
    per_channel = []
    for name in record.channels:
        values = table[name].to_numpy(dtype=float)
        unit = CHANNELS_BY_NAME[name].unit
        present = np.isfinite(values)
        if CHANNELS_BY_NAME[name].period_s <= 1:
            present = np.ones_like(present)  # a 1 Hz NaN is a dropout: stored as bad
        for index in np.nonzero(present)[0]:
            value = float(values[index])
            quality = Quality.GOOD if np.isfinite(value) else Quality.BAD
            per_channel.append((stamps[index], name, value, unit, quality))
    per_channel.sort(key=lambda row: row[0])
    return [Reading(ts, reactor, name, value, unit, q) for ts, name, value, unit, q in per_channel]


def record_simulated_batch(
    notebook: NotebookService,
    store: TimeSeriesStore,
    record: BatchRecord,
    *,
    reactor: str = "R1",
    operator: str = "ana",
    supervisor: str = "sam",
    supervisor_pin: str = SIMULATED_SUPERVISOR_PIN,
    predictor: Predictor | None = None,
    strain: str = "X-33 (simulated)",
    progress: Callable[[float], None] | None = None,
) -> RecordedBatch:
    """Record ``record`` (e.g. ``bptwin.twin.campaign.simulate_campaign_batch``) as batch
    ``record.number``; ``operator`` and ``supervisor`` must exist (see ``ensure_people``), the
    supervisor's PIN signs the closure."""

    start = datetime.fromtimestamp(record.start_timestamp, tz=timezone.utc)
    end = start + timedelta(seconds=record.duration_s)
    # The notebook's clock follows the simulated batch, so entries carry the times they
    # would have in the lab (a sample form entered minutes after sampling, not months).
    saved_clock = notebook.clock
    moment = [start - timedelta(hours=3)]
    notebook.clock = lambda: moment[0]
    try:
        return _record(
            notebook,
            store,
            record,
            reactor,
            operator,
            (supervisor, supervisor_pin),
            predictor,
            strain,
            progress,
            start,
            end,
            moment,
        )
    finally:
        notebook.clock = saved_clock


def _record(
    notebook: NotebookService,
    store: TimeSeriesStore,
    record: BatchRecord,
    reactor: str,
    operator: str,
    signer: tuple[str, str],
    predictor: Predictor | None,
    strain: str,
    progress: Callable[[float], None] | None,
    start: datetime,
    end: datetime,
    moment: list[datetime],
) -> RecordedBatch:
    from bptwin.twin.alarm_rules import DEFAULT_RULES
    from bptwin.twin.serving import prediction_readings
    from bptwin.twin.shadow import Shadow, derived_readings

    notebook.batches.create_batch(
        operator,
        record.number,
        record.phase,
        strain=strain,
        medium_lot="BSM-0001",
        vessel="V1",
        reactor_id=reactor,
        notes=f"simulated: {record.variation}",
    )
    moment[0] = start - timedelta(hours=2)
    for channel in CALIBRATED:
        notebook.calibrations.record_calibration(
            operator,
            channel=channel,
            kind="two-point" if channel == "ph" else "zero-span",
            measured={"points": 2},
            results={"slope_pct": 99.1, "offset": 0.01},
            passed=True,
            batch_number=record.number,
            performed_at=start - timedelta(hours=2),
        )
    moment[0] = start - timedelta(minutes=20)
    notebook.preparation.record_inoculum(
        operator, record.number, od600_raw=3.0, volume_ml=100.0, microscopy_clean=True
    )
    moment[0] = start
    notebook.batches.start_batch(operator, record.number, inoculated_at=start)

    readings = sensor_readings(record, reactor)
    shadow = Shadow([reactor], alarm_rules=DEFAULT_RULES)
    shadow.set_inoculation_time(reactor, record.start_timestamp)
    derived: list[Reading] = []
    windows = predictions = events = 0

    def take(output: object) -> None:
        nonlocal windows, predictions, events
        for state in output.states:  # type: ignore[attr-defined]
            windows += 1
            derived.extend(derived_readings(state))
            if predictor is not None:
                derived.extend(prediction_readings(predictor.predict(state), reactor))
                predictions += 1
        for transition in output.transitions:  # type: ignore[attr-defined]
            fields = transition.event_fields()
            notebook.alarms.record_alarm_event(**fields, batch_number=record.number)
            events += 1

    for offset in range(0, len(readings), WRITE_CHUNK):
        chunk = readings[offset : offset + WRITE_CHUNK]
        store.write(chunk)
        for reading in chunk:
            take(shadow.feed(reading))
        if derived:
            store.write(derived)
            derived.clear()
        if progress is not None:
            progress(min(1.0, (offset + len(chunk)) / max(1, len(readings))))
    take(shadow.flush())
    if derived:
        store.write(derived)
    store.flush(timeout=60.0)

    samples = record.samples
    if samples is None:
        raise ValueError(f"batch {record.number} has no samples table to record")
    for row in samples.itertuples(index=False):
        moment[0] = start + timedelta(seconds=float(row.time_s) + 600.0)
        od_raw, dilution = reading_and_dilution(float(row.od600))
        notebook.samples.add_sample(
            operator,
            record.number,
            taken_at=start + timedelta(seconds=float(row.time_s)),
            od_raw=od_raw,
            dilution=dilution,
            sop_timepoint_h=None if np.isnan(row.planned_h) else float(row.planned_h),
            dcw_g_per_l=None if np.isnan(row.dcw_g_l) else float(row.dcw_g_l),
            glycerol_g_per_l=None if np.isnan(row.glycerol_g_l) else float(row.glycerol_g_l),
            microscopy_clean=str(row.microscopy) == "clean",
            microscopy_text="" if str(row.microscopy) == "clean" else str(row.microscopy),
        )
    moment[0] = max(moment[0], end) + timedelta(minutes=5)
    notebook.batches.end_batch(operator, record.number, ended_at=end)
    depletion_h = None if record.depletion_time_s is None else record.depletion_time_s / 3600.0
    notebook.batches.close_batch(
        operator,
        record.number,
        outcome="complete",
        runtime_h=record.duration_s / 3600.0,
        depletion_time_h=depletion_h,
        missing_samples_reason=None if len(samples) >= 8 else "shortened simulated batch",
    )
    moment[0] += timedelta(minutes=30)
    notebook.batches.sign_off_batch(signer[0], record.number, pin=signer[1])
    return RecordedBatch(record, len(readings), windows, predictions, events)


def ensure_people(
    notebook: NotebookService, operator: str = "ana", supervisor: str = "sam"
) -> None:
    """Create the supervisor and operator the simulated batch is recorded by, if missing."""
    from bptwin.eln.models import OperatorRole

    if notebook.operators.get_operator(supervisor) is None:
        notebook.operators.create_operator(
            "setup", supervisor, OperatorRole.SUPERVISOR, SIMULATED_SUPERVISOR_PIN
        )
    if notebook.operators.get_operator(operator) is None:
        notebook.operators.create_operator(
            supervisor, operator, OperatorRole.OPERATOR, SIMULATED_OPERATOR_PIN
        )
