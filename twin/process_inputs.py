"""A batch's process constants as the feature pipeline's configuration.

One function for both places the constants come from: the dataset record of an imported batch
(``BatchRecord.process``, written by ``bptwin import``) for training, validation and replay
features, and the station's ``[process]`` and ``[volume]`` settings for live batches. Keys
(all optional; a missing key keeps the pipeline's default, so a simulated campaign is
unchanged): ``initial_volume_l``, ``volume_follows`` (feed, base, samples),
``sample_volume_ml``, ``evaporation_ml_per_h``, ``assumed_rq``, ``initial_biomass_g_l``,
``yield_x_per_co2_g_per_mmol``, ``carbon_balance`` ("constants" or "fit"), ``glycerol_g_l``,
``short_gap_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bptwin.twin.carbon_balance import CarbonBalancePlan, samples_with_dry_weight
from bptwin.twin.features import FeatureConfig
from bptwin.twin.volume import VolumePlan

if TYPE_CHECKING:
    from bptwin.twin.dataset import BatchRecord

KNOWN_KEYS = frozenset(
    {
        "initial_volume_l",
        "volume_follows",
        "sample_volume_ml",
        "evaporation_ml_per_h",
        "assumed_rq",
        "initial_biomass_g_l",
        "yield_x_per_co2_g_per_mmol",
        "carbon_balance",
        "glycerol_g_l",
        "short_gap_s",
    }
)


def feature_config(
    process: Mapping[str, Any],
    base: FeatureConfig | None = None,
    *,
    sample_times: Iterable[float] = (),
    dry_weights: Iterable[tuple[float, float]] = (),
) -> FeatureConfig:
    """``base`` (default: the pipeline's defaults) with the batch's constants applied.

    ``sample_times`` (Unix s) let the volume lose each sample; ``dry_weights`` ((Unix s, g/L))
    feed a carbon-balance fit. Both are used causally by the pipeline (a sample counts from
    the window it was taken in), so a whole batch's samples may be handed over at once.
    """
    unknown = sorted(set(process) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"unknown process constants {unknown}; known: {sorted(KNOWN_KEYS)}")
    config = base or FeatureConfig()
    changes: dict[str, Any] = {}
    if "assumed_rq" in process:
        changes["assumed_rq"] = float(process["assumed_rq"])
    if "glycerol_g_l" in process:
        changes["glycerol_g_per_l"] = float(process["glycerol_g_l"])
    if "short_gap_s" in process:
        changes["short_gap_s"] = float(process["short_gap_s"])
    if "initial_biomass_g_l" in process:
        changes["initial_biomass_g_per_l"] = float(process["initial_biomass_g_l"])
    if "yield_x_per_co2_g_per_mmol" in process:
        changes["yield_x_per_co2_g_per_mmol"] = float(process["yield_x_per_co2_g_per_mmol"])
    initial = float(process.get("initial_volume_l", config.volume_l))
    changes["volume_l"] = initial
    follows = tuple(process.get("volume_follows", ()))
    evaporation = float(process.get("evaporation_ml_per_h", 0.0))
    if follows or evaporation:
        changes["volume"] = VolumePlan(
            initial,
            follows,
            float(process.get("sample_volume_ml", 0.0)),
            evaporation,
            tuple(float(t) for t in sample_times if math.isfinite(t)),
        )
    config = replace(config, **changes)
    mode = process.get("carbon_balance", "constants")
    if mode not in ("constants", "fit"):
        raise ValueError(f"carbon_balance must be 'constants' or 'fit', got {mode!r}")
    if mode == "fit":
        config = replace(
            config,
            carbon_balance=CarbonBalancePlan(
                config.initial_biomass_g_per_l,
                config.yield_x_per_co2,
                fit=True,
                samples=tuple(dry_weights),
            ),
        )
    return config


def feature_config_for(record: BatchRecord, base: FeatureConfig | None = None) -> FeatureConfig:
    """The pipeline configuration of a dataset batch: its own process constants and samples."""
    if not record.process:
        return base or FeatureConfig()
    samples = record.samples
    times: list[float] = []
    dry: tuple[tuple[float, float], ...] = ()
    if samples is not None and len(samples):
        stamps = samples["timestamp"].to_numpy(float)
        times = [float(t) for t in stamps]
        dry = samples_with_dry_weight(stamps, samples["dcw_g_l"].to_numpy(float))
    try:
        return feature_config(record.process, base, sample_times=times, dry_weights=dry)
    except ValueError as exc:
        from bptwin.twin.dataset import DatasetError

        raise DatasetError(f"batch {record.number}: process constants: {exc}") from None
