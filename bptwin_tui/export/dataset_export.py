"""The batch as a dataset folder in the documented format (docs/dataset.md, docs/export.md).

``bptwin.twin.dataset`` writes the two files every reader knows (1 Hz sensors, samples) and the
manifest; the export adds two more Parquet files per batch, named in the manifest's ``files``
with their sha256 like the others:

* ``batch_NN_windows.parquet``: the 30 s windows (``<channel>_mean/_min/_max/_last/_count``)
  and the derived series the station stored for each window (``our``, ``cer``, ``rq``...);
* ``batch_NN_predictions.parquet``: the model's OD600 nowcast with its band and the
  forecast depletion time, one row per window.

Readers that only know version 1 still read the folder: they ignore the extra file keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.tui.export.collect import BatchData, ExportError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from bptwin.eln.models import Sample
    from bptwin.twin.dataset import BatchRecord

EXTRA_FILES = ("windows", "predictions")
RECORDED_SOURCE = "recorded"
ROLE_OF_PHASE = {"A": "shakedown", "B": "training", "C": "holdout"}


@dataclass
class ExportedBatch:
    """A batch read back from an export: the dataset record plus windows and predictions."""

    record: BatchRecord
    windows: pd.DataFrame
    predictions: pd.DataFrame


def samples_table(data: BatchData) -> pd.DataFrame:
    """The notebook's samples in the dataset's samples columns (time since inoculation)."""
    import pandas as pd

    from bptwin.twin.dataset import SAMPLE_COLUMNS, empty_samples

    samples = data.notebook.samples
    if not samples:
        return empty_samples()
    start = data.series.start
    rows = []
    kinds = sample_kinds(samples, data.notebook.batch.inoculated_at, depletion_moment(data))
    for sample, kind in zip(samples, kinds, strict=True):
        taken = sample.taken_at.timestamp()
        rows.append(
            {
                "time_s": taken - start,
                "timestamp": taken,
                "kind": kind,
                "planned_h": sample.sop_timepoint_h,
                "od600": sample.od600,
                "dcw_g_l": sample.dcw_g_per_l,
                "glycerol_g_l": sample.glycerol_g_per_l,
                "microscopy": _microscopy(sample.microscopy_clean, sample.microscopy_text),
            }
        )
    table = pd.DataFrame(rows, columns=list(SAMPLE_COLUMNS))
    floats = [c for c in SAMPLE_COLUMNS if c not in ("kind", "microscopy")]
    return table.astype({name: "float64" for name in floats})


def sample_kinds(
    samples: Sequence[Sample],
    inoculated_at: datetime | None = None,
    depleted_at: datetime | None = None,
) -> list[str]:
    """``scheduled`` (entered for an SOP time point), ``depletion`` (the unscheduled sample the
    SOP schedule gives the depletion slot: taken at or after the depletion the data shows) or
    ``extra`` (any other unscheduled sample), in the samples' order.

    Without a known depletion no sample is the depletion sample: an extra sample entered late
    is not promoted to one because it happens to be the last.
    """
    from bptwin.eln.schedule import sample_schedule

    depletion_ids: set[int] = set()
    if inoculated_at is not None and depleted_at is not None:
        ended = max((s.taken_at for s in samples), default=inoculated_at)
        slots = sample_schedule(
            inoculated_at, samples, ended, depleted_at=depleted_at, ended_at=None
        )
        depletion_ids = {
            slot.sample_id
            for slot in slots
            if slot.timepoint_h is None and slot.sample_id is not None
        }
    return [
        "scheduled"
        if s.sop_timepoint_h is not None
        else ("depletion" if s.id is not None and s.id in depletion_ids else "extra")
        for s in samples
    ]


def depletion_moment(data: BatchData) -> datetime | None:
    """When glycerol ran out: the DO spike in the batch's data, else the closure record's time."""
    hours = None
    if data.series.depletion_s is not None:
        hours = data.series.depletion_s / 3600.0
    elif data.notebook.closure is not None:
        closure = data.notebook.closure
        hours = closure.depletion_time_h if closure.depletion_time_h is not None else None
        if hours is None:
            hours = closure.do_spike_time_h
    if hours is None or not math.isfinite(hours):
        return None
    return datetime.fromtimestamp(data.series.start + hours * 3600.0, tz=timezone.utc)


def _microscopy(clean: bool | None, text: str) -> str:
    if clean:
        return "clean" if not text else f"clean: {text}"
    if clean is None:
        return text or "not recorded"
    return text or "not clean"


def batch_record(data: BatchData) -> BatchRecord:
    """The dataset record of the batch (metadata + sensors + samples)."""
    from bptwin.twin.dataset import BatchRecord

    batch = data.notebook.batch
    phase = str(getattr(batch.phase, "value", batch.phase))
    samples = samples_table(data)
    closure = data.notebook.closure
    depletion = None
    if closure is not None and closure.depletion_time_h is not None:
        depletion = closure.depletion_time_h * 3600.0
    variation = batch.notes.strip().splitlines()[0] if batch.notes.strip() else "recorded batch"
    return BatchRecord(
        number=batch.number,
        phase=phase,
        role=ROLE_OF_PHASE.get(phase, "training"),
        variation=variation,
        source=RECORDED_SOURCE,
        start_timestamp=data.series.start,
        duration_s=float(data.series.readings["time_s"].iloc[-1]),
        depletion_time_s=depletion,
        sample_times_s=[float(t) for t in samples["time_s"]],
        rows=len(data.series.readings),
        sensors=data.series.readings,
        samples=samples,
    )


def write_dataset_folder(directory: Path, data: BatchData) -> list[Path]:
    """Write the batch's dataset into ``directory``; returns the files written."""
    from bptwin.twin.dataset import Dataset, sha256_of, write_batch, write_manifest

    directory.mkdir(parents=True, exist_ok=True)
    record = write_batch(directory, batch_record(data))
    tables = {"windows": data.series.windows, "predictions": data.series.predictions}
    for key, table in tables.items():
        name = f"{record.stem}_{key}.parquet"
        table.to_parquet(directory / name, index=False, compression="zstd")
        record.files[key] = name
        record.sha256[key] = sha256_of(directory / name)
    batch = data.notebook.batch
    dataset = Dataset(
        source=RECORDED_SOURCE,
        description=(
            f"bptwin export of batch {batch.number} ({batch.strain or 'strain not recorded'}, "
            f"reactor {data.notebook.reactor}, store {data.store_name})"
        ),
        campaign_seed=None,
        faults=False,
        created=data.collected_at.isoformat(),
        batches=[record.without_data()],
    )
    manifest = write_manifest(directory, dataset)
    return [*(directory / name for name in record.files.values()), manifest]


