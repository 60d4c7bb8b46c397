"""The labelled 30 s table: the live feature pipeline's rows plus OD600 labels, per batch.

Features come from :func:`bptwin.twin.features.feature_table` run on the batch's *readings only*
(``BatchRecord.readings()``: time and channel columns, never the simulator's truth), the same
streaming code the live worker runs, so training and serving cannot drift apart.

Labels (``label``):

* ``"samples"`` (default) — the offline OD600 samples, interpolated between each pair of
  samples **along the measured cumulative CO₂** (carbon-guided): biomass formed is
  proportional to CO₂ evolved at a constant yield, so
  OD(t) = OD_i + (OD_i+1 − OD_i) · (C(t) − C_i) / (C_i+1 − C_i), C = cumulative CO₂ from the
  off-gas balance of the same feature table. This follows the real shape of growth, also
  late in the batch when O₂ limitation turns exponential growth linear (where a log-linear
  chord under-estimates by ~5 %). Where the CO₂ rise between two samples is too small to
  guide (< 2 mmol/L, e.g. lag phase or an off-gas outage), the pair is interpolated
  log-linearly in time instead.
* ``"samples-loglinear"`` — plain log-linear interpolation in time (exact for exponential
  growth at constant μ), for comparison.
* Before the first sample and after the last one (the depletion sample, after which biomass
  stops growing) the nearest sample is held. Samples without a positive OD600 are ignored.
* ``"samples-dcw"`` — as ``"samples"``, but with the dry cell weight (g/L) of the samples,
  for a lab without OD600 measurements; the model then predicts dry weight (the label column
  keeps its name, :data:`LABEL_UNITS` says what it holds).
* ``"truth"`` — the simulator's true OD600 (``truth_od600``) at each window end.

Features come with the batch's own process constants (``BatchRecord.process``: liquid volume,
assumed RQ, carbon balance; :func:`bptwin.twin.process_inputs.feature_config_for`), so an
imported fed-batch run is featurised with its real volume.

The truth column is carried along whenever the batch has it, for scoring only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bptwin.twin.dataset import TRUTH_PREFIX, BatchRecord, read_batch, read_manifest

LABELS = ("samples", "samples-loglinear", "samples-dcw", "truth")
# What each label holds: the sample field it interpolates and the unit shown.
LABEL_FIELDS = {"samples": "od600", "samples-loglinear": "od600", "samples-dcw": "dcw_g_l"}
LABEL_UNITS = {
    "samples": "OD600",
    "samples-loglinear": "OD600",
    "samples-dcw": "g DCW/L",
    "truth": "OD600",
}
MIN_GUIDE_CO2_MMOL_L = 2.0
LABEL_COLUMN = "label_od600"
TRUTH_COLUMN = "truth_od600"
TRUTH_DO_COLUMN = "truth_do"
BATCH_COLUMN = "batch"
TIME_COLUMN = "window_end"
LABEL_METHODS = {
    "samples": "offline OD600 samples interpolated along the measured cumulative CO2 "
    "(carbon-guided; log-linear in time where CO2 rises < 2 mmol/L between samples); "
    "nearest sample held before the first and after the last",
    "samples-loglinear": "offline OD600 samples, log-linear interpolation in time to each "
    "window end; nearest sample held before the first and after the last",
    "samples-dcw": "offline dry cell weights (g/L) interpolated along the measured cumulative "
    "CO2 (carbon-guided; log-linear in time where CO2 rises < 2 mmol/L between samples); "
    "nearest sample held before the first and after the last",
    "truth": "simulator truth_od600 at each window end",
}


def label_quantity(label: str) -> str:
    """What a label (or a model trained on it) measures: 'od600' or 'dcw_g_l'."""
    return LABEL_FIELDS.get(label, "od600")


class LabelError(ValueError):
    """A batch that cannot be labelled as asked; the message names the batch."""


def log_linear_interpolation(
    times: np.ndarray, sample_times: np.ndarray, sample_values: np.ndarray
) -> np.ndarray:
    """Interpolate positive values linearly in log space; hold the ends."""
    sample_times = np.asarray(sample_times, dtype=float)
    sample_values = np.asarray(sample_values, dtype=float)
    usable = np.isfinite(sample_times) & np.isfinite(sample_values) & (sample_values > 0)
    if usable.sum() == 0:
        return np.full(np.shape(times), np.nan)
    order = np.argsort(sample_times[usable], kind="stable")
    t = sample_times[usable][order]
    log_v = np.log(sample_values[usable][order])
    return np.asarray(np.exp(np.interp(np.asarray(times, dtype=float), t, log_v)), dtype=float)


def carbon_guided_interpolation(
    times: np.ndarray,
    cumulative_co2: np.ndarray,
    sample_times: np.ndarray,
    sample_values: np.ndarray,
    min_guide: float = MIN_GUIDE_CO2_MMOL_L,
) -> np.ndarray:
    """Interpolate samples along cumulative CO₂ (see the module docstring); log-linear fallback."""
    times = np.asarray(times, dtype=float)
    result = log_linear_interpolation(times, sample_times, sample_values)
    sample_times = np.asarray(sample_times, dtype=float)
    sample_values = np.asarray(sample_values, dtype=float)
    usable = np.isfinite(sample_times) & np.isfinite(sample_values) & (sample_values > 0)
    order = np.argsort(sample_times[usable], kind="stable")
    t, v = sample_times[usable][order], sample_values[usable][order]
    carbon = np.asarray(cumulative_co2, dtype=float)
    known = np.isfinite(carbon)
    if t.size < 2 or known.sum() < 2:
        return result
    # Cumulative CO2 at the sample instants, read off the (monotone) window series.
    carbon_filled = np.maximum.accumulate(np.where(known, carbon, -np.inf))
    carbon_filled[~np.isfinite(carbon_filled)] = np.nan
    have = np.isfinite(carbon_filled)
    at_samples = np.interp(t, times[have], carbon_filled[have])
    for i in range(t.size - 1):
        inside = (times >= t[i]) & (times <= t[i + 1]) & have
        rise = at_samples[i + 1] - at_samples[i]
        if not inside.any() or not rise >= min_guide:
            continue
        fraction = np.clip((carbon_filled[inside] - at_samples[i]) / rise, 0.0, 1.0)
        result[inside] = v[i] + (v[i + 1] - v[i]) * fraction
    return result


def dataset_fingerprint(directory: Path | str) -> str:
    """sha256 of the manifest's content (which holds the sha256 of every batch file) without
    its creation time: the same data gives the same fingerprint, and so the same Optuna study
    name, on every machine that simulates or copies it."""
    import hashlib
    import json

    from bptwin.twin.dataset import MANIFEST_NAME

    manifest = json.loads((Path(directory) / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest.pop("created", None)
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def batch_table(record: BatchRecord, label: str = "samples") -> pd.DataFrame:
    """One row per 30 s window of the batch: features, label, truth (if any), batch number."""
    from bptwin.twin.features import feature_table
    from bptwin.twin.process_inputs import feature_config_for

    if label not in LABELS:
        raise LabelError(f"label must be one of {LABELS}, got {label!r}")
    if record.sensors is None:
        raise LabelError(f"batch {record.number}: sensor table not loaded")
    table = feature_table(record.readings(), feature_config_for(record))
    ends = table["window_end"].to_numpy(float)
    sensors = record.sensors
    truth = None
    if TRUTH_PREFIX + "od600" in sensors.columns:
        stamps = sensors["timestamp"].to_numpy(float)
        truth = np.interp(ends, stamps, sensors[TRUTH_PREFIX + "od600"].to_numpy(float))
        table[TRUTH_COLUMN] = truth
        if TRUTH_PREFIX + "do_pct" in sensors.columns:
            table[TRUTH_DO_COLUMN] = np.interp(
                ends, stamps, sensors[TRUTH_PREFIX + "do_pct"].to_numpy(float)
            )
    else:
        table[TRUTH_COLUMN] = np.nan
    if label == "truth":
        if truth is None:
            raise LabelError(f"batch {record.number} has no simulator truth; use --label samples")
        labels = truth
    else:
        od, stamps = _sample_values(record, LABEL_FIELDS[label])
        if label in ("samples", "samples-dcw"):
            labels = carbon_guided_interpolation(
                ends, table["cum_co2_mmol_per_l"].to_numpy(float), stamps, od
            )
        else:
            labels = log_linear_interpolation(ends, stamps, od)
    table[LABEL_COLUMN] = labels
    table[BATCH_COLUMN] = record.number
    depletion = record.depletion_time_s
    table["depletion_true"] = (
        record.start_timestamp + depletion
        if depletion is not None and math.isfinite(depletion)
        else np.nan
    )
    # The first sample's value of the label's quantity (OD600, or g/L for samples-dcw).
    table["inoculum_od600"] = _first_sample_od(record, LABEL_FIELDS.get(label, "od600"))
    return table


def _sample_values(record: BatchRecord, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, Unix times) of one sample field; LabelError when fewer than 2 are usable."""
    samples = record.samples
    name = "OD600" if field == "od600" else "dry-weight"
    if samples is None or field not in samples.columns:
        raise LabelError(f"batch {record.number} has no offline {name} samples")
    values = pd.to_numeric(samples[field], errors="coerce").to_numpy(float)
    stamps = pd.to_numeric(samples["timestamp"], errors="coerce").to_numpy(float)
    if (np.isfinite(values) & (values > 0) & np.isfinite(stamps)).sum() < 2:
        other, other_name, other_label = (
            ("dcw_g_l", "dry weight", "samples-dcw")
            if field == "od600"
            else ("od600", "OD600", "samples")
        )
        column = samples[other] if other in samples.columns else pd.Series(dtype=float)
        count = int((pd.to_numeric(column, errors="coerce") > 0).sum())
        hint = f"; it has {count} with {other_name}: label with {other_label}" if count >= 2 else ""
        raise LabelError(
            f"batch {record.number} has fewer than 2 usable {name} samples; cannot label it{hint}"
        )
    return values, stamps


