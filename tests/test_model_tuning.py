"""Tuning bookkeeping and a study shared on Postgres by several `bptwin train` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bptwin.twin.labels import LABEL_COLUMN
from bptwin.twin.model import (
    TrainOptions,
    TrainResult,
    cross_validate,
    early_stopping_split,
    group_folds,
    train_model,
)
from tests.test_model_data import shared_small_dataset, small_options


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_small_dataset(tmp_path_factory)


def test_card_records_the_trials_actually_run_when_the_timeout_stops_tuning(
    small_dataset: Path,
) -> None:
    result: TrainResult = train_model(
        small_options(small_dataset, trials=50, timeout_s=0.01, fallback_without=())
    )
    tuning = result.artifact.card.tuning
    assert tuning["trials_requested"] == 50
    assert tuning["trials_this_run"] == len(tuning["trial_numbers_this_run"]) < 50
    assert tuning["stopped_by_timeout"] is True


def test_early_stopping_never_uses_the_batches_a_fold_is_scored_on() -> None:
    batches = list(range(1, 16))
    folds = group_folds(batches, 5, 42)
    for index, held in enumerate(folds):
        others = [b for b in batches if b not in held]
        fit, stop = early_stopping_split(others, len(folds), 42, index)
        assert stop and fit
        assert not set(stop) & set(held) and not set(fit) & set(held)
        assert not set(fit) & set(stop) and sorted(fit + stop) == others
    # A fold with a single training batch cannot spare one: no early stopping at all.
    assert early_stopping_split([3], 2, 42, 0) == ([3], [])


def test_cross_validation_score_is_not_the_early_stopping_score() -> None:
    """A fold scored on its own early-stopping batches would look better than it is."""
    rng = np.random.default_rng(0)
    rows = []
    for batch in range(1, 7):
        x = rng.normal(size=200)
        rows.append(pd.DataFrame({"batch": batch, "x": x, LABEL_COLUMN: np.exp(1 + 0.1 * x)}))
    from bptwin.twin.features import FEATURE_NAMES

    table = pd.concat(rows, ignore_index=True)
    for name in FEATURE_NAMES:
        table[name] = rng.normal(size=len(table))  # pure noise: nothing to learn
    options = small_options(Path("."), max_rounds=200, early_stopping_rounds=5)
    folds = group_folds(table["batch"].unique(), 3, 42)
    score, rounds, oof = cross_validate(table, {"num_leaves": 15}, folds, options)
    assert np.isfinite(oof).all() and rounds >= 1 and score > 0


def _bare(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _train_cli(
    dataset: Path, storage: str, registry: Path, data_dir: Path, study: str, trials: int,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:  # fmt: skip
    argv = [
        sys.executable, "-m", "bptwin.tui.cli", "train", str(dataset), "--holdout", "4",
        "--trials", str(trials), "--folds", "2", "--threads", "1", "--jobs", "1",
        "--storage", storage, "--study", study, "--registry", str(registry),
        "--version", registry.name, "--fallback-without", "",
    ]  # fmt: skip
    environment = {**os.environ, "BPTWIN_STATION__DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )


def _finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    return out + err


def _card(registry: Path) -> dict:
    return json.loads((registry / registry.name / "card.json").read_text(encoding="utf-8"))


@pytest.mark.postgres
@pytest.mark.slow
def test_two_train_processes_tune_one_study_on_postgres_as_one_process_would(
    small_dataset: Path, tmp_path: Path
) -> None:
    from tests.fixtures.postgres import create_database, drop_database

    url = create_database("bptwin_optuna")
    try:
        storage = _bare(url)  # exactly as a user writes it: postgresql://user@host:port/db
        # Started together on a fresh database: both create Optuna's tables at once, and the
        # later CREATE fails on a unique constraint unless the loser tries again (a CI failure).
        first = _train_cli(small_dataset, storage, tmp_path / "a", tmp_path, "shared", 2)
        second = _train_cli(small_dataset, storage, tmp_path / "b", tmp_path, "shared", 2)
        logs = [_finish(first), _finish(second)]
        assert all("Failed to import" not in log for log in logs)
        cards = [_card(tmp_path / "a"), _card(tmp_path / "b")]
        numbers = [card["tuning"]["trial_numbers_this_run"] for card in cards]
        # Each trial counted once: the two processes share the study's numbering.
        assert sorted(numbers[0] + numbers[1]) == [0, 1, 2, 3]
        assert all(card["tuning"]["trials_this_run"] == 2 for card in cards)
        # Each process sees its own trials and those the other finished before it ended; the
        # one that ends last sees all four (which one that is depends on the machine's load).
        seen = [card["tuning"]["trials_complete_in_study"] for card in cards]
        assert all(2 <= count <= 4 for count in seen) and max(seen) == 4
        assert all("psycopg2" in card["tuning"]["storage"] for card in cards)
        # The same best model as one process running the same four trials.
        defaults = TrainOptions(dataset=small_dataset)  # the CLI's rounds and early stopping
        single = train_model(
            small_options(
                small_dataset,
                trials=4,
                fallback_without=(),
                study_name="single",
                max_rounds=defaults.max_rounds,
                early_stopping_rounds=defaults.early_stopping_rounds,
            )
        )
        for card, registry in zip(cards, (tmp_path / "a", tmp_path / "b"), strict=True):
            if card["tuning"]["trials_complete_in_study"] < 4:
                continue  # it chose among the trials it saw, not all four
            assert card["hyperparameters"] == single.artifact.card.hyperparameters
            assert card["tuning"]["best_cv_mre"] == pytest.approx(
                single.artifact.card.tuning["best_cv_mre"], rel=1e-12
            )
            model_text = (registry / registry.name / "model.txt").read_text()
            assert model_text == single.artifact.booster.model_to_string()
    finally:
        drop_database(url)


@pytest.mark.postgres
def test_storage_notebook_with_a_bare_postgresql_notebook_url(
    small_dataset: Path, tmp_path: Path
) -> None:
    from tests.fixtures.postgres import create_database, drop_database

    url = create_database("bptwin_optuna")
    try:
        env = {"BPTWIN_NOTEBOOK__URL": _bare(url)}
        process = _train_cli(small_dataset, "notebook", tmp_path / "nb", tmp_path, "nb", 1, env=env)
        log = _finish(process)
        assert "Failed to import" not in log
        assert _card(tmp_path / "nb")["tuning"]["trials_in_study"] == 1
    finally:
        drop_database(url)
