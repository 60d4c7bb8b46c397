"""Shared fixtures for the model tests: a tiny simulated dataset and a model trained on it.

Four short (4 h) simulated batches keep every model test fast; batch 4 is the hold-out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bptwin.twin.dataset import BatchRecord, Dataset, write_batch, write_manifest
from bptwin.twin.features import FEATURE_NAMES
from bptwin.twin.model import TrainOptions, TrainResult, train_model
from bptwin.twin.registry import ModelArtifact, ModelCard
from bptwin.twin.simulator import simulate_batch

SMALL_HOURS = 4.0
SMALL_BATCHES = (1, 2, 3, 4)
SMALL_HOLDOUT = (4,)


def write_small_dataset(folder: Path, batches: tuple[int, ...] = SMALL_BATCHES) -> Path:
    dataset = Dataset(source="simulated", description="test", campaign_seed=5)
    for number in batches:
        result = simulate_batch(
            None, 100 + number, start_timestamp=1.7e9 + number * 86400.0, hours=SMALL_HOURS
        )
        role = "holdout" if number in SMALL_HOLDOUT else "training"
        phase = "C" if role == "holdout" else "B"
        record = BatchRecord.from_simulation(
            result, number=number, phase=phase, role=role, variation="nominal"
        )
        write_batch(folder, record)
        dataset.batches.append(record.without_data())
    write_manifest(folder, dataset)
    return folder


def small_options(dataset: Path, **changes: object) -> TrainOptions:
    options = TrainOptions(
        dataset=dataset,
        holdout=SMALL_HOLDOUT,
        trials=2,
        folds=2,
        threads=1,
        jobs=1,
        max_rounds=60,
        early_stopping_rounds=10,
        version="test-model",
    )
    for key, value in changes.items():
        setattr(options, key, value)
    return options


# Test modules wrap these in their own fixtures; the cache builds each once per session.
_CACHE: dict[str, object] = {}


def shared_small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "dataset" not in _CACHE:
        _CACHE["dataset"] = write_small_dataset(tmp_path_factory.mktemp("dataset"))
    return _CACHE["dataset"]  # type: ignore[return-value]


def shared_small_training(dataset: Path) -> TrainResult:
    if "training" not in _CACHE:
        _CACHE["training"] = train_model(small_options(dataset))
    return _CACHE["training"]  # type: ignore[return-value]


def random_artifact(version: str = "random", holdout_mre: float | None = None) -> ModelArtifact:
    """A small LightGBM model on random rows with the pipeline's feature names."""
    import lightgbm

    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(300, len(FEATURE_NAMES)))
    target = matrix[:, 0] * 0.5 + 1.0
    booster = lightgbm.train(
        {"objective": "regression", "verbosity": -1, "num_threads": 1, "seed": 1},
        lightgbm.Dataset(matrix, target, feature_name=list(FEATURE_NAMES)),
        num_boost_round=5,
    )
    metrics = {} if holdout_mre is None else {"holdout": {"mre_mean": holdout_mre}}
    card = ModelCard(
        version=version,
        feature_names=list(FEATURE_NAMES),
        holdout_batches=[16, 17, 18],
        interval={"lower_log": -0.1, "upper_log": 0.1},
        metrics=metrics,
    )
    return ModelArtifact(booster, card)
