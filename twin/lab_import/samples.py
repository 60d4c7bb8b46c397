"""Offline samples of a lab export: times, OD600 and/or dry weight, kinds and SOP time points.

A sample is ``scheduled`` when it stands for an SOP time point (the nearest one within the
tolerance, or as the lab's kind column says), ``depletion`` when it is the first sample after
the recorded depletion, ``extra`` otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bptwin.twin.dataset import SAMPLE_COLUMNS, DatasetError, empty_samples
from bptwin.twin.lab_import.column_map import (
    SAMPLE_KINDS,
    SAMPLE_TEXT_FIELDS,
    BatchSpec,
    ImportMap,
    SamplesSpec,
)
from bptwin.twin.lab_import.sensors import Findings, display_name, read_table, read_times

DEPLETION_SAMPLE_WITHIN_S = 2 * 3600.0  # the depletion sample follows depletion within 2 h


def read_samples(
    import_map: ImportMap,
    spec: SamplesSpec,
    batch: BatchSpec,
    inoculation: float,
    depletion_time_s: float | None,
) -> tuple[pd.DataFrame, Findings]:
    found = Findings()
    path = import_map.resolve(spec.path, batch)
    display = display_name(path, import_map.base_dir)
    if not path.is_file() and not spec.required:
        found.warnings.append(f"batch {batch.number}: samples file {display} absent: no labels")
        return empty_samples(), found
    layout = import_map.file_layout(spec)
    table = read_table(path, layout, display)
    numeric = [c for c, t in spec.columns.items() if t.field not in SAMPLE_TEXT_FIELDS]
    for column in [*spec.columns, *spec.time.columns]:
        table.column(column)
    if spec.batch_column is not None:
        key = batch.samples_key or str(batch.number)
        mine = np.asarray(table.column(spec.batch_column).astype(str).str.strip() == key)
        if not mine.any():
            found.warnings.append(
                f"batch {batch.number}: no row of {display} has {spec.batch_column!r} = {key!r}"
            )
            return empty_samples(), found
        table.data = table.data[mine].reset_index(drop=True)
        table.lines = table.lines[mine]
    if len(table) == 0:
        found.warnings.append(f"batch {batch.number}: {display} holds no samples")
        return empty_samples(), found
    times = read_times(table, spec.time, import_map, _start(spec, import_map, inoculation), numeric)
    samples = empty_samples().reindex(range(len(table)))
    samples["timestamp"] = times
    samples["time_s"] = times - inoculation
    on_bad = layout.on_bad_cell or "error"
    for column, target in spec.columns.items():
        if target.field in SAMPLE_TEXT_FIELDS:
            samples[target.field] = table.column(column).astype(str).str.strip().to_numpy()
            continue
        values, bad = table.numbers(column, numeric, on_bad)
        if bad:
            found.bad_cells += bad
            found.warnings.append(
                f"{display}: {len(bad)} sample cell(s) of {column!r} are not numbers and were "
                f"left empty; first: line {bad[0].line} {bad[0].text!r}"
            )
        samples[target.field] = values * target.factor + target.offset
    found.notes = table.notes + found.notes
    early = samples["time_s"] < -spec.sop_tolerance_min * 60.0
    if early.any():
        found.notes.append(
            f"batch {batch.number}: {int(early.sum())} sample(s) taken before inoculation left out"
        )
        samples = samples[~early]
    samples = samples.sort_values("time_s", kind="stable").reset_index(drop=True)
    samples = _kinds(samples, spec, batch, depletion_time_s, found)
    _describe(samples, spec, batch, found)
    return samples[list(SAMPLE_COLUMNS)], found


def _start(spec: SamplesSpec, import_map: ImportMap, inoculation: float) -> float | None:
    time_format = spec.time.format or import_map.time_format
    if not time_format.startswith("elapsed"):
        return None
    if spec.time.start != "inoculation":
        raise DatasetError("samples: elapsed sample times count from inoculation (start)")
    return inoculation


def _kinds(
    samples: pd.DataFrame,
    spec: SamplesSpec,
    batch: BatchSpec,
    depletion_time_s: float | None,
    found: Findings,
) -> pd.DataFrame:
    mapped_kind = any(t.field == "kind" for t in spec.columns.values())
    if mapped_kind:
        # An empty kind cell says nothing: such a sample is placed by its time (below).
        words = samples["kind"].fillna("").astype(str).str.strip()
        known = {k.strip(): v for k, v in spec.kinds.items()}
        unknown = sorted(set(words) - set(known) - {"", *SAMPLE_KINDS})
        if unknown:
            raise DatasetError(
                f"samples of batch {batch.number}: kind {unknown} unknown; say what each "
                'means in [samples.kinds], e.g. "Endprobe" = "depletion"'
            )
        samples["kind"] = [known.get(word, word) or None for word in words]
    has_planned = any(t.field == "planned_h" for t in spec.columns.values())
    if not has_planned:
        samples["planned_h"] = _sop_points(
            samples["time_s"].to_numpy(float), spec.sop_hours, spec.sop_tolerance_min * 60.0
        )
        if mapped_kind:  # the lab's own word wins: a depletion or extra sample has no point
            said = samples["kind"].notna() & (samples["kind"] != "scheduled")
            samples.loc[said, "planned_h"] = np.nan
    automatic = np.where(samples["planned_h"].notna(), "scheduled", "extra").astype(object)
    stated = samples["kind"].to_numpy(object) if mapped_kind else np.full(len(samples), None)
    kinds = np.where(pd.isna(stated), automatic, stated).astype(object)
    if not (kinds == "depletion").any() and depletion_time_s is not None:
        times = samples["time_s"].to_numpy(float)
        window = (times >= depletion_time_s) & (
            times <= depletion_time_s + DEPLETION_SAMPLE_WITHIN_S
        )
        after = np.flatnonzero(window & (kinds != "scheduled"))
        if after.size:
            kinds[after[0]] = "depletion"
    samples["kind"] = kinds
    return samples


def _sop_points(times_s: np.ndarray, sop_hours: list[float], tolerance_s: float) -> np.ndarray:
    """Each SOP time point goes to the nearest sample within the tolerance (at most one)."""
    planned = np.full(times_s.size, np.nan)
    for hour in sop_hours:
        distance = np.abs(times_s - hour * 3600.0)
        distance[~np.isnan(planned)] = np.inf
        if distance.size and float(distance.min()) <= tolerance_s:
            planned[int(np.argmin(distance))] = hour
    return planned


def _describe(samples: pd.DataFrame, spec: SamplesSpec, batch: BatchSpec, found: Findings) -> None:
    od = np.isfinite(samples["od600"].to_numpy(float)).sum()
    dcw = np.isfinite(samples["dcw_g_l"].to_numpy(float)).sum()
    scheduled = int((samples["kind"] == "scheduled").sum())
    found.notes.append(
        f"batch {batch.number}: {len(samples)} samples ({scheduled} at SOP time points), "
        f"{od} with OD600, {dcw} with dry weight"
    )
    if od < 2 and dcw >= 2:
        found.notes.append(
            f"batch {batch.number}: no OD600 but dry weights: label it with 'samples-dcw' "
            "(bptwin train --label samples-dcw)"
        )
    elif od < 2 and dcw < 2:
        found.warnings.append(
            f"batch {batch.number}: fewer than 2 samples with OD600 or dry weight: it cannot be "
            "labelled for training or validation"
        )
    covered = set(samples["planned_h"].dropna())
    missed = [hour for hour in spec.sop_hours if hour not in covered]
    if missed:
        found.notes.append(f"batch {batch.number}: no sample for SOP time point(s) {missed} h")
