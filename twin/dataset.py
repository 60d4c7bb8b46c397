"""The batch dataset on disk: a folder with ``manifest.json`` and two Parquet files per batch.

Layout (``docs/dataset.md``)::

    DIR/manifest.json              format, version, batches with metadata and sha256
    DIR/batch_01.parquet           1 Hz rows: time_s, timestamp, one column per channel,
                                   truth_* columns (simulated batches only)
    DIR/batch_01_samples.parquet   offline samples: time_s, timestamp, od600, dcw_g_l, ...

Real lab data enters the same shape through :func:`import_table` (a plain CSV/Parquet table
and a column map) and :func:`import_samples`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME

if TYPE_CHECKING:
    from bptwin.twin.simulator import BatchResult

FORMAT_NAME = "bptwin-dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TRUTH_PREFIX = "truth_"
TIME_COLUMNS = ("time_s", "timestamp")
SAMPLE_COLUMNS = (
    "time_s",
    "timestamp",
    "kind",
    "planned_h",
    "od600",
    "dcw_g_l",
    "glycerol_g_l",
    "microscopy",
)
PHASES = ("A", "B", "C")
ROLES = ("shakedown", "training", "holdout")

# Simple unit conversions for import: (channel unit, source unit) -> value in channel unit.
UNIT_CONVERSIONS: dict[str, Any] = {
    "fraction": lambda v: v * 100.0,  # 0–1 → % (DO, off-gas)
    "ppm": lambda v: v / 1e4,  # ppm → % v/v
    "K": lambda v: v - 273.15,
    "degF": lambda v: (v - 32.0) * 5.0 / 9.0,
    "mbar": lambda v: v / 1000.0,
    "kPa": lambda v: v / 100.0,
    "psi": lambda v: v * 0.0689476,
    "mL/min": lambda v: v / 1000.0,
    "L/h": lambda v: v / 60.0,
    "L": lambda v: v * 1000.0,  # base volume in L → mL
    "kg": lambda v: v * 1000.0,  # weight → g
    "N·m": lambda v: v * 100.0,  # torque → N·cm
    "mN·m": lambda v: v / 10.0,
}


class DatasetError(ValueError):
    """A dataset folder, manifest or table that cannot be read; the message says what."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BatchRecord:
    """One batch: metadata (as in the manifest) plus its sensor and sample tables."""

    number: int
    phase: str
    role: str
    variation: str = "nominal"
    source: str = "simulated"  # or "imported"
    seed: int | None = None
    campaign_seed: int | None = None
    start_timestamp: float = 0.0
    duration_s: float = 0.0
    depletion_time_s: float | None = None
    sample_times_s: list[float] = field(default_factory=list)
    rows: int = 0
    parameters: dict[str, float] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    foam_events: list[dict[str, float]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    # Process constants of a real batch (initial volume, assumed RQ, carbon balance, ...),
    # read by the features (twin/process_inputs.py); empty for simulated batches.
    process: dict[str, Any] = field(default_factory=dict)
    # Where an imported batch came from: files, their sha256, what the import noticed.
    provenance: dict[str, Any] = field(default_factory=dict)
    sensors: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.number, int) or self.number < 1:
            raise DatasetError(f"batch number must be a positive integer, got {self.number!r}")
        if self.phase not in PHASES:
            raise DatasetError(f"batch {self.number}: phase must be A, B or C, got {self.phase!r}")
        if self.role not in ROLES:
            raise DatasetError(
                f"batch {self.number}: role must be one of {ROLES}, got {self.role!r}"
            )

    @property
    def stem(self) -> str:
        return f"batch_{self.number:02d}"

    @property
    def channels(self) -> list[str]:
        """Catalogue channels present in the sensor table."""
        if self.sensors is None:
            return []
        return [c.name for c in CHANNELS if c.name in self.sensors.columns]

    @property
    def truth(self) -> pd.DataFrame | None:
        """The simulator's true state (time_s + truth_* columns), None for real batches."""
        if self.sensors is None:
            return None
        columns = [c for c in self.sensors.columns if c.startswith(TRUTH_PREFIX)]
        return self.sensors[["time_s", *columns]] if columns else None

    def readings(self) -> pd.DataFrame:
        """Only what a real reactor would give: time columns and channel columns."""
        if self.sensors is None:
            raise DatasetError(f"batch {self.number}: sensor table not loaded")
        return self.sensors[[*TIME_COLUMNS, *self.channels]]

    def without_data(self) -> BatchRecord:
        return replace(self, sensors=None, samples=None)

    def metadata(self) -> dict[str, Any]:
        """The manifest entry of this batch (JSON-safe); ``process`` and ``provenance`` only
        when set, so a simulated campaign's manifest stays as it was."""
        optional = {
            key: value
            for key, value in (("process", self.process), ("provenance", self.provenance))
            if value
        }
        return {
            "batch": self.number,
            "phase": self.phase,
            "role": self.role,
            "variation": self.variation,
            "source": self.source,
            "seed": self.seed,
            "campaign_seed": self.campaign_seed,
            "start_time": datetime.fromtimestamp(self.start_timestamp, tz=timezone.utc).isoformat(),
            "start_timestamp": self.start_timestamp,
            "duration_s": self.duration_s,
            "depletion_time_s": self.depletion_time_s,
            "sample_times_s": list(self.sample_times_s),
            "rows": self.rows,
            "parameters": {k: float(v) for k, v in self.parameters.items()},
            "faults": self.faults,
            "foam_events": self.foam_events,
            "files": self.files,
            "sha256": self.sha256,
            **optional,
        }

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> BatchRecord:
        try:
            return cls(
                number=int(entry["batch"]),
                phase=str(entry["phase"]),
                role=str(entry.get("role", "training")),
                variation=str(entry.get("variation", "")),
                source=str(entry.get("source", "imported")),
                seed=entry.get("seed"),
                campaign_seed=entry.get("campaign_seed"),
                start_timestamp=float(entry.get("start_timestamp", 0.0)),
                duration_s=float(entry.get("duration_s", 0.0)),
                depletion_time_s=entry.get("depletion_time_s"),
                sample_times_s=[float(t) for t in entry.get("sample_times_s", [])],
                rows=int(entry.get("rows", 0)),
                parameters=dict(entry.get("parameters", {})),
                faults=list(entry.get("faults", [])),
                foam_events=list(entry.get("foam_events", [])),
                files=dict(entry.get("files", {})),
                sha256=dict(entry.get("sha256", {})),
                process=dict(entry.get("process", {})),
                provenance=dict(entry.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"manifest batch entry is malformed ({exc!r}): {entry!r:.200}"
            ) from exc

    @classmethod
    def from_simulation(
        cls,
        result: BatchResult,
        *,
        number: int,
        phase: str,
        role: str,
        variation: str,
        campaign_seed: int | None = None,
    ) -> BatchRecord:
        sensors = result.frame()
        start = float(sensors["timestamp"].iloc[0])
        samples = result.samples.copy()
        samples.insert(1, "timestamp", start + samples["time_s"])
        return cls(
            number=number,
            phase=phase,
            role=role,
            variation=variation,
            source="simulated",
            seed=result.seed,
            campaign_seed=campaign_seed,
            start_timestamp=start,
            duration_s=float(sensors["time_s"].iloc[-1]),
            depletion_time_s=result.depletion_time_s,
            sample_times_s=[float(t) for t in samples["time_s"]],
            rows=len(sensors),
            parameters={k: float(v) for k, v in result.parameters.items()},
            faults=result.faults,
            foam_events=result.foam_events,
            sensors=sensors,
            samples=samples,
        )


@dataclass
class Dataset:
    """A campaign (or any set of batches) with its manifest fields."""

    source: str = "simulated"
    description: str = ""
    campaign_seed: int | None = None
    faults: bool = False
    created: str = field(default_factory=lambda: datetime.now(tz=timezone.utc).isoformat())
    batches: list[BatchRecord] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def batch(self, number: int) -> BatchRecord:
        for record in self.batches:
            if record.number == number:
                return record
        raise KeyError(f"dataset has no batch {number}")

    def by_role(self, role: str) -> list[BatchRecord]:
        return [record for record in self.batches if record.role == role]

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "created": self.created,
            "source": self.source,
            "description": self.description,
            "campaign_seed": self.campaign_seed,
            "faults": self.faults,
            "channels": {c.name: c.unit for c in CHANNELS},
            "batches": [record.metadata() for record in sorted(self.batches, key=_number)],
        }


