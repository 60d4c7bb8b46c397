"""CSV export: any channel range from the time-series store, and the notebook's tables.

Channels (docs/csv-and-grafana.md):

* ``long`` layout (default, lossless): one row per reading —
  ``time,unix_s,reactor,channel,value,unit,quality``; a missing value (NaN) is an empty cell
  with quality ``bad``. :func:`read_channels_csv` reads it back into readings.
* ``wide`` layout (spreadsheets): ``time,unix_s`` and one column per channel, one row per
  distinct timestamp; a channel without a reading at that instant is an empty cell.

Times are ISO 8601 UTC with milliseconds; ``unix_s`` carries the same instant as Unix seconds
with millisecond precision (the store's key). Values are written with ``repr`` so they read
back bit-identical. The store is read in slices, so memory stays bounded for long ranges.

Notebook tables: one CSV per table (``batches``, ``samples``, ``calibrations``,
``deviations``, ``alarms``, ``notes``, plus ``inocula``, ``media``, ``closures``,
``process_changes``, ``acceptance`` and ``signatures``), every column of the table, with
``batch_number`` added beside ``batch_id``; JSON columns hold JSON text, times ISO 8601 UTC.
PIN hashes are never exported.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bptwin.database.reading import Quality, Reading
from bptwin.eln.text_safety import spreadsheet_safe

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.services import NotebookService

LONG_COLUMNS = ("time", "unix_s", "reactor", "channel", "value", "unit", "quality")
LAYOUTS = ("long", "wide")
READ_SLICE_S = 4 * 3600.0
# More rows than any notebook holds; the service's list calls need a limit.
NOTEBOOK_LIMIT = 10_000_000

Progress = Callable[[float, str], None]


class CsvExportError(ValueError):
    """The export cannot be made as asked; the message says why."""


def format_time(unix_s: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-03-02T08:00:00.000Z``."""
    moment = datetime.fromtimestamp(round(unix_s * 1000) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_times(unix_s: Sequence[float]) -> list[str]:
    """:func:`format_time` of many instants at once (numpy: the CSV writer's hot path)."""
    import numpy as np

    if not len(unix_s):
        return []
    ms = np.round(np.asarray(unix_s, dtype=float) * 1000.0).astype("int64")
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [f"{stamp}Z" for stamp in text.tolist()]


def parse_time(text: str) -> float:
    """Unix seconds from ISO 8601 (a time without zone is UTC) or a plain number of seconds."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CsvExportError(
            f"{text!r} is not a time; use ISO 8601 (2026-03-02T08:00:00Z) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def _slices(start: float, end: float) -> Iterator[tuple[float, float]]:
    low = start
    while low < end:
        high = min(end, low + READ_SLICE_S)
        yield low, high
        low = high


# ---------------------------------------------------------------------------- channels


def write_channels_csv(
    out: IO[str],
    store: TimeSeriesStore,
    reactor: str,
    channels: Sequence[str],
    start: float,
    end: float,
    *,
    layout: str = "long",
    progress: Progress | None = None,
) -> int:
    """Write readings of ``channels`` in ``[start, end)`` as CSV; returns the rows written."""
    if layout not in LAYOUTS:
        raise CsvExportError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise CsvExportError(f"the range must have its end after its start ({start} .. {end})")
    if not channels:
        raise CsvExportError(f"no channel to export for reactor {reactor!r}")
    writer = csv.writer(out, lineterminator="\n")
    # Names and units come from outside (a gateway, a topic map): no formula, no raw control
    # character reaches the spreadsheet. Few distinct values, so each is neutralised once.
    safe = functools.lru_cache(maxsize=1024)(spreadsheet_safe)
    slices = list(_slices(start, end))
    total = max(1, len(slices) * len(channels))
    rows = 0
    done = 0
    if layout == "long":
        writer.writerow(LONG_COLUMNS)
        for channel in channels:
            for low, high in slices:
                readings = store.read_range(reactor, channel, low, high)
                stamps = format_times([reading.timestamp for reading in readings])
                writer.writerows(
                    (
                        stamp,
                        f"{reading.timestamp:.3f}",
                        safe(reading.reactor),
                        safe(reading.channel),
                        _number(reading.value),
                        safe(reading.unit),
                        reading.quality.value,
                    )
                    for stamp, reading in zip(stamps, readings, strict=True)
                )
                rows += len(readings)
                done += 1
                if progress is not None:
                    progress(done / total, f"{channel} to {format_time(high)}")
        return rows
    writer.writerow(("time", "unix_s", *(safe(channel) for channel in channels)))
    for low, high in slices:
        table: dict[int, list[str]] = {}
        for index, channel in enumerate(channels):
            for reading in store.read_range(reactor, channel, low, high):
                key = round(reading.timestamp * 1000)
                row = table.setdefault(key, [""] * len(channels))
                row[index] = _number(reading.value)
            done += 1
            if progress is not None:
                progress(done / total, f"{channel} to {format_time(high)}")
        keys = sorted(table)
        stamps = format_times([key / 1000 for key in keys])
        writer.writerows(
            (stamp, f"{key / 1000:.3f}", *table[key])
            for stamp, key in zip(stamps, keys, strict=True)
        )
        rows += len(keys)
    return rows


def read_channels_csv(source: IO[str] | Path | str) -> list[Reading]:
    """Readings from a long-layout channel CSV (the inverse of the ``long`` export)."""
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8", newline="") as handle:
            return read_channels_csv(handle)
    reader = csv.DictReader(source)
    missing = [c for c in LONG_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CsvExportError(f"not a bptwin long-layout channel CSV: columns {missing} missing")
    readings = []
    for line, row in enumerate(reader, start=2):
        try:
            value = float(row["value"]) if row["value"] else math.nan
            readings.append(
                Reading(
                    timestamp=float(row["unix_s"]),
                    reactor=row["reactor"],
                    channel=row["channel"],
                    value=value,
                    unit=row["unit"],
                    quality=Quality(row["quality"]),
                )
            )
        except (TypeError, ValueError) as exc:
            raise CsvExportError(f"line {line}: {exc}") from None
    return readings


def stored_channels(store: TimeSeriesStore, reactor: str) -> list[str]:
    """Every series of ``reactor`` in the store (sensor channels and derived series)."""
    return sorted(name for owner, name in store.list_channels(reactor) if owner == reactor)


# ---------------------------------------------------------------------------- notebook tables


def _cell(value: Any) -> str:
    """One notebook value as a CSV cell; text (notes, names, labels) never runs as a formula
    in a spreadsheet nor carries raw control characters (eln.text_safety)."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return spreadsheet_safe(str(value.value))
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict | list):
        return spreadsheet_safe(json.dumps(value, sort_keys=True, allow_nan=False, default=str))
    if isinstance(value, int):
        return str(value)
    return spreadsheet_safe(str(value))


