"""Sensor exports of one batch: each file read into channels, then all merged on time.

Each file keeps its own cadence (5 min online values, 1 min CO₂, ...); the merge puts every
reading into its 1 s slot since inoculation (several readings in a second are averaged) and
leaves the other slots empty, as the dataset format says: nothing is interpolated here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME
from bptwin.twin.dataset import UNIT_CONVERSIONS, DatasetError
from bptwin.twin.lab_import.cells import BadCell
from bptwin.twin.lab_import.clock import parse_stated_time, parse_times, time_zone
from bptwin.twin.lab_import.column_map import (
    BatchSpec,
    ColumnSpec,
    FileSpec,
    ImportMap,
    Layout,
    TimeSpec,
)
from bptwin.twin.lab_import.text_table import TextTable, read_text_table

OUT_OF_RANGE_WARN = 0.01  # share of a channel's values outside the catalogue range


@dataclass
class Findings:
    """What the import noticed: notes (what was detected or done) and warnings (look at it)."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad_cells: list[BadCell] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.notes += other.notes
        self.warnings += other.warnings
        self.bad_cells += other.bad_cells


@dataclass
class FileReadings:
    """One export file of one batch: Unix times and converted channel values."""

    name: str
    path: Path
    times: np.ndarray
    channels: dict[str, np.ndarray]
    provenance: dict[str, Any]


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def display_name(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def read_table(path: Path, layout: Layout, display: str) -> TextTable:
    """A text export, or a Parquet file seen through the same interface (rows as lines)."""
    if not path.is_file():
        raise DatasetError(f"{display}: file not found ({path})")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"{display}: cannot read Parquet: {exc}") from None
        frame.columns = [str(c) for c in frame.columns]
        lines = np.arange(1, len(frame) + 1, dtype=np.int64)
        text_layout = layout.text_layout()
        return TextTable(
            display,
            "parquet",
            "",
            list(frame.columns),
            {},
            frame,
            lines,
            text_layout,
            [f"{display}: Parquet, {len(frame)} rows (line = row number)"],
        )
    if path.suffix.lower() in (".xls", ".xlsx", ".ods"):
        raise DatasetError(
            f"{display}: spreadsheets are not read directly; save the sheet as CSV "
            "(it keeps the numbers exactly as shown)"
        )
    return read_text_table(path, layout.text_layout(), display)


def time_start(
    spec: TimeSpec,
    file_name: str,
    batch: BatchSpec,
    import_map: ImportMap,
    inoculation: float | None,
) -> float | None:
    """The instant an elapsed-time file counts from (None: not an elapsed file)."""
    time_format = spec.format or import_map.time_format
    if not time_format.startswith("elapsed"):
        return None
    zone = time_zone(spec.timezone or import_map.timezone)
    if spec.start == "inoculation":
        if inoculation is None:
            raise DatasetError(
                f"batch {batch.number}: file {file_name!r} counts time from inoculation, so the "
                "batch needs inoculation = '<date-time>' in the import map"
            )
        return inoculation
    if spec.start == "batch":
        stated = batch.starts.get(file_name)
        if stated is None:
            raise DatasetError(
                f"batch {batch.number}: file {file_name!r} needs its start in "
                f"[batches.starts] {file_name} = '<date-time>'"
            )
        return parse_stated_time(
            stated, import_map.time_format, zone, f"batch {batch.number} starts.{file_name}"
        )
    return parse_stated_time(
        spec.start, import_map.time_format, zone, f"files.{file_name}.time.start"
    )


def read_times(
    table: TextTable,
    spec: TimeSpec,
    import_map: ImportMap,
    start: float | None,
    numeric_columns: list[str],
) -> np.ndarray:
    time_format = spec.format or import_map.time_format
    zone: tzinfo = time_zone(spec.timezone or import_map.timezone)
    columns = spec.columns
    cells = table.column(columns[0]).astype(str)
    for extra in columns[1:]:
        cells = cells.str.strip() + " " + table.column(extra).astype(str).str.strip()
    times = parse_times(
        cells,
        time_format,
        zone,
        number_format=table.number_format(numeric_columns),
        file=table.file,
        column=" + ".join(columns),
        lines=table.lines,
        start=start,
    )
    return times + spec.shift_s


def convert(values: np.ndarray, spec: ColumnSpec) -> np.ndarray:
    """convert(unit) × factor + offset; mbar absolute → bar gauge is unit mbar, offset −1.01325."""
    if spec.unit is not None:
        values = np.asarray(UNIT_CONVERSIONS[spec.unit](values), dtype=float)
    return values * spec.factor + spec.offset


def _unit_hint(table: TextTable, column: str, spec: ColumnSpec) -> str | None:
    written = table.units.get(column, "").strip("[]() ").strip()
    if not written or spec.unit or spec.factor != 1.0 or spec.offset != 0.0:
        return None
    if written in UNIT_CONVERSIONS or written.lower() in ("mbar", "kpa", "psi", "ml/min", "l/h"):
        unit = CHANNELS_BY_NAME[spec.channel].unit
        return (
            f"{table.file}: column {column!r} is in {written!r} by its unit row, channel "
            f"{spec.channel} is in {unit!r}, and the map gives no unit, factor or offset"
        )
    return None