def _number(record: BatchRecord) -> int:
    return record.number


# -- writing ------------------------------------------------------------------------------
def write_batch(directory: Path | str, record: BatchRecord) -> BatchRecord:
    """Write the batch's Parquet files and fill in ``files``, ``sha256`` and ``rows``."""
    if record.sensors is None:
        raise DatasetError(f"batch {record.number}: no sensor table to write")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    sensors_name = f"{record.stem}.parquet"
    samples_name = f"{record.stem}_samples.parquet"
    _compact(record.sensors).to_parquet(out / sensors_name, index=False, compression="zstd")
    samples = record.samples if record.samples is not None else empty_samples()
    samples.to_parquet(out / samples_name, index=False)
    record.files = {"sensors": sensors_name, "samples": samples_name}
    record.sha256 = {key: sha256_of(out / name) for key, name in record.files.items()}
    record.rows = len(record.sensors)
    return record


def _compact(sensors: pd.DataFrame) -> pd.DataFrame:
    """Channel and truth columns as float32 (7 digits: beyond any sensor's resolution);
    time columns stay float64 so Unix seconds keep their sub-second part."""
    kinds = {
        name: "float32"
        for name in sensors.columns
        if name not in TIME_COLUMNS and pd.api.types.is_float_dtype(sensors[name])
    }
    return sensors.astype(kinds)


