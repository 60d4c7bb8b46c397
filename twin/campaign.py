"""The 18-batch campaign of ``docs/process.md`` as simulated batches written to a dataset folder.

A: 1–3 shake-down (1 uncontrolled: fixed 500 rpm, no pH control); B: 4–15 training with
planned variation; C: 16–18 nominal hold-out. Each batch gets its own seed derived from the
campaign seed, so one batch can be regenerated alone and comes out identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bptwin.twin.dataset import (
    MANIFEST_NAME,
    BatchRecord,
    Dataset,
    DatasetError,
    read_manifest,
    write_batch,
    write_manifest,
)
from bptwin.twin.sim_config import Disturbance, FaultParameters, SimulationConfig
from bptwin.twin.sim_profiles import HOME, profile_config
from bptwin.twin.simulator import simulate_batch

CAMPAIGN_SIZE = 18
CAMPAIGN_START = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
DAYS_BETWEEN_BATCHES = 2


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What one campaign batch is meant to be."""

    number: int
    phase: str  # "A", "B" or "C"
    role: str  # "shakedown", "training" or "holdout"
    variation: str  # human-readable planned variation ("nominal", ...)
    config: SimulationConfig


def _plan(number: int, base: SimulationConfig) -> BatchPlan:
    control, reactor = base.control, base.reactor
    if number == 1:
        config = replace(base, control=replace(control, controlled=False))
        return BatchPlan(number, "A", "shakedown", "uncontrolled: fixed 500 rpm, pH drifts", config)
    if number <= 3:
        return BatchPlan(number, "A", "shakedown", "nominal", base)
    if number >= 16:
        return BatchPlan(number, "C", "holdout", "nominal", base)
    variations: dict[int, tuple[str, SimulationConfig]] = {
        7: ("temperature 29 °C", replace(base, control=replace(control, temp_setpoint_c=29.0))),
        8: ("temperature 30 °C", base),
        9: ("temperature 31 °C", replace(base, control=replace(control, temp_setpoint_c=31.0))),
        10: ("inoculum OD 2.5", replace(base, reactor=replace(reactor, inoculum_od600=2.5))),
        11: ("inoculum OD 4.0", replace(base, reactor=replace(reactor, inoculum_od600=4.0))),
        12: ("inoculum OD 6.0", replace(base, reactor=replace(reactor, inoculum_od600=6.0))),
        13: (
            "temperature spike to 32 °C for 30 min at 8 h",
            replace(base, disturbances=(Disturbance("temp_setpoint", 8.0, 0.5, 32.0),)),
        ),
        14: (
            "stirrer step 500 → 400 rpm at 6 h for 1 h",
            replace(base, disturbances=(Disturbance("stirrer_fixed", 6.0, 1.0, 400.0),)),
        ),
        15: ("start at pH 5.3", replace(base, control=replace(control, ph_start=5.3))),
    }
    variation, config = variations.get(number, ("nominal", base))
    return BatchPlan(number, "B", "training", variation, config)


def campaign_plan(base: SimulationConfig | None = None, *, faults: bool = False) -> list[BatchPlan]:
    """All 18 batches with their configuration (``faults`` switches sensor faults on)."""
    base = base or SimulationConfig()
    if faults:
        base = replace(base, faults=replace(base.faults, enabled=True))
    else:
        base = replace(base, faults=FaultParameters(enabled=False))
    return [_plan(number, base) for number in range(1, CAMPAIGN_SIZE + 1)]


def batch_seed(campaign_seed: int, number: int) -> int:
    """The batch's own seed, stable for a campaign seed and batch number."""
    return int(np.random.SeedSequence([campaign_seed, number]).generate_state(1)[0])


def batch_start(number: int) -> datetime:
    """Inoculation time of a campaign batch (one batch every two days from 2026-01-05)."""
    return CAMPAIGN_START + timedelta(days=DAYS_BETWEEN_BATCHES * (number - 1))


def simulate_campaign_batch(
    number: int,
    seed: int,
    *,
    faults: bool = False,
    base: SimulationConfig | None = None,
    hours: float | None = None,
) -> BatchRecord:
    """Simulate campaign batch ``number`` (1–18) as a dataset record.

    ``hours`` cuts the batch short (quick looks, tests); None runs to depletion + 1.5 h.
    """
    if not 1 <= number <= CAMPAIGN_SIZE:
        raise ValueError(f"batch must be 1–{CAMPAIGN_SIZE}, got {number}")
    plan = campaign_plan(base, faults=faults)[number - 1]
    own_seed = batch_seed(seed, number)
    start = batch_start(number)
    result = simulate_batch(plan.config, own_seed, start_timestamp=start.timestamp(), hours=hours)
    return BatchRecord.from_simulation(
        result,
        number=plan.number,
        phase=plan.phase,
        role=plan.role,
        variation=plan.variation,
        campaign_seed=seed,
    )


def generate_campaign(
    out_dir: Path | str,
    seed: int,
    *,
    faults: bool = False,
    batches: list[int] | None = None,
    base: SimulationConfig | None = None,
    hours: float | None = None,
    progress: Callable[[int, int, BatchRecord], None] | None = None,
    workers: int | None = None,
    profile: str = HOME,
) -> Dataset:
    """Write the campaign (or the chosen ``batches``) to ``out_dir``; returns the manifest.

    ``profile`` names the reactor/strain (``twin/sim_profiles.py``) when ``base`` is None.

    Batches already in ``out_dir`` from the same seed and fault setting stay listed.
    ``workers`` processes simulate batches in parallel (default: one per CPU, at most 4);
    every batch has its own seed, so the result does not depend on it.
    """
    out = Path(out_dir)
    if base is None and profile != HOME:
        base = profile_config(profile)
    numbers = list(range(1, CAMPAIGN_SIZE + 1)) if batches is None else sorted(set(batches))
    for number in numbers:
        if not 1 <= number <= CAMPAIGN_SIZE:
            raise ValueError(f"batch must be 1–{CAMPAIGN_SIZE}, got {number}")
    out.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(
        source="simulated",
        description=f"bptwin simulated campaign, seed {seed}, faults {'on' if faults else 'off'}"
        + ("" if profile == HOME else f", profile {profile}"),
        campaign_seed=seed,
        faults=faults,
    )
    if (out / MANIFEST_NAME).is_file():
        # Regenerating some batches into an existing folder keeps the others listed.
        try:
            previous = read_manifest(out)
        except DatasetError:
            previous = None
        # Same seed, faults and profile (all in the description): keep the other batches.
        if previous is not None and previous.description == dataset.description:
            dataset.batches = [r for r in previous.batches if r.number not in numbers]
    jobs = [(out, number, seed, faults, base, hours) for number in numbers]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        results = map(_simulate_and_write, jobs)
        for done, record in enumerate(results, start=1):
            dataset.batches.append(record)
            if progress is not None:
                progress(done, len(numbers), record)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done, record in enumerate(pool.map(_simulate_and_write, jobs), start=1):
                dataset.batches.append(record)
                if progress is not None:
                    progress(done, len(numbers), record)
    write_manifest(out, dataset)
    return dataset


def _simulate_and_write(
    job: tuple[Path, int, int, bool, SimulationConfig | None, float | None],
) -> BatchRecord:
    """One batch simulated and written (runs in a worker process); metadata returned."""
    out, number, seed, faults, base, hours = job
    record = simulate_campaign_batch(number, seed, faults=faults, base=base, hours=hours)
    write_batch(out, record)
    return record.without_data()
