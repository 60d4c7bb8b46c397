"""Gather one batch for export: its notebook records and its series from the time-series store.

The notebook gives the batch and everything hanging off it; the store gives the 1 Hz sensor
readings, the derived series the shadow stores per 30 s window (``our``, ``cer``, ``rq``...) and
the model's predictions (``od600_pred`` and its band). Series are read from inoculation to the
end of the batch in slices, so memory stays bounded and progress can be reported.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME

if TYPE_CHECKING:
    import pandas as pd

    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.models import (
        AlarmEvent,
        AuditEntry,
        Batch,
        BatchClosure,
        CalibrationRecord,
        Deviation,
        Inoculum,
        MediaPreparation,
        Note,
        ProcessChange,
        Sample,
        Signature,
    )
    from bptwin.eln.services import NotebookService

# Series are read in slices of this length: a 24 h batch is 6 queries per channel.
READ_SLICE_S = 4 * 3600.0
WINDOW_S = 30.0
# Longer than any glycerol batch (20-30 h); a "running" batch this long was never ended.
MAX_BATCH_S = 14 * 86400.0
# Far more than any batch produces; the notebook's list calls need a limit.
NOTEBOOK_LIMIT = 1_000_000
# Derived series the shadow stores per window (twin.shadow.DERIVED_CHANNELS), with units.
DERIVED_SERIES: tuple[tuple[str, str], ...] = (
    ("our", "mmol/L/h"),
    ("cer", "mmol/L/h"),
    ("rq", ""),
    ("mu", "1/h"),
    ("kla", "1/h"),
    ("cum_co2", "mmol/L"),
    ("cum_o2", "mmol/L"),
    ("base_rate", "mL/h"),
    ("biomass_carbon", "g/L"),
)
# Prediction series the station stores (twin.serving.PREDICTION_CHANNELS).
PREDICTION_SERIES: tuple[str, ...] = (
    "od600_pred",
    "od600_pred_lower",
    "od600_pred_upper",
    "depletion_forecast",
)

Progress = Callable[[float, str], None]


class ExportError(RuntimeError):
    """An export that cannot be made; the message says what is wrong (batch, store, folder)."""


class ExportCancelled(ExportError):
    """The export was cancelled before it finished; nothing was moved into the output folder."""


@dataclass(frozen=True)
class ChangeLine:
    """One audited change shown in the report (what, by whom, which fields)."""

    at: datetime
    actor: str
    action: str
    table: str
    record_id: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class AuditSummary:
    """What the audit trail holds about this batch, and whether the chain verifies."""

    entries: int
    by_table: dict[str, dict[str, int]]
    by_actor: dict[str, int]
    first: datetime | None
    last: datetime | None
    chain_ok: bool
    chain_problem: str | None
    changes: tuple[ChangeLine, ...]  # updates and deletes, oldest first


@dataclass
class NotebookRecords:
    """The batch and its notebook records, each list in time order."""

    batch: Batch
    reactor: str
    calibrations: list[CalibrationRecord]
    inoculum: Inoculum | None
    media: list[MediaPreparation]
    samples: list[Sample]
    deviations: list[Deviation]
    alarm_events: list[AlarmEvent]
    notes: list[Note]
    process_changes: list[ProcessChange]
    closure: BatchClosure | None
    audit: AuditSummary
    # Electronic signatures of the batch's records (superseded ones too), oldest first.
    signatures: list[Signature] = field(default_factory=list)


@dataclass
class BatchSeries:
    """The batch's series, from inoculation (``start``) to ``end`` (Unix seconds UTC)."""

    start: float
    end: float
    readings: pd.DataFrame  # time_s, timestamp, one float column per catalogue channel
    windows: pd.DataFrame  # 30 s aggregates per channel plus the derived series
    predictions: pd.DataFrame  # time_s, timestamp, od600_pred, band, depletion_forecast
    dropout_pct: dict[str, float]  # per channel: missing 1 Hz slots (per its cadence), %
    units: dict[str, str] = field(default_factory=dict)
    point_count: int = 0
    # Seconds after inoculation of the glycerol depletion (the confirmed DO spike) found in
    # the stored windows, as the live detector finds it; None when the data shows none.
    depletion_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass
class BatchData:
    """Everything an export needs about one batch."""

    notebook: NotebookRecords
    series: BatchSeries
    model_version: str | None
    store_name: str
    collected_at: datetime