def write_manifest(directory: Path | str, dataset: Dataset) -> Path:
    path = Path(directory) / MANIFEST_NAME
    text = json.dumps(dataset.manifest(), indent=2, allow_nan=False, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the manifest")


def write_dataset(directory: Path | str, dataset: Dataset) -> Path:
    """Write every loaded batch and the manifest."""
    for record in dataset.batches:
        if record.sensors is not None:
            write_batch(directory, record)
    return write_manifest(directory, dataset)


def empty_samples() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in SAMPLE_COLUMNS}).astype(
        {"kind": "object", "microscopy": "object"}
    )


# -- reading ------------------------------------------------------------------------------
def batch_identity(record: BatchRecord) -> str:
    """A batch's identity whatever its number: sha256 over its files' sha256 (empty when the
    manifest records none). The same batch copied into another dataset keeps it."""
    if not record.sha256:
        return ""
    digest = hashlib.sha256()
    for key in sorted(record.sha256):
        digest.update(f"{key}={record.sha256[key]};".encode())
    return digest.hexdigest()


def read_manifest(directory: Path | str) -> Dataset:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{path} not found: not a bptwin dataset folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path} is not a {FORMAT_NAME} manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(f"{path}: format_version {version!r} not supported (this reads 1)")
    batches = data.get("batches")
    if not isinstance(batches, list):
        raise DatasetError(f"{path}: 'batches' must be a list")
    return Dataset(
        source=str(data.get("source", "")),
        description=str(data.get("description", "")),
        campaign_seed=data.get("campaign_seed"),
        faults=bool(data.get("faults", False)),
        created=str(data.get("created", "")),
        batches=[BatchRecord.from_metadata(entry) for entry in batches],
    )


def read_batch(directory: Path | str, record: BatchRecord, *, verify: bool = True) -> BatchRecord:
    """Load the batch's tables (checking sha256 when ``verify``)."""
    base = Path(directory)
    frames: dict[str, pd.DataFrame] = {}
    for key in ("sensors", "samples"):
        name = record.files.get(key)
        if name is None:
            if key == "samples":
                frames[key] = empty_samples()
                continue
            raise DatasetError(f"batch {record.number}: manifest names no sensors file")
        path = base / name
        if not path.is_file():
            raise DatasetError(f"batch {record.number}: {path} is missing")
        expected = record.sha256.get(key)
        if verify and expected and sha256_of(path) != expected:
            raise DatasetError(f"batch {record.number}: {path} does not match its sha256")
        try:
            frames[key] = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"batch {record.number}: cannot read {path}: {exc}") from exc
    missing = [c for c in TIME_COLUMNS if c not in frames["sensors"].columns]
    if missing:
        raise DatasetError(f"batch {record.number}: sensor table lacks {missing}")
    return replace(record, sensors=frames["sensors"], samples=frames["samples"])


def read_dataset(
    directory: Path | str, *, verify: bool = True, batches: list[int] | None = None
) -> Dataset:
    """Read the manifest and the tables of every (or the chosen) batch."""
    dataset = read_manifest(directory)
    chosen = [r for r in dataset.batches if batches is None or r.number in batches]
    dataset.batches = [read_batch(directory, record, verify=verify) for record in chosen]
    return dataset