def read_exported_batch(directory: Path | str, number: int | None = None) -> ExportedBatch:
    """Read an exported batch back, every file checked against its sha256."""
    import pandas as pd

    from bptwin.twin.dataset import DatasetError, read_batch, read_manifest, sha256_of

    folder = Path(directory)
    try:
        dataset = read_manifest(folder)
    except DatasetError as exc:
        raise ExportError(str(exc)) from exc
    if not dataset.batches:
        raise ExportError(f"{folder}: the manifest lists no batch")
    entry = dataset.batches[0] if number is None else _entry(dataset.batches, number, folder)
    try:
        record = read_batch(folder, entry)
    except DatasetError as exc:
        raise ExportError(str(exc)) from exc
    extra: dict[str, pd.DataFrame] = {}
    for key in EXTRA_FILES:
        name = entry.files.get(key)
        if name is None:
            extra[key] = pd.DataFrame()
            continue
        path = folder / name
        if not path.is_file():
            raise ExportError(f"batch {entry.number}: {path} is missing")
        if sha256_of(path) != entry.sha256.get(key):
            raise ExportError(f"batch {entry.number}: {path} does not match its sha256")
        extra[key] = pd.read_parquet(path)
    return ExportedBatch(
        record=replace(record), windows=extra["windows"], predictions=extra["predictions"]
    )


def _entry(batches: list[BatchRecord], number: int, folder: Path) -> BatchRecord:
    for entry in batches:
        if entry.number == number:
            return entry
    raise ExportError(f"{folder}: no batch {number} in the manifest")