# -- notebook -----------------------------------------------------------------------------


def collect_notebook(notebook: NotebookService, number: int, reactor: str) -> NotebookRecords:
    """The batch and everything the notebook holds about it."""
    batch = notebook.batches.get_batch(number)
    reactor = batch.reactor_id or reactor
    calibrations = sorted(
        notebook.calibrations.list_calibrations(batch_number=number, limit=NOTEBOOK_LIMIT),
        key=lambda record: (record.performed_at, record.id or 0),
    )
    events = _batch_alarm_events(notebook, batch, reactor)
    media = _media_preparations(notebook, batch)
    return NotebookRecords(
        batch=batch,
        reactor=reactor,
        calibrations=calibrations,
        inoculum=notebook.preparation.get_inoculum(number),
        media=media,
        samples=notebook.samples.list_samples(number),
        deviations=notebook.deviations.list_deviations(number),
        alarm_events=events,
        notes=notebook.notes.list_notes(number),
        process_changes=notebook.process_changes.list_process_changes(number),
        closure=notebook.batches.get_closure(number),
        audit=summarise_audit(notebook, batch),
        signatures=_signatures(notebook, number, calibrations),
    )


def _signatures(
    notebook: NotebookService, number: int, calibrations: list[CalibrationRecord]
) -> list[Signature]:
    """The batch's signatures, plus those of the bench calibrations it relied on."""
    signatures = notebook.signatures.list_signatures(batch_number=number)
    bench = {record.id for record in calibrations if record.batch_id is None}
    if bench:
        signatures += [
            signature
            for signature in notebook.signatures.list_signatures(table_name="calibration_record")
            if signature.record_id in bench
        ]
    return sorted(signatures, key=lambda signature: signature.id or 0)


def _batch_alarm_events(notebook: NotebookService, batch: Batch, reactor: str) -> list[AlarmEvent]:
    """Events bound to the batch, plus the reactor's unbound ones during the batch.

    The notebook binds each transition to the batch running on its reactor at its time
    (eln.alarm_records); unbound ones inside the batch's span are from records written before
    it did.
    """
    from sqlmodel import col, select

    from bptwin.eln.models import AlarmEvent

    statement = select(AlarmEvent).where(AlarmEvent.batch_id == batch.id)
    if batch.inoculated_at is not None:
        during = (AlarmEvent.reactor == reactor) & col(AlarmEvent.batch_id).is_(None)
        during &= col(AlarmEvent.occurred_at) >= batch.inoculated_at
        if batch.ended_at is not None:
            during &= col(AlarmEvent.occurred_at) <= batch.ended_at
        statement = select(AlarmEvent).where((AlarmEvent.batch_id == batch.id) | during)
    # The notebook's own session helper turns an unreachable database into a plain error.
    with notebook.unit.read() as session:
        events = list(
            session.exec(statement.order_by(col(AlarmEvent.occurred_at), col(AlarmEvent.id)))
        )
    return events


def _media_preparations(notebook: NotebookService, batch: Batch) -> list[MediaPreparation]:
    from sqlmodel import col, select

    from bptwin.eln.models import MediaPreparation

    with notebook.unit.read() as session:
        rows = session.exec(
            select(MediaPreparation)
            .where(MediaPreparation.batch_id == batch.id)
            .order_by(col(MediaPreparation.prepared_at))
        )
        return list(rows)


def summarise_audit(notebook: NotebookService, batch: Batch) -> AuditSummary:
    """Audit entries of the batch row and of every row that names the batch (batch_id).

    Nothing about a batch precedes its own insert, so only entries from that one on are read.
    """
    from sqlalchemy import func
    from sqlmodel import col, select

    from bptwin.eln.models import AuditEntry

    with notebook.unit.read() as session:
        first = session.exec(
            select(func.min(AuditEntry.id)).where(
                AuditEntry.table_name == "batch", AuditEntry.record_id == str(batch.id)
            )
        ).one()
        statement = select(AuditEntry).order_by(col(AuditEntry.id))
        if first is not None:
            statement = statement.where(col(AuditEntry.id) >= first)
        entries = [entry for entry in session.exec(statement) if _concerns_batch(entry, batch)]
    entries.sort(key=lambda entry: entry.id)
    by_table: dict[str, Counter[str]] = {}
    for entry in entries:
        by_table.setdefault(entry.table_name, Counter())[_action(entry)] += 1
    broken = notebook.audit.verify_audit_chain()
    changes = tuple(
        ChangeLine(
            at=entry.at,
            actor=entry.actor,
            action=_action(entry),
            table=entry.table_name,
            record_id=entry.record_id,
            fields=_changed_fields(entry.before, entry.after),
        )
        for entry in entries
        if _action(entry) != "insert"
    )
    return AuditSummary(
        entries=len(entries),
        by_table={table: dict(counts) for table, counts in sorted(by_table.items())},
        by_actor=dict(Counter(entry.actor for entry in entries).most_common()),
        first=entries[0].at if entries else None,
        last=entries[-1].at if entries else None,
        chain_ok=broken is None,
        chain_problem=None if broken is None else f"entry {broken[0]}: {broken[1]}",
        changes=changes,
    )


