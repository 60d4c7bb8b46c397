"""``bptwin import``: a lab's exports and an import map in, a bptwin dataset folder out.

Per batch: read every export (text or Parquet) strictly, convert its columns to channels,
merge them on time since inoculation, attach the offline samples, record the process constants
and where everything came from, and say what is missing for the model. Nothing is written when
any batch fails: a dataset is imported whole or not at all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.twin.dataset import (
    MANIFEST_NAME,
    BatchRecord,
    Dataset,
    DatasetError,
    empty_samples,
    write_dataset,
)
from bptwin.twin.lab_import.clock import parse_stated_time, time_zone
from bptwin.twin.lab_import.column_map import BatchSpec, ImportMap, load_map
from bptwin.twin.lab_import.samples import read_samples
from bptwin.twin.lab_import.sensors import (
    FileReadings,
    Findings,
    first_reading,
    merge_on_grid,
    read_sensor_file,
    utc_text,
)

# What the twin loses without each channel (the channels the features and the model read).
CONSEQUENCES: dict[str, str] = {
    "offgas_co2": "no CER: no growth rate from the off-gas, no carbon balance, no "
    "carbon-guided labels",
    "offgas_o2": "no OUR, RQ or kLa; CER comes from CO₂ alone with an assumed RQ "
    "([process] assumed_rq) and is marked uncertain",
    "air_flow": "no off-gas balance at all (OUR and CER need the inlet flow)",
    "do": "no DO trend, no depletion from the DO spike, no DO forecast",
    "od_probe": "the model's strongest input is missing: expect a larger OD600 error",
    "o2_flow": "taken as 0 (no O₂ enrichment); if the DO cascade used O₂, OUR is wrong",
    "base_total": "no base rate; the liquid volume cannot follow the base added",
    "feed_total": "the liquid volume cannot follow a feed (right for a batch without feed)",
}


def needed_channels() -> tuple[str, ...]:
    """The channels the feature pipeline and the model read, in catalogue order."""
    from bptwin.twin.features import MODEL_CHANNELS

    wanted = set(MODEL_CHANNELS) | {"offgas_co2", "offgas_o2", "air_flow"}
    return tuple(name for name in CHANNELS_BY_NAME if name in wanted)


@dataclass
class BatchImport:
    record: BatchRecord
    findings: Findings


@dataclass
class ImportResult:
    directory: Path
    batches: list[BatchImport]
    seconds: float
    findings: Findings = field(default_factory=Findings)

    @property
    def warnings(self) -> list[str]:
        return [w for b in self.batches for w in b.findings.warnings] + self.findings.warnings


def _stated(text: str | None, import_map: ImportMap, key: str) -> float | None:
    if text is None:
        return None
    return parse_stated_time(text, import_map.time_format, time_zone(import_map.timezone), key)


def _is_elapsed(import_map: ImportMap, time_format: str | None) -> bool:
    return (time_format or import_map.time_format).startswith("elapsed")


def import_batch(import_map: ImportMap, batch: BatchSpec) -> BatchImport:
    """One batch of the map as a BatchRecord (not yet written)."""
    found = Findings()
    inoculation = _stated(batch.inoculation, import_map, f"batch {batch.number} inoculation")
    files: list[FileReadings] = []
    ordered = sorted(
        import_map.files.items(), key=lambda item: _is_elapsed(import_map, item[1].time.format)
    )
    for name, spec in ordered:
        if inoculation is None and _is_elapsed(import_map, spec.time.format) and files:
            inoculation = first_reading(files)
            found.warnings.append(
                f"batch {batch.number}: no inoculation time stated; taken as the first "
                f"reading, {utc_text(inoculation)}"
            )
        readings, file_found = read_sensor_file(import_map, name, spec, batch, inoculation)
        found.extend(file_found)
        if readings is not None:
            files.append(readings)
    if not files:
        raise DatasetError(f"batch {batch.number}: none of its files is present")
    if inoculation is None:
        inoculation = first_reading(files)
        found.warnings.append(
            f"batch {batch.number}: no inoculation time stated; taken as the first reading, "
            f"{utc_text(inoculation)}"
        )
    sensors, before = merge_on_grid(files, inoculation)
    if before:
        found.notes.append(f"batch {batch.number}: {before} reading(s) before inoculation left out")
    depletion_s = _depletion(batch, import_map, inoculation)
    samples = empty_samples()
    if import_map.samples is not None:
        samples, sample_found = read_samples(
            import_map, import_map.samples, batch, inoculation, depletion_s
        )
        found.extend(sample_found)
    else:
        found.warnings.append(f"batch {batch.number}: no samples in the map: no labels")
    for name in needed_channels():
        if name not in sensors.columns:
            consequence = CONSEQUENCES.get(name, "the model sees this input as missing")
            found.warnings.append(f"batch {batch.number}: no {name} channel: {consequence}")
    process = batch.process.over(import_map.process).as_dict()
    process = _volume_defaults(process, sensors.columns, samples, found, batch)
    process = _hold_for_cadence(process, files, found, batch)
    record = BatchRecord(
        number=batch.number,
        phase=batch.phase,
        role=batch.role,
        variation=batch.variation,
        source="imported",
        start_timestamp=inoculation,
        duration_s=float(sensors["time_s"].iloc[-1]),
        depletion_time_s=depletion_s,
        sample_times_s=[float(t) for t in samples["time_s"]],
        rows=len(sensors),
        sensors=sensors,
        samples=samples,
        process=process,
        provenance={
            "files": {f.name: f.provenance for f in files},
            "notes": list(found.notes),
            "warnings": list(found.warnings),
            "bad_cells": len(found.bad_cells),
        },
    )
    return BatchImport(record, found)


def _depletion(batch: BatchSpec, import_map: ImportMap, inoculation: float) -> float | None:
    if batch.depletion_h is not None:
        return batch.depletion_h * 3600.0
    stated = _stated(batch.depletion, import_map, f"batch {batch.number} depletion")
    if stated is None:
        return None
    if stated < inoculation:
        raise DatasetError(
            f"batch {batch.number}: depletion {batch.depletion} is before inoculation"
        )
    return stated - inoculation


def _volume_defaults(
    process: dict[str, Any],
    columns: Any,
    samples: Any,
    found: Findings,
    batch: BatchSpec,
) -> dict[str, Any]:
    """A stated initial volume follows what the batch recorded (feed, base, samples)."""
    if "initial_volume_l" not in process:
        if "feed_total" in columns:
            found.warnings.append(
                f"batch {batch.number}: a feed is recorded but no initial_volume_l is given: "
                "rates per litre assume a fixed 1 L"
            )
        return process
    if "volume_follows" not in process:
        follows = [
            what
            for what, present in (
                ("feed", "feed_total" in columns),
                ("base", "base_total" in columns),
                ("samples", len(samples) > 0 and process.get("sample_volume_ml", 0) > 0),
            )
            if present
        ]
        process["volume_follows"] = follows
    found.notes.append(
        f"batch {batch.number}: liquid volume {process['initial_volume_l']:g} L at "
        f"inoculation, following {', '.join(process['volume_follows']) or 'nothing (fixed)'}"
    )
    return process


def _hold_for_cadence(
    process: dict[str, Any], files: list[FileReadings], found: Findings, batch: BatchSpec
) -> dict[str, Any]:
    """A channel logged every 5 min must not look like a sensor gap between its readings:
    the features hold a value for 1.5 cadences of the slowest file (at least 5 min)."""
    from bptwin.twin.cleaning import SHORT_GAP_S

    cadences = [f.provenance["period_s"] for f in files if math.isfinite(f.provenance["period_s"])]
    if "short_gap_s" in process or not cadences:
        return process
    slowest = max(cadences)
    if slowest * 1.2 <= SHORT_GAP_S:
        return process
    process["short_gap_s"] = float(math.ceil(1.5 * slowest))
    found.notes.append(
        f"batch {batch.number}: the slowest file logs every {slowest:g} s: the features hold "
        f"each value up to {process['short_gap_s']:g} s before calling it a gap"
    )
    return process


def import_lab(
    map_path: Path | str,
    out_dir: Path | str,
    *,
    batches: list[int] | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Import every (or the chosen) batch of the map into ``out_dir`` (a dataset folder)."""
    started = time.perf_counter()
    import_map = load_map(map_path)
    out = Path(out_dir)
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset; choose another folder or --overwrite")
    chosen = [b for b in import_map.batches if batches is None or b.number in batches]
    unknown = sorted(set(batches or []) - {b.number for b in import_map.batches})
    if unknown:
        raise DatasetError(f"the import map has no batch {unknown}")
    imported: list[BatchImport] = []
    for batch in chosen:
        try:
            imported.append(import_batch(import_map, batch))
        except DatasetError as exc:
            raise DatasetError(f"batch {batch.number}: {exc}") from exc
    dataset = Dataset(
        source="imported",
        description=import_map.description or f"imported with {Path(map_path).name}",
        campaign_seed=None,
        faults=False,
        batches=[item.record for item in imported],
    )
    write_dataset(out, dataset)
    return ImportResult(out, imported, time.perf_counter() - started)
