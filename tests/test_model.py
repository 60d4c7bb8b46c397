"""Training: labels, batch-wise splits, hold-out isolation, Optuna storage, the CLI."""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from bptwin.twin.dataset import read_dataset
from bptwin.twin.features import FEATURE_NAMES, feature_table
from bptwin.twin.labels import (
    LABEL_COLUMN,
    batch_table,
    carbon_guided_interpolation,
    dataset_fingerprint,
    log_linear_interpolation,
)
from bptwin.twin.model import (
    TrainingError,
    TrainResult,
    group_folds,
    predict_table,
    train_model,
)
from tests.test_model_data import (
    SMALL_HOLDOUT,
    shared_small_dataset,
    shared_small_training,
    small_options,
)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_small_dataset(tmp_path_factory)


@pytest.fixture(scope="session")
def small_training(small_dataset: Path) -> TrainResult:
    return shared_small_training(small_dataset)


def test_log_linear_interpolation_is_exact_for_exponential_growth() -> None:
    mu = 0.2 / 3600
    sample_t = np.array([0.0, 7200.0, 14400.0])
    times = np.linspace(0, 14400, 50)
    labels = log_linear_interpolation(times, sample_t, 0.4 * np.exp(mu * sample_t))
    assert np.allclose(labels, 0.4 * np.exp(mu * times))
    # Ends are held, not extrapolated.
    assert log_linear_interpolation(np.array([-100.0, 20000.0]), sample_t, [1, 2, 4]).tolist() == [
        1.0,
        4.0,
    ]


def test_carbon_guided_interpolation_follows_the_co2_curve() -> None:
    times = np.linspace(0, 10, 101)
    co2 = 10 * times**1.5  # any monotone shape
    od = 0.5 + 0.05 * co2  # biomass proportional to CO2 evolved
    samples_t = np.array([0.0, 4.0, 10.0])
    labels = carbon_guided_interpolation(times, co2, samples_t, np.interp(samples_t, times, od))
    assert np.allclose(labels, od)
    # The log-linear chord misses the curve between samples: the guided one is better.
    plain = log_linear_interpolation(times, samples_t, np.interp(samples_t, times, od))
    assert np.abs(plain - od).max() > 0.1


def test_carbon_guided_falls_back_where_co2_does_not_rise() -> None:
    times = np.linspace(0, 10, 11)
    co2 = np.full(11, 1.0)  # off-gas shows nothing
    labels = carbon_guided_interpolation(times, co2, [0.0, 10.0], [1.0, 4.0])
    assert np.allclose(labels, log_linear_interpolation(times, [0.0, 10.0], [1.0, 4.0]))


def test_group_folds_split_batches_not_rows() -> None:
    folds = group_folds([1, 1, 2, 3, 3, 4, 5, 6, 7], 3, seed=0)
    flat = [b for fold in folds for b in fold]
    assert sorted(flat) == [1, 2, 3, 4, 5, 6, 7]
    assert len(flat) == len(set(flat))
    assert group_folds([1, 2, 3, 4, 5, 6, 7], 3, seed=0) == folds
    with pytest.raises(TrainingError, match="at least 2"):
        group_folds([4, 4, 4], 3, seed=0)


def test_batch_table_uses_readings_only_and_the_live_feature_code(small_dataset: Path) -> None:
    record = read_dataset(small_dataset, batches=[1]).batches[0]
    table = batch_table(record, "truth")
    live = feature_table(record.readings())
    assert np.array_equal(
        table[list(FEATURE_NAMES)].to_numpy(), live[list(FEATURE_NAMES)].to_numpy(), equal_nan=True
    )
    assert np.allclose(table[LABEL_COLUMN], table["truth_od600"])
    samples = batch_table(record, "samples")[LABEL_COLUMN]
    assert samples.notna().all()
    stamps = record.samples["timestamp"]
    sampled = table["window_end"].between(stamps.min(), stamps.max())
    assert sampled.sum() > 100
    assert np.abs(samples / table["truth_od600"] - 1)[sampled].mean() < 0.1