def _action(entry: AuditEntry) -> str:
    return str(getattr(entry.action, "value", entry.action))


def _concerns_batch(entry: AuditEntry, batch: Batch) -> bool:
    if entry.table_name == "batch":
        return entry.record_id == str(batch.id)
    for image in (entry.after, entry.before):
        if isinstance(image, dict) and image.get("batch_id") == batch.id:
            return True
    return False


def _changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[str, ...]:
    if before is None or after is None:
        return ()
    return tuple(sorted(k for k in after if before.get(k) != after.get(k)))


# -- series -------------------------------------------------------------------------------


def batch_interval(
    batch: Batch, store: TimeSeriesStore, reactor: str, now: float
) -> tuple[float, float]:
    """(inoculation, end) in Unix seconds.

    A running batch ends at its reactor's last stored reading (or now, if none is stored):
    a simulated or replayed batch is stamped ahead of or behind the wall clock.
    """
    if batch.inoculated_at is None:
        raise ExportError(
            f"batch {batch.number} has not been inoculated: there is no run to export yet"
        )
    start = batch.inoculated_at.timestamp()
    if batch.ended_at is not None:
        end = batch.ended_at.timestamp()
    else:
        end = last_reading_time(store, reactor, start, max(now, start + MAX_BATCH_S)) or now
    if end <= start:
        raise ExportError(f"batch {batch.number} ends before it starts ({start} >= {end})")
    if end - start > MAX_BATCH_S:
        raise ExportError(
            f"batch {batch.number} spans {(end - start) / 86400:.1f} days (more than "
            f"{MAX_BATCH_S / 86400:.0f}); end it in the notebook before exporting"
        )
    return start, end


def last_reading_time(
    store: TimeSeriesStore, reactor: str, start: float, end: float
) -> float | None:
    """The newest sensor reading of ``reactor`` in ``[start, end)``: the last day-long
    window, then its last minute, then that minute's readings (aggregates are cheap queries
    in both stores; only one minute of readings is read per channel)."""
    stored = {channel for _reactor, channel in store.list_channels(reactor)}
    newest: float | None = None
    for entry in CHANNELS:
        if entry.name not in stored:
            continue
        lo, hi = start, end
        for window in (86400.0, 60.0):
            windows = store.read_windows(reactor, entry.name, lo, hi, window_s=window)
            if not windows:
                break
            lo = max(start, windows[-1].window_start)
            hi = min(end, windows[-1].window_start + window)
        else:
            tail = store.read_range(reactor, entry.name, lo, hi)
            if tail and (newest is None or tail[-1].timestamp > newest):
                newest = tail[-1].timestamp
    return newest