def _rows_of(notebook: NotebookService, table: str, batch: int | None) -> list[Any]:
    """The notebook rows of one table, optionally of one batch, oldest first."""
    from bptwin.eln.acceptance_service import list_decisions

    numbers = [batch] if batch is not None else [b.number for b in notebook.batches.list_batches()]
    rows: list[Any]
    if table == "batches":
        rows = (
            [notebook.batches.get_batch(batch)]
            if batch is not None
            else notebook.batches.list_batches()
        )
        return sorted(rows, key=lambda row: row.number)
    per_batch: dict[str, Callable[[int], Any]] = {
        "samples": notebook.samples.list_samples,
        "deviations": notebook.deviations.list_deviations,
        "notes": notebook.notes.list_notes,
        "process_changes": notebook.process_changes.list_process_changes,
        "inocula": notebook.preparation.get_inoculum,
        "media": notebook.preparation.list_media_preparations,
        "closures": notebook.batches.get_closure,
    }
    if table in per_batch:
        found: list[Any] = []
        for number in numbers:
            result = per_batch[table](number)
            if isinstance(result, list):
                found.extend(result)
            elif result is not None:
                found.append(result)
        return sorted(found, key=lambda row: row.id or 0)
    if table == "calibrations":
        rows = notebook.calibrations.list_calibrations(batch_number=batch, limit=NOTEBOOK_LIMIT)
    elif table == "alarms":
        rows = notebook.alarms.list_alarm_events(batch_number=batch, limit=NOTEBOOK_LIMIT)
    elif table == "acceptance":
        rows = list_decisions(notebook, batch)
    elif table == "signatures":
        rows = notebook.signatures.list_signatures(batch_number=batch)
    else:
        raise CsvExportError(f"unknown table {table!r}; choose from {', '.join(TABLES)}")
    return sorted(rows, key=lambda row: row.id or 0)


TABLES: tuple[str, ...] = (
    "batches",
    "samples",
    "calibrations",
    "deviations",
    "alarms",
    "notes",
    "inocula",
    "media",
    "closures",
    "process_changes",
    "acceptance",
    "signatures",
)
_MODEL_OF_TABLE = {
    "batches": "Batch",
    "samples": "Sample",
    "calibrations": "CalibrationRecord",
    "deviations": "Deviation",
    "alarms": "AlarmEvent",
    "notes": "Note",
    "inocula": "Inoculum",
    "media": "MediaPreparation",
    "closures": "BatchClosure",
    "process_changes": "ProcessChange",
    "acceptance": "BatchAcceptance",
    "signatures": "Signature",
}
NEVER_EXPORTED = frozenset({"pin_hash"})


def table_columns(table: str) -> list[str]:
    """The CSV columns of a notebook table: its columns, ``batch_number`` after ``batch_id``."""
    from bptwin.eln import models

    model = getattr(models, _MODEL_OF_TABLE[table])
    names = [column.name for column in model.__table__.columns if column.name not in NEVER_EXPORTED]
    if "batch_id" in names:
        names.insert(names.index("batch_id") + 1, "batch_number")
    return names


def write_table_csv(
    out: IO[str], notebook: NotebookService, table: str, *, batch: int | None = None
) -> int:
    """Write one notebook table (all batches, or one) as CSV; returns the rows written."""
    if table not in TABLES:
        raise CsvExportError(f"unknown table {table!r}; choose from {', '.join(TABLES)}")
    columns = table_columns(table)
    rows = _rows_of(notebook, table, batch)
    numbers = {b.id: b.number for b in notebook.batches.list_batches()}
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = []
        for name in columns:
            if name == "batch_number":
                batch_id = getattr(row, "batch_id", None)
                values.append("" if batch_id is None else str(numbers.get(batch_id, "")))
            else:
                values.append(_cell(getattr(row, name)))
        writer.writerow(values)
    return len(rows)


def write_tables(
    directory: Path,
    notebook: NotebookService,
    *,
    batch: int | None = None,
    tables: Iterable[str] = TABLES,
) -> dict[str, int]:
    """One ``<table>.csv`` per table in ``directory``; returns rows written per table."""
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for table in tables:
        buffer = io.StringIO()
        counts[table] = write_table_csv(buffer, notebook, table, batch=batch)
        (directory / f"{table}.csv").write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return counts