def test_training_never_touches_the_hold_out(small_training: TrainResult, small_dataset) -> None:
    card = small_training.artifact.card
    assert set(small_training.table["batch"]) == {1, 2, 3}
    assert card.tuning["fallback_without"] == ["od_probe"]
    assert card.fallback is not None and card.fallback["trigger_features"] == ["od_probe_mean"]
    assert small_training.artifact.fallback is not None
    assert card.training_batches == [1, 2, 3]
    assert card.holdout_batches == list(SMALL_HOLDOUT)
    assert card.feature_names == list(FEATURE_NAMES)
    assert card.data_fingerprint == dataset_fingerprint(small_dataset)
    assert card.tuning["trials_this_run"] == 2 and card.tuning["trial_numbers_this_run"] == [0, 1]
    assert card.tuning["stopped_by_timeout"] is False
    assert card.interval["lower_log"] < 0 < card.interval["upper_log"]
    assert math.isfinite(card.metrics["cv"]["mre_mean"])
    assert card.libraries["lightgbm"]


def test_asking_to_train_on_a_hold_out_batch_is_refused(small_dataset: Path) -> None:
    with pytest.raises(TrainingError, match=r"\[4\] are both training and hold-out"):
        train_model(small_options(small_dataset, train_batches=(1, 4)))


def test_trained_model_predicts_od600_sensibly(small_training: TrainResult) -> None:
    table = small_training.table
    predicted = predict_table(small_training.artifact, table)["od600_pred"]
    relative = np.abs(predicted / table[LABEL_COLUMN] - 1)
    assert relative.mean() < 0.25


def test_fallback_model_takes_over_when_the_probe_is_lost(
    small_training: TrainResult, tmp_path: Path
) -> None:
    artifact = small_training.artifact
    table = small_training.table.copy()
    normal = predict_table(artifact, table)
    assert not normal["fallback"].any()
    table[[c for c in table.columns if c.startswith("od_probe_")]] = np.nan
    lost = predict_table(artifact, table)
    assert lost["fallback"].all()
    assert np.abs(lost["od600_pred"] / table[LABEL_COLUMN] - 1).mean() < 0.3
    # Saved and loaded with its fallback.
    from bptwin.twin.registry import load_artifact

    loaded = load_artifact(artifact.save(tmp_path / "m"))
    assert loaded.fallback is not None
    again = predict_table(loaded, table)
    assert np.allclose(again["od600_pred"], lost["od600_pred"])


def test_same_seed_same_model(small_dataset: Path, small_training: TrainResult) -> None:
    again = train_model(small_options(small_dataset))
    assert again.artifact.card.hyperparameters == small_training.artifact.card.hyperparameters
    table = small_training.table
    first = predict_table(small_training.artifact, table)["od600_pred"].to_numpy()
    second = predict_table(again.artifact, table)["od600_pred"].to_numpy()
    assert np.array_equal(first, second)