def collect_series(
    store: TimeSeriesStore,
    reactor: str,
    start: float,
    end: float,
    progress: Progress | None = None,
) -> BatchSeries:
    """Read every stored channel of ``reactor`` in ``[start, end]`` and put it in tables."""
    import pandas as pd

    stored = {channel for stored_reactor, channel in store.list_channels(reactor)}
    sensor_names = [c.name for c in CHANNELS if c.name in stored]
    derived_names = [name for name, _unit in DERIVED_SERIES if name in stored]
    prediction_names = [name for name in PREDICTION_SERIES if name in stored]
    names = [*sensor_names, *derived_names, *prediction_names]
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    units: dict[str, str] = {}
    # The last second is part of the batch; derived values and predictions are stamped at
    # their window's end, which for the last window may lie up to a window after it.
    sensor_stop, window_stop = end + 1.0, end + WINDOW_S + 1.0
    slices = max(1, math.ceil((window_stop - start) / READ_SLICE_S))
    total = max(1, len(names) * slices)
    done = 0
    for name in names:
        stop = sensor_stop if name in sensor_names else window_stop
        times: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for index in range(slices):
            lo = start + index * READ_SLICE_S
            hi = min(stop, lo + READ_SLICE_S)
            if hi <= lo:
                continue
            # Columns, not a Reading per point: 1.6 million objects were most of the export.
            chunk_times, chunk_values, unit = store.read_columns(reactor, name, lo, hi)
            times.append(chunk_times)
            values.append(chunk_values)
            if len(chunk_times) and unit:
                units[name] = unit
            done += 1
            if progress is not None:
                progress(done / total, f"reading {name} ({index + 1}/{slices})")
        raw[name] = (
            np.concatenate(times) if times else np.empty(0),
            np.concatenate(values) if values else np.empty(0),
        )
    for name in sensor_names:
        units.setdefault(name, CHANNELS_BY_NAME[name].unit)
    readings = _one_second_grid(raw, sensor_names, start, end)
    windows = _windows(raw, sensor_names, derived_names, start)
    predictions = _stamped_table(raw, prediction_names, start)
    if predictions.empty:
        predictions = pd.DataFrame(
            {
                name: pd.Series(dtype="float64")
                for name in ("time_s", "timestamp", *PREDICTION_SERIES)
            }
        )
    return BatchSeries(
        start=start,
        end=end,
        readings=readings,
        windows=windows,
        predictions=predictions,
        dropout_pct=_dropout_pct(raw, sensor_names, start, end),
        units=units,
        point_count=sum(len(t) for t, _v in raw.values()),
        depletion_s=depletion_in_windows(windows, start),
    )


def _dropout_pct(
    raw: dict[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str], start: float, end: float
) -> dict[str, float]:
    """Dropout % per sensor channel over ``[start, end)``, counted as ``twin.dropout`` counts
    it (finite readings against one per catalogue period), from the readings already read:
    the store's window counts hold the same number, so the report and `bptwin accept` agree
    without a second pass over the store."""
    from bptwin.twin.dropout import expected_readings

    result = {}
    for name in names:
        expected = expected_readings(start, end, CHANNELS_BY_NAME[name].period_s)
        if expected == 0:
            result[name] = 0.0
            continue
        times, values = raw[name]
        present = int(np.count_nonzero((times >= start) & (times < end) & np.isfinite(values)))
        result[name] = max(0.0, 100.0 * (1.0 - present / expected))
    return result


def depletion_in_windows(windows: pd.DataFrame, start: float) -> float | None:
    """Seconds after ``start`` of the confirmed DO spike in the batch's own 30 s windows (DO
    means and the CER the shadow stored), found by the live DepletionDetector; None if none.

    The same evidence ``twin.stored_depletion`` reads from the store for acceptance, taken
    from the windows already read for the report.
    """
    from bptwin.twin.features import DEPLETION_CONFIRMED, DepletionDetector, FeatureConfig

    if "do_mean" not in windows.columns or windows.empty:
        return None
    detector = DepletionDetector(FeatureConfig(), WINDOW_S)
    ends = windows["window_end"].to_numpy(dtype=float)
    dos = windows["do_mean"].to_numpy(dtype=float)
    cers = (
        windows["cer"].to_numpy(dtype=float)
        if "cer" in windows.columns
        else np.full(len(ends), np.nan)
    )
    for end, do, cer in zip(ends, dos, cers, strict=True):
        if not math.isfinite(do):
            continue  # the store has no window there: nothing to feed
        state, _blip = detector.update(float(end), float(do), float(cer))
        if state == DEPLETION_CONFIRMED:
            return max(0.0, detector.onset - start) if math.isfinite(detector.onset) else None
    return None