# -- importing real lab data ----------------------------------------------------------------
def _load_table(source: Path | str | pd.DataFrame, what: str) -> pd.DataFrame:
    """A DataFrame, a Parquet file, or a delimited text file read as text (layout detected as
    ``bptwin import`` does: candidate delimiters only, header and unit rows found); the text
    cells are read strictly later, by :func:`_convert`. ``attrs`` keep file and line numbers."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"{what} file {path} not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"cannot read {what} file {path}: {exc}") from exc
    from bptwin.twin.lab_import.text_table import TextLayout, read_text_table

    table = read_text_table(path, TextLayout(), path.name)
    frame = table.data.copy()
    frame.attrs["file"] = table.file
    frame.attrs["lines"] = table.lines
    return frame


def _times(
    frame: pd.DataFrame, time_column: str, time_format: str, start_timestamp: float | None
) -> tuple[np.ndarray, float]:
    """Unix seconds of each row and the inoculation instant."""
    if time_column not in frame.columns:
        names = ", ".join(map(str, frame.columns))
        raise DatasetError(f"time column {time_column!r} not in table (columns: {names})")
    raw = frame[time_column]
    elapsed_units = {"elapsed_s": 1.0, "elapsed_min": 60.0, "elapsed_h": 3600.0}
    try:
        if time_format == "iso":
            parsed = pd.to_datetime(raw, utc=True, format="ISO8601")
            unix = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(float)
        elif time_format == "unix_s":
            unix = pd.to_numeric(raw).to_numpy(float)
        elif time_format == "unix_ms":
            unix = pd.to_numeric(raw).to_numpy(float) / 1000.0
        elif time_format in elapsed_units:
            if start_timestamp is None:
                raise DatasetError(f"time format {time_format} needs start_timestamp (inoculation)")
            unix = start_timestamp + pd.to_numeric(raw).to_numpy(float) * elapsed_units[time_format]
        else:
            raise DatasetError(
                f"time format {time_format!r} unknown; use iso, unix_s, unix_ms, "
                "elapsed_s, elapsed_min or elapsed_h"
            )
    except (ValueError, TypeError) as exc:
        raise DatasetError(
            f"time column {time_column!r} cannot be read as {time_format}: {exc}"
        ) from exc
    if np.isnan(unix).any():
        raise DatasetError(f"time column {time_column!r} has empty cells")
    start = float(unix.min()) if start_timestamp is None else float(start_timestamp)
    return unix, start


def _convert(values: pd.Series, column: str, unit: str | None, scale: float | None) -> np.ndarray:
    """The column as numbers, read strictly: a cell that is neither a number nor a missing-value
    token is an error naming it (twin/lab_import/cells.py), never a silent NaN."""
    from bptwin.twin.lab_import.cells import NumberFormat, guess_decimal, parse_numbers

    decimal = "."
    if pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values):
        found, evidence = guess_decimal([values])
        if found is None and evidence.startswith("both"):
            raise DatasetError(f"column {column!r}: cannot tell the decimal separator: {evidence}")
        decimal = found or "."
    lines = values.attrs.get("lines") if hasattr(values, "attrs") else None
    numeric, _ = parse_numbers(
        values,
        NumberFormat(decimal),
        file=str(values.attrs.get("file", "table")),
        column=column,
        lines=lines,
    )
    if unit is not None:
        try:
            numeric = UNIT_CONVERSIONS[unit](numeric)
        except KeyError:
            raise DatasetError(
                f"unit {unit!r} for column {column!r} unknown; known: {', '.join(UNIT_CONVERSIONS)}"
            ) from None
    if scale is not None:
        numeric = numeric * scale
    return numeric


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """One column, carrying the file name and line numbers of a text file for error messages."""
    column = frame[name]
    column.attrs = dict(frame.attrs)
    return column


def import_table(
    source: Path | str | pd.DataFrame,
    column_map: dict[str, str],
    *,
    number: int,
    phase: str = "B",
    role: str = "training",
    variation: str = "real batch",
    time_column: str = "timestamp",
    time_format: str = "iso",
    start_timestamp: float | None = None,
    units: dict[str, str] | None = None,
    scale: dict[str, float] | None = None,
    period_s: float | None = 1.0,
    depletion_time_s: float | None = None,
) -> BatchRecord:
    """A sensor table from the lab as a batch record.

    ``column_map`` maps the table's column names to channel names; ``units`` maps a channel
    to the source unit (a key of ``UNIT_CONVERSIONS``) and ``scale`` to a plain factor.
    ``period_s`` puts rows on a regular grid by averaging (None keeps the rows as they are);
    empty grid cells stay empty (gaps are not filled).
    """
    frame = _load_table(source, "sensor")
    if frame.empty:
        raise DatasetError("sensor table has no rows")
    targets = list(column_map.values())
    doubled = sorted({name for name in targets if targets.count(name) > 1})
    if doubled:
        raise DatasetError(f"column map sends several columns to {doubled}")
    unknown = sorted(set(column_map.values()) - set(CHANNELS_BY_NAME))
    if unknown:
        raise DatasetError(f"column map targets unknown channels {unknown}")
    absent = sorted(set(column_map) - set(frame.columns))
    if absent:
        raise DatasetError(f"column map names columns not in the table: {absent}")
    for channel_name in (*(units or {}), *(scale or {})):
        if channel_name not in column_map.values():
            raise DatasetError(f"unit/scale given for {channel_name!r}, which is not mapped")
    unix, start = _times(frame, time_column, time_format, start_timestamp)
    table = pd.DataFrame({"timestamp": unix})
    for column, channel_name in column_map.items():
        table[channel_name] = _convert(
            _column(frame, column),
            column,
            (units or {}).get(channel_name),
            (scale or {}).get(channel_name),
        )
    table = table.sort_values("timestamp", kind="stable")
    if period_s is not None:
        if period_s <= 0:
            raise DatasetError(f"period_s must be positive, got {period_s}")
        slot = np.floor((table["timestamp"].to_numpy() - start) / period_s).astype(np.int64)
        table = table.drop(columns="timestamp").groupby(slot).mean()
        full = np.arange(slot.min(), slot.max() + 1)
        table = table.reindex(full)
        table.insert(0, "timestamp", start + full * period_s)
        table = table.reset_index(drop=True)
    table.insert(0, "time_s", table["timestamp"] - start)
    ordered = ["time_s", "timestamp", *[c.name for c in CHANNELS if c.name in table.columns]]
    table = table[ordered].reset_index(drop=True)
    return BatchRecord(
        number=number,
        phase=phase,
        role=role,
        variation=variation,
        source="imported",
        start_timestamp=start,
        duration_s=float(table["time_s"].iloc[-1]) if len(table) else 0.0,
        depletion_time_s=depletion_time_s,
        rows=len(table),
        sensors=table,
        samples=empty_samples(),
    )


def import_samples(
    record: BatchRecord,
    source: Path | str | pd.DataFrame,
    column_map: dict[str, str],
    *,
    time_column: str = "timestamp",
    time_format: str = "iso",
) -> BatchRecord:
    """Attach offline samples; ``column_map`` maps table columns to sample fields
    (od600, dcw_g_l, glycerol_g_l, microscopy, kind, planned_h)."""
    frame = _load_table(source, "sample")
    fields = set(SAMPLE_COLUMNS) - {"time_s", "timestamp"}
    unknown = sorted(set(column_map.values()) - fields)
    if unknown:
        raise DatasetError(
            f"sample column map targets unknown fields {unknown}; known {sorted(fields)}"
        )
    absent = sorted(set(column_map) - set(frame.columns))
    if absent:
        raise DatasetError(f"sample column map names columns not in the table: {absent}")
    start = record.start_timestamp
    unix, _ = _times(frame, time_column, time_format, start)
    samples = empty_samples().reindex(range(len(frame)))
    samples["timestamp"] = unix
    samples["time_s"] = unix - start
    for column, name in column_map.items():
        if name in ("microscopy", "kind"):
            samples[name] = frame[column].astype(str).to_numpy()
        else:
            samples[name] = _convert(_column(frame, column), column, None, None)
    samples["kind"] = samples["kind"].fillna("scheduled")
    samples = samples.sort_values("time_s").reset_index(drop=True)
    times = [float(t) for t in samples["time_s"] if not math.isnan(t)]
    return replace(record, samples=samples, sample_times_s=times)