def _first_sample_od(record: BatchRecord, field: str = "od600") -> float:
    samples = record.samples
    if samples is None or samples.empty or field not in samples.columns:
        return math.nan
    ordered = samples.sort_values("time_s")
    values = pd.to_numeric(ordered[field], errors="coerce").dropna()
    values = values[values > 0]
    return float(values.iloc[0]) if len(values) else math.nan


def without_channels(record: BatchRecord, channels: Sequence[str]) -> BatchRecord:
    """The batch as if these sensors had reported nothing (lost probe, unplugged analyser)."""
    if record.sensors is None:
        return record
    present = [c for c in channels if c in record.sensors.columns]
    return replace(record, sensors=record.sensors.drop(columns=present))


def _table_job(
    directory: str, number: int, label: str, verify: bool, drop: tuple[str, ...]
) -> pd.DataFrame:
    manifest = read_manifest(directory)
    record = read_batch(directory, manifest.batch(number), verify=verify)
    return batch_table(without_channels(record, drop) if drop else record, label)


def dataset_table(
    directory: Path | str,
    batches: Sequence[int],
    label: str = "samples",
    *,
    jobs: int | None = None,
    verify: bool = True,
    drop_channels: Sequence[str] = (),
    progress: Callable[[int, int, int], None] | None = None,
) -> pd.DataFrame:
    """The labelled table of the chosen batches of a dataset folder (batches in order).

    ``drop_channels`` removes sensor channels before the features are computed, exactly as
    the live pipeline sees a sensor that reports nothing.
    """
    from bptwin.database.channels import CHANNELS_BY_NAME

    drop = tuple(drop_channels)
    unknown_channels = [c for c in drop if c not in CHANNELS_BY_NAME]
    if unknown_channels:
        raise LabelError(
            f"unknown channel(s) {unknown_channels}; known: {', '.join(CHANNELS_BY_NAME)}"
        )
    manifest = read_manifest(directory)
    known = {record.number for record in manifest.batches}
    unknown = sorted(set(batches) - known)
    if unknown:
        raise LabelError(f"dataset {directory} has no batch {unknown} (it has {sorted(known)})")
    numbers = sorted(set(batches))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(numbers) or 1))
    tables: list[pd.DataFrame] = []
    if jobs == 1:
        for done, number in enumerate(numbers, start=1):
            tables.append(_table_job(str(directory), number, label, verify, drop))
            if progress:
                progress(done, len(numbers), number)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(_table_job, str(directory), number, label, verify, drop)
                for number in numbers
            ]
            for done, (number, future) in enumerate(zip(numbers, futures, strict=True), start=1):
                tables.append(future.result())
                if progress:
                    progress(done, len(numbers), number)
    if not tables:
        raise LabelError("no batches chosen")
    return pd.concat(tables, ignore_index=True)