def _one_second_grid(
    raw: dict[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str], start: float, end: float
) -> pd.DataFrame:
    """Readings on the dataset's 1 s grid (docs/dataset.md): several in a second averaged,
    empty seconds left NaN (a missing reading is never zero)."""
    import pandas as pd

    rows = math.floor(end - start + 1e-6) + 1
    time_s = np.arange(rows, dtype=float)
    columns: dict[str, np.ndarray] = {"time_s": time_s, "timestamp": start + time_s}
    for name in names:
        times, values = raw[name]
        column = np.full(rows, np.nan)
        if len(times):
            slot = np.floor(times - start + 1e-6).astype(np.int64)
            keep = (slot >= 0) & (slot < rows) & np.isfinite(values)
            slot, kept = slot[keep], values[keep]
            sums = np.bincount(slot, weights=kept, minlength=rows)
            counts = np.bincount(slot, minlength=rows)
            with np.errstate(invalid="ignore", divide="ignore"):
                column = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        columns[name] = column
    return pd.DataFrame(columns)


def _windows(
    raw: dict[str, tuple[np.ndarray, np.ndarray]],
    sensor_names: Sequence[str],
    derived_names: Sequence[str],
    start: float,
) -> pd.DataFrame:
    """30 s epoch-aligned windows as the store computes them (mean, min, max, last, count of
    the finite values), one row per window, with the derived series stamped at its end."""
    import pandas as pd

    window_ms = round(WINDOW_S * 1000)
    slots_of: dict[str, np.ndarray] = {}
    for name in sensor_names:
        times, values = raw[name]
        finite = np.isfinite(values)
        slots_of[name] = np.floor_divide(np.round(times[finite] * 1000).astype(np.int64), window_ms)
    everything = [s for s in slots_of.values() if len(s)]
    derived_slots = []
    for name in derived_names:
        times, _values = raw[name]
        # Stamped at the window end: the window is the one ending there.
        derived_slots.append(
            np.floor_divide(np.round(times * 1000).astype(np.int64) - 1, window_ms)
        )
    everything += [s for s in derived_slots if len(s)]
    if not everything:
        return pd.DataFrame({"time_s": pd.Series(dtype="float64"), "window_start": []})
    first = int(min(s.min() for s in everything))
    last = int(max(s.max() for s in everything))
    count = last - first + 1
    window_start = (np.arange(first, last + 1) * window_ms) / 1000.0
    columns: dict[str, np.ndarray] = {
        "time_s": window_start - start,
        "window_start": window_start,
        "window_end": window_start + WINDOW_S,
    }
    for name in sensor_names:
        times, values = raw[name]
        finite = np.isfinite(values)
        index = slots_of[name] - first
        kept = values[finite]
        n = np.bincount(index, minlength=count)
        sums = np.bincount(index, weights=kept, minlength=count)
        lo = np.full(count, np.inf)
        hi = np.full(count, -np.inf)
        np.minimum.at(lo, index, kept)
        np.maximum.at(hi, index, kept)
        last_value = np.full(count, np.nan)
        if len(index):
            # Readings are ascending, so a window's last value sits where its index changes.
            ends = np.append(np.nonzero(np.diff(index))[0], len(index) - 1)
            last_value[index[ends]] = kept[ends]
        empty = n == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[f"{name}_mean"] = np.where(empty, np.nan, sums / np.maximum(n, 1))
        columns[f"{name}_min"] = np.where(empty, np.nan, lo)
        columns[f"{name}_max"] = np.where(empty, np.nan, hi)
        columns[f"{name}_last"] = last_value
        columns[f"{name}_count"] = n.astype(np.int64)
    for name, slots in zip(derived_names, derived_slots, strict=True):
        _times, values = raw[name]
        column = np.full(count, np.nan)
        column[slots - first] = values
        columns[name] = column
    return pd.DataFrame(columns)


def _stamped_table(
    raw: dict[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str], start: float
) -> pd.DataFrame:
    """Series stamped at the same instants (predictions) joined on their timestamp."""
    import pandas as pd

    frames = [
        pd.DataFrame({"timestamp": raw[name][0], name: raw[name][1]}).drop_duplicates(
            "timestamp", keep="last"
        )
        for name in names
        if len(raw[name][0])
    ]
    if not frames:
        return pd.DataFrame()
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on="timestamp", how="outer")
    table = table.sort_values("timestamp").reset_index(drop=True)
    table.insert(0, "time_s", table["timestamp"] - start)
    for name in PREDICTION_SERIES:
        if name not in table.columns:
            table[name] = np.nan
    return table[["time_s", "timestamp", *PREDICTION_SERIES]]


def utc_now() -> datetime:
    return datetime.now(tz=timezone.utc)