def _range_warning(name: str, file: str, values: np.ndarray) -> str | None:
    entry = CHANNELS_BY_NAME[name]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    outside = (finite < entry.physical_min) | (finite > entry.physical_max)
    share = float(outside.mean())
    if share <= OUT_OF_RANGE_WARN:
        return None
    example = float(finite[outside][0])
    return (
        f"{file}: {share:.0%} of {name} values lie outside {entry.physical_min:g}…"
        f"{entry.physical_max:g} {entry.unit} (e.g. {example:g}); they will count as "
        "missing. Wrong unit, factor or offset? (absolute pressure needs offset = -1.01325)"
    )


def read_sensor_file(
    import_map: ImportMap,
    file_name: str,
    spec: FileSpec,
    batch: BatchSpec,
    inoculation: float | None,
) -> tuple[FileReadings | None, Findings]:
    """One export of one batch; None (with a note) when an optional file is absent."""
    found = Findings()
    path = import_map.resolve(spec.path, batch)
    display = display_name(path, import_map.base_dir)
    if not path.is_file() and not spec.required:
        found.notes.append(f"batch {batch.number}: optional file {display} absent")
        return None, found
    layout = import_map.file_layout(spec)
    table = read_table(path, layout, display)
    numeric = list(spec.columns)
    for column in [*numeric, *spec.time.columns]:
        table.column(column)  # every mapped column must exist: an error names the closest
    start = time_start(spec.time, file_name, batch, import_map, inoculation)
    times = read_times(table, spec.time, import_map, start, numeric)
    channels: dict[str, np.ndarray] = {}
    on_bad = layout.on_bad_cell or "error"
    for column, target in spec.columns.items():
        values, bad = table.numbers(column, numeric, on_bad)
        if bad:
            found.bad_cells += bad
            found.warnings.append(
                f"{display}: {len(bad)} cell(s) of column {column!r} are not numbers and were "
                f"left empty (on_bad_cell = 'missing'); first: line {bad[0].line} {bad[0].text!r}"
            )
        hint = _unit_hint(table, column, target)
        if hint:
            found.warnings.append(hint)
        channels[target.channel] = convert(values, target)
        problem = _range_warning(target.channel, display, channels[target.channel])
        if problem:
            found.warnings.append(problem)
    found.notes = table.notes + found.notes  # what was detected, decimal separator included
    steps = np.diff(times)
    backwards = int((steps < 0).sum())
    if backwards:
        found.warnings.append(f"{display}: time goes back {backwards} time(s); rows are sorted")
    cadence = float(np.median(steps[steps > 0])) if (steps > 0).any() else float("nan")
    found.notes.append(
        f"{display}: {len(times)} rows, one every {cadence:g} s, "
        f"{', '.join(channels)} from {', '.join(repr(c) for c in spec.columns)}"
    )
    provenance = {
        "path": display,
        "sha256": sha256_of_file(path),
        "encoding": table.encoding,
        "delimiter": table.delimiter,
        "decimal": table.number_format(numeric).decimal,
        "rows": len(times),
        "period_s": cadence,
        "columns": {column: target.channel for column, target in spec.columns.items()},
    }
    return FileReadings(file_name, path, times, channels, provenance), found


def merge_on_grid(
    files: list[FileReadings], inoculation: float, period_s: float = 1.0
) -> tuple[pd.DataFrame, int]:
    """All files' readings on one grid since inoculation; (table, readings before inoculation).

    Each reading goes into slot floor((t − inoculation) / period); readings in one slot are
    averaged; slots without a reading stay empty. Readings before inoculation are left out.
    """
    parts: list[pd.DataFrame] = []
    before = 0
    for readings in files:
        slot = np.floor((readings.times - inoculation) / period_s).astype(np.int64)
        keep = slot >= 0
        before += int((~keep).sum())
        frame = pd.DataFrame({name: values[keep] for name, values in readings.channels.items()})
        frame["slot"] = slot[keep]
        parts.append(frame.groupby("slot").mean())
    if not parts or all(part.empty for part in parts):
        raise DatasetError("no readings at or after inoculation in any file")
    merged = pd.concat(parts, axis=1)
    last = int(merged.index.max())
    merged = merged.reindex(np.arange(0, last + 1))
    table = pd.DataFrame(
        {
            "time_s": merged.index.to_numpy(dtype=float) * period_s,
            "timestamp": inoculation + merged.index.to_numpy(dtype=float) * period_s,
        }
    )
    for entry in CHANNELS:
        if entry.name in merged.columns:
            table[entry.name] = merged[entry.name].to_numpy(dtype=float)
    return table, before


def first_reading(files: list[FileReadings]) -> float:
    firsts = [float(np.min(f.times)) for f in files if len(f.times)]
    if not firsts:
        raise DatasetError("the batch's files hold no readings")
    return min(firsts)


def utc_text(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