def test_sqlite_study_is_shared_between_runs(small_dataset: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    train_model(small_options(small_dataset, storage=storage, trials=1))
    second = train_model(small_options(small_dataset, storage=storage, trials=1))
    assert second.artifact.card.tuning["trials_in_study"] == 2
    assert second.artifact.card.tuning["storage"].startswith("sqlite:///")


@pytest.mark.postgres
def test_postgres_study_storage(small_dataset: Path) -> None:
    from tests.fixtures.postgres import create_database, drop_database

    url = create_database("bptwin_optuna")
    try:
        result = train_model(small_options(small_dataset, storage=url, trials=1))
        assert result.artifact.card.tuning["trials_in_study"] == 1
    finally:
        drop_database(url)


def test_bad_storage_url_is_a_training_error(small_dataset: Path) -> None:
    options = small_options(small_dataset, storage="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(TrainingError, match="cannot open the Optuna study storage"):
        train_model(options)


def _cli(*argv: str) -> argparse.Namespace:
    from bptwin.tui.commands import train, validate

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    train.register(subparsers)
    validate.register(subparsers)
    return parser.parse_args(list(argv))


def test_cli_train_promote_then_validate(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptwin.tui.settings import Settings, StationSettings

    settings = Settings(station=StationSettings(data_dir=tmp_path / "data"))
    args = _cli(
        "train", str(small_dataset), "--holdout", "4", "--trials", "1", "--folds", "2",
        "--threads", "1", "--jobs", "1", "--storage", "memory", "--version", "cli-1", "--promote",
    )  # fmt: skip
    assert args.func(args, settings) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "model cli-1 stored" in out and "promoted: first model" in out
    # Progress on stderr after every trial: count, score, best, time left.
    assert "trial 1/1: CV MRE" in captured.err and "best" in captured.err
    assert "left ~0:00" in captured.err
    assert (tmp_path / "data" / "models" / "CURRENT").read_text().strip() == "cli-1"
    report = tmp_path / "report"
    args = _cli("validate", str(small_dataset), "--out", str(report), "--bootstrap", "50")
    code = args.func(args, settings)
    assert code in (0, 1)
    out = capsys.readouterr().out
    assert "model cli-1 on batches [4]" in out
    assert "DO RMSE not evaluated" in out  # 4 h batches: no depletion to learn a DO model from
    assert (report / "report.md").is_file() and (report / "predicted_vs_time.png").is_file()


def test_cli_rejects_bad_batch_lists_and_missing_datasets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptwin.tui.settings import Settings, StationSettings

    with pytest.raises(SystemExit):
        _cli("train", "x", "--holdout", "sixteen")
    assert "not a batch list" in capsys.readouterr().err
    settings = Settings(station=StationSettings(data_dir=tmp_path))
    args = _cli("train", str(tmp_path / "none"), "--storage", "memory")
    assert args.func(args, settings) == 2
    assert "not a bptwin dataset folder" in capsys.readouterr().err


def test_progress_reports_every_trial_with_best_and_time_left(small_dataset: Path) -> None:
    from bptwin.twin.model import TrialProgress

    reports: list[TrialProgress] = []
    train_model(
        small_options(small_dataset, trials=3, fallback_without=()), progress=reports.append
    )
    assert [r.finished for r in reports] == [1, 2, 3]
    assert all(r.budget == 3 for r in reports)
    bests = [r.best for r in reports if r.best is not None]
    assert bests and all(later <= earlier for earlier, later in itertools.pairwise(bests))
    assert all(a.elapsed_s <= b.elapsed_s for a, b in itertools.pairwise(reports))
    assert reports[-1].remaining_s == 0.0 and reports[0].remaining_s > 0.0


def test_study_storage_is_sqlite_in_the_data_folder_by_default(tmp_path: Path) -> None:
    from bptwin.tui.commands.train import resolve_storage
    from bptwin.tui.settings import NotebookSettings, Settings, SettingsError, StationSettings

    args = _cli("train", "dataset")
    assert args.storage == "sqlite"
    settings = Settings(station=StationSettings(data_dir=tmp_path / "data"))
    assert (
        resolve_storage(args.storage, settings)
        == f"sqlite:///{tmp_path / 'data' / 'optuna.sqlite3'}"
    )
    assert resolve_storage("memory", settings) is None
    with pytest.raises(SettingsError, match="postgresql"):
        resolve_storage("notebook", settings)  # the default notebook is SQLite
    # The forms --help documents, as a user writes them, are bound to psycopg2 (the one
    # Postgres driver installed); a bare postgresql:// would make SQLAlchemy 2.1 ask for
    # psycopg 3 and fail with "Failed to import DB access module".
    bound = "postgresql+psycopg2://bptwin@127.0.0.1/bptwin"
    for written in ("postgresql://bptwin@127.0.0.1/bptwin", "postgres://bptwin@127.0.0.1/bptwin"):
        postgres = Settings(notebook=NotebookSettings(url=written))
        assert resolve_storage("notebook", postgres) == bound
        assert resolve_storage(written, settings) == bound
    with pytest.raises(SettingsError, match="psycopg2"):
        resolve_storage("postgresql+psycopg://bptwin@127.0.0.1/bptwin", settings)
    with pytest.raises(SettingsError, match="mysql"):
        resolve_storage("mysql://bptwin@127.0.0.1/bptwin", settings)


def test_the_data_fingerprint_names_the_data_not_when_it_was_written(
    small_dataset: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from bptwin.twin.dataset import MANIFEST_NAME

    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["created"] = "2030-01-01T00:00:00+00:00"
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    assert dataset_fingerprint(copy) == dataset_fingerprint(small_dataset)
    manifest["batches"][0]["sha256"] = "0" * 64  # another batch file: another dataset
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    assert dataset_fingerprint(copy) != dataset_fingerprint(small_dataset)
