"""Training the OD600 soft sensor: LightGBM on the 30 s feature table, tuned by Optuna.

* Target: ln OD600 (squared error in log space ≈ relative error, the campaign's MRE).
* Split: by batch, never by row. Tuning scores each trial by grouped K-fold cross-validation
  over the training batches (each fold holds out whole batches); the hold-out batches
  (16–18 by default) are removed before anything else and only scored at the very end.
* Optuna: TPE sampler with a seed, median pruner on the running cross-validation MRE (one
  report per fold), a trial budget and an optional time limit. The study lives in an RDB
  storage (SQLite file by default, or a Postgres URL) so several machines can tune one study.
* Interval: the 5th/95th percentiles of the out-of-fold log residuals of the best parameters
  (split-conformal style), applied around each prediction: a 90 % band.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bptwin.database.backoff import Backoff
from bptwin.twin.forecast import fit_forecast_block
from bptwin.twin.labels import (
    BATCH_COLUMN,
    LABEL_COLUMN,
    LABEL_METHODS,
    LABELS,
    dataset_fingerprint,
    dataset_table,
)
from bptwin.twin.metrics import mre
from bptwin.twin.registry import (
    FALLBACK_FILE,
    ModelArtifact,
    ModelCard,
    library_versions,
    new_version_name,
    pipeline_fingerprint,
    utc_now,
)

if TYPE_CHECKING:
    import lightgbm
    import optuna

DEFAULT_HOLDOUT: tuple[int, ...] = (16, 17, 18)
DEFAULT_TRIALS = 30
DEFAULT_SEED = 42
DEFAULT_FOLDS = 5
INTERVAL_QUANTILES = (0.05, 0.95)
FIXED_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "metric": "l2",
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,
    "bagging_freq": 1,
}


class TrainingError(ValueError):
    """Training cannot start or finish as asked; the message says why."""


@dataclass
class TrainOptions:
    """Everything that defines a training run (and makes it reproducible)."""

    dataset: Path
    holdout: tuple[int, ...] = DEFAULT_HOLDOUT
    train_batches: tuple[int, ...] | None = None  # None = every batch not held out
    label: str = "samples"
    trials: int = DEFAULT_TRIALS
    seed: int = DEFAULT_SEED
    folds: int = DEFAULT_FOLDS
    storage: str | None = None  # Optuna RDB URL; None = in memory
    study_name: str | None = None
    timeout_s: float | None = None
    threads: int = 2
    jobs: int | None = None  # processes for the feature tables
    max_rounds: int = 1000
    early_stopping_rounds: int = 40
    max_leaves: int = 31
    # Tuning scores every n-th window only: neighbouring 30 s windows are nearly identical, so
    # this costs little information and makes each trial n times cheaper. The final fit and
    # its out-of-fold residuals use every window.
    tune_stride: int = 2
    # Fallback model for a lost sensor: trained with the best parameters on the same batches
    # with these channels removed from the readings (features recomputed by the same
    # pipeline). The predictor switches to it when those channels' features are missing.
    fallback_without: tuple[str, ...] = ("od_probe",)
    # A shared study: how long to wait for trials other processes are still running before
    # choosing the best parameters.
    peer_wait_s: float = 600.0
    version: str | None = None
    notes: str = ""

    def check(self) -> None:
        if self.label not in LABELS:
            raise TrainingError(f"label must be one of {LABELS}, got {self.label!r}")
        if self.trials < 1:
            raise TrainingError(f"trials must be at least 1, got {self.trials}")
        if self.tune_stride < 1:
            raise TrainingError(f"tune_stride must be at least 1, got {self.tune_stride}")
        if self.folds < 2:
            raise TrainingError(f"folds must be at least 2, got {self.folds}")
        if self.train_batches is not None:
            overlap = sorted(set(self.train_batches) & set(self.holdout))
            if overlap:
                raise TrainingError(f"batches {overlap} are both training and hold-out")


@dataclass
class TrialProgress:
    """What the progress callback is told after every trial."""

    finished: int
    budget: int
    value: float | None  # CV MRE of this trial (None when pruned/failed)
    state: str
    best: float | None
    pruned: int
    elapsed_s: float
    remaining_s: float | None


@dataclass
class TuningRun:
    """What one process's tuning did: the (possibly shared) study and its own trials."""

    study: Any
    trial_numbers: list[int]  # study-wide numbers of the trials this process ran
    stopped_by_timeout: bool
    completed_in_study: int


@dataclass
class TrainResult:
    artifact: ModelArtifact
    table: pd.DataFrame
    study: Any
    cv_mre: float
    elapsed_s: float
    stages: dict[str, float] = field(default_factory=dict)


def group_folds(batches: Sequence[int], n_folds: int, seed: int) -> list[list[int]]:
    """Shuffle the batch numbers with ``seed`` and deal them round-robin into folds."""
    unique = sorted(set(batches))
    if len(unique) < 2:
        raise TrainingError(f"cross-validation needs at least 2 training batches, got {unique}")
    n_folds = min(n_folds, len(unique))
    order = np.random.default_rng(seed).permutation(unique).tolist()
    return [sorted(order[i::n_folds]) for i in range(n_folds)]


def _features(table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    from bptwin.twin.features import FEATURE_NAMES

    names = list(FEATURE_NAMES)
    return table[names].to_numpy(dtype=float), names


def _dataset(table: pd.DataFrame, rows: np.ndarray, names: list[str]) -> lightgbm.Dataset:
    import lightgbm

    matrix = table.loc[rows, names].to_numpy(dtype=float)
    target = np.log(table.loc[rows, LABEL_COLUMN].to_numpy(dtype=float))
    return lightgbm.Dataset(matrix, target, feature_name=names, free_raw_data=False)


def suggest_params(trial: optuna.Trial, max_leaves: int) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, max_leaves),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def early_stopping_split(
    train_batches: Sequence[int], n_folds: int, seed: int, fold: int
) -> tuple[list[int], list[int]]:
    """Split a fold's training batches into (fit, early-stopping) batches.

    Early stopping picks the round count on batches that are neither fitted nor scored: a
    fold scored on the batches that also chose its round count would report an optimistic
    MRE. About 1/n_folds of the training batches (at least one) stop; with fewer than two
    training batches there is nothing to spare and the fold trains without early stopping.
    """
    unique = sorted(set(int(b) for b in train_batches))
    if len(unique) < 2:
        return unique, []
    n_stop = min(len(unique) - 1, max(1, round(len(unique) / max(n_folds, 2))))
    order = np.random.default_rng([seed, fold]).permutation(unique).tolist()
    stop = sorted(order[:n_stop])
    return [b for b in unique if b not in stop], stop


def cross_validate(
    table: pd.DataFrame,
    params: dict[str, Any],
    folds: list[list[int]],
    options: TrainOptions,
    report: Callable[[int, float], None] | None = None,
) -> tuple[float, int, np.ndarray]:
    """Grouped K-fold: (mean per-fold MRE, mean best round, out-of-fold log predictions).

    Each fold's score and out-of-fold predictions come from batches the fold's model neither
    fitted nor used for early stopping (``early_stopping_split``).
    """
    import lightgbm

    _, names = _features(table)
    batch = table[BATCH_COLUMN].to_numpy()
    full = {**FIXED_PARAMS, **params, "seed": options.seed, "num_threads": options.threads}
    oof = np.full(len(table), np.nan)
    scores, rounds = [], []
    for step, held in enumerate(folds):
        valid_rows = np.flatnonzero(np.isin(batch, held))
        others = sorted(set(batch[~np.isin(batch, held)].tolist()))
        fit_batches, stop_batches = early_stopping_split(others, len(folds), options.seed, step)
        train_set = _dataset(table, np.flatnonzero(np.isin(batch, fit_batches)), names)
        if stop_batches:
            stop_set = _dataset(table, np.flatnonzero(np.isin(batch, stop_batches)), names)
            booster = lightgbm.train(
                full,
                train_set,
                num_boost_round=options.max_rounds,
                valid_sets=[stop_set],
                callbacks=[lightgbm.early_stopping(options.early_stopping_rounds, verbose=False)],
            )
            best = booster.best_iteration or options.max_rounds
        else:
            booster = lightgbm.train(full, train_set, num_boost_round=options.max_rounds)
            best = options.max_rounds
        matrix = table.loc[valid_rows, names].to_numpy(dtype=float)
        prediction = booster.predict(matrix, num_iteration=best)
        oof[valid_rows] = prediction
        truth = table.loc[valid_rows, LABEL_COLUMN].to_numpy(float)
        scores.append(mre(truth, np.exp(prediction)))
        rounds.append(best)
        if report is not None:
            report(step, float(np.mean(scores)))
    return float(np.mean(scores)), round(float(np.mean(rounds))), oof


def study_name_for(options: TrainOptions, fingerprint: str) -> str:
    holdout = "-".join(str(b) for b in sorted(options.holdout))
    return options.study_name or f"od600-{fingerprint[:12]}-{options.label}-h{holdout}"


def study_storage(storage: str | None) -> str | None:
    """The Optuna storage URL as bptwin connects to it (postgresql:// → psycopg2)."""
    if storage is None:
        return None
    from bptwin.database.relational import DatabaseURLError, normalise_url

    try:
        return normalise_url(storage)
    except DatabaseURLError as exc:
        raise TrainingError(f"Optuna study storage: {exc}") from None


def _trial_seeded_sampler_class() -> type:
    import optuna

    class _TrialSeededTPESampler(optuna.samplers.TPESampler):
        """TPE whose random draws for trial n are seeded by (seed, n), not by a stream.

        Several processes tuning one shared study each hold their own sampler; seeded as one
        stream they would all draw the same start-up parameters. Seeded by the study-wide
        trial number, trial n gets the same start-up parameters whichever process runs it, so
        N processes sharing a study try exactly what one process would with the same trials.
        """

        def __init__(self, *, seed: int) -> None:
            super().__init__(seed=seed)
            self._base_seed = seed

        def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            trial_seed = np.random.SeedSequence([self._base_seed, trial.number])
            state = int(trial_seed.generate_state(1)[0])
            # Private in Optuna 5.1 (pinned in pyproject.toml): the two generators TPE draws from.
            self._rng.rng.seed(state)
            self._random_sampler._rng.rng.seed(state)
            super().before_trial(study, trial)

    return _TrialSeededTPESampler


def trial_seeded_sampler(*, seed: int) -> optuna.samplers.TPESampler:
    """A TPE sampler seeded per trial number (see ``_trial_seeded_sampler_class``)."""
    sampler: optuna.samplers.TPESampler = _trial_seeded_sampler_class()(seed=seed)
    return sampler


def _open_study(
    study_name: str,
    storage: str | None,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    attempts: int = 5,
) -> optuna.Study:
    """Open the study, or create it with its storage's tables.

    Two ``bptwin train`` processes started together on a fresh database both create Optuna's
    tables, and the later ``CREATE`` fails on a unique constraint (Postgres: the type
    ``studydirection``); by then the tables exist, so the loser tries again after a short,
    jittered wait instead of failing its tuning."""
    import optuna
    from sqlalchemy.exc import IntegrityError

    backoff = Backoff(0.2, 2.0)
    never = threading.Event()
    for attempt in range(1, attempts + 1):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=study_storage(storage),
                direction="minimize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        except IntegrityError:
            if attempt == attempts:
                raise
            backoff.wait(never)
    raise AssertionError("unreachable")  # the loop returns or raises


def tune(
    table: pd.DataFrame,
    options: TrainOptions,
    study_name: str,
    progress: Callable[[TrialProgress], None] | None = None,
) -> TuningRun:
    """Run up to ``options.trials`` new trials of the (possibly shared) study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if options.tune_stride > 1:
        table = table.iloc[:: options.tune_stride].reset_index(drop=True)
    folds = group_folds(table[BATCH_COLUMN].unique(), options.folds, options.seed)
    sampler = trial_seeded_sampler(seed=options.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    try:
        study = _open_study(study_name, options.storage, sampler, pruner)
    except Exception as exc:  # storage errors come from SQLAlchemy and the DB driver
        raise TrainingError(
            f"cannot open the Optuna study storage {_redact(options.storage)}: {exc}"
        ) from exc

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, options.max_leaves)

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        score, rounds, _ = cross_validate(table, params, folds, options, report)
        trial.set_user_attr("rounds", rounds)
        return score

    started = time.monotonic()
    pruned = 0
    durations: list[float] = []
    last = [started]

    run_here: list[int] = []

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal pruned
        run_here.append(trial.number)
        now = time.monotonic()
        durations.append(now - last[0])
        last[0] = now
        if trial.state == optuna.trial.TrialState.PRUNED:
            pruned += 1
        if progress is None:
            return
        done = len(durations)
        remaining = (options.trials - done) * float(np.mean(durations))
        if options.timeout_s is not None:
            remaining = min(remaining, max(0.0, options.timeout_s - (now - started)))
        try:
            best = study.best_value
        except ValueError:
            best = None
        progress(
            TrialProgress(
                finished=done,
                budget=options.trials,
                value=trial.value,
                state=trial.state.name.lower(),
                best=best,
                pruned=pruned,
                elapsed_s=now - started,
                remaining_s=remaining,
            )
        )

    study.optimize(
        objective,
        n_trials=options.trials,
        timeout=options.timeout_s,
        callbacks=[callback],
        gc_after_trial=False,
    )
    _wait_for_peer_trials(study, options.peer_wait_s)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise TrainingError("no Optuna trial completed; raise --trials or --timeout")
    return TuningRun(
        study=study,
        trial_numbers=sorted(run_here),
        stopped_by_timeout=len(run_here) < options.trials,
        completed_in_study=len(completed),
    )


def _wait_for_peer_trials(study: optuna.Study, limit_s: float) -> None:
    """Wait (up to ``limit_s``) for trials other processes are still running in this study.

    The best parameters are then those of the whole shared study, as one process running all
    its trials would find them; a peer that died mid-trial leaves a RUNNING trial behind,
    hence the limit.
    """
    import optuna

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            return
        time.sleep(1.0)


def fit_booster(
    table: pd.DataFrame, params: dict[str, Any], rounds: int, options: TrainOptions
) -> lightgbm.Booster:
    import lightgbm

    _, names = _features(table)
    full = {**FIXED_PARAMS, **params, "seed": options.seed, "num_threads": options.threads}
    train_set = _dataset(table, np.arange(len(table)), names)
    return lightgbm.train(full, train_set, num_boost_round=max(1, rounds))


def _interval(table: pd.DataFrame, oof: np.ndarray) -> dict[str, float]:
    residual = np.log(table[LABEL_COLUMN].to_numpy(float)) - oof
    residual = residual[np.isfinite(residual)]
    low, high = np.quantile(residual, INTERVAL_QUANTILES)
    return {
        "method": "out-of-fold log-residual quantiles",  # type: ignore[dict-item]
        "lower_log": float(low),
        "upper_log": float(high),
        "coverage_nominal": INTERVAL_QUANTILES[1] - INTERVAL_QUANTILES[0],
    }


def usable_rows(table: pd.DataFrame) -> pd.DataFrame:
    label = table[LABEL_COLUMN].to_numpy(float)
    keep = np.isfinite(label) & (label > 0)
    return table.loc[keep].reset_index(drop=True)


def train_model(
    options: TrainOptions,
    *,
    progress: Callable[[TrialProgress], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> TrainResult:
    """The whole run: table, tuning, final fit, card (hold-out scored by the caller)."""
    from bptwin.twin.dataset import batch_identity, read_manifest
    from bptwin.twin.drift import reference_of_table
    from bptwin.twin.features import FEATURE_NAMES

    options.check()
    say = stage or (lambda message: None)
    started = time.monotonic()
    stages: dict[str, float] = {}
    manifest = read_manifest(options.dataset)
    available = [record.number for record in manifest.batches]
    missing_holdout = sorted(set(options.holdout) - set(available))
    if missing_holdout:
        say(f"note: hold-out batches {missing_holdout} are not in the dataset")
    chosen = (
        sorted(options.train_batches)
        if options.train_batches is not None
        else [b for b in available if b not in options.holdout]
    )
    chosen = [b for b in chosen if b not in options.holdout]  # never, whatever was asked
    if len(chosen) < 2:
        raise TrainingError(f"need at least 2 training batches, have {chosen}")
    fingerprint = dataset_fingerprint(options.dataset)
    say(f"building 30 s feature tables for {len(chosen)} training batches")
    table = usable_rows(dataset_table(options.dataset, chosen, options.label, jobs=options.jobs))
    degraded = None
    if options.fallback_without:
        say(f"feature tables without {', '.join(options.fallback_without)} (fallback model)")
        degraded = usable_rows(
            dataset_table(
                options.dataset,
                chosen,
                options.label,
                jobs=options.jobs,
                drop_channels=options.fallback_without,
            )
        )
    stages["feature_table_s"] = time.monotonic() - started

    name = study_name_for(options, fingerprint)
    say(f"tuning: study {name!r}, {options.trials} trials, seed {options.seed}")
    tuning_started = time.monotonic()
    tuning = tune(table, options, name, progress)
    study = tuning.study
    stages["tuning_s"] = time.monotonic() - tuning_started
    if tuning.stopped_by_timeout:
        say(
            f"tuning stopped by --timeout after {len(tuning.trial_numbers)} of "
            f"{options.trials} trials"
        )

    best = study.best_trial
    params = dict(best.params)
    folds = group_folds(table[BATCH_COLUMN].unique(), options.folds, options.seed)
    say("refitting the best parameters: out-of-fold residuals for the interval")
    fit_started = time.monotonic()
    cv_score, rounds, oof = cross_validate(table, params, folds, options)
    booster = fit_booster(table, params, rounds, options)
    fallback_booster, fallback_card = None, None
    if degraded is not None:
        say("fitting the fallback model (same parameters, without the lost channels)")
        fb_score, fb_rounds, fb_oof = cross_validate(degraded, params, folds, options)
        fallback_booster = fit_booster(degraded, params, fb_rounds, options)
        fallback_card = {
            "file": FALLBACK_FILE,
            "missing_channels": list(options.fallback_without),
            "trigger_features": [f"{c}_mean" for c in options.fallback_without],
            "num_boost_round": int(fb_rounds),
            "interval": _interval(degraded, fb_oof),
            "cv_mre_mean": fb_score,
        }
    _, baseline_k = carbon_balance_baseline(table, table.iloc[:0])
    forecast = fit_forecast_block(table, baseline_k)
    stages["final_fit_s"] = time.monotonic() - fit_started
    elapsed = time.monotonic() - started

    card = ModelCard(
        version=options.version or new_version_name(),
        feature_names=list(FEATURE_NAMES),
        label=options.label,
        label_method=LABEL_METHODS[options.label],
        training_batches=chosen,
        training_batch_ids={
            str(record.number): batch_identity(record)
            for record in manifest.batches
            if record.number in chosen
        },
        holdout_batches=sorted(options.holdout),
        data_fingerprint=fingerprint,
        pipeline_fingerprint=pipeline_fingerprint(),
        dataset=str(Path(options.dataset)),
        hyperparameters={**FIXED_PARAMS, **params, "seed": options.seed},
        num_boost_round=int(rounds),
        interval=_interval(table, oof),
        fallback=fallback_card,
        metrics={
            "cv": {"mre_mean": cv_score, "folds": folds, "windows": len(table)},
            "baseline": {"k_od_per_mmol_co2": baseline_k},
            "forecast": forecast,
        },
        tuning={
            "study": name,
            "storage": _redact(options.storage),
            "trials_requested": options.trials,
            "trials_this_run": len(tuning.trial_numbers),
            "trial_numbers_this_run": tuning.trial_numbers,
            "stopped_by_timeout": tuning.stopped_by_timeout,
            "trials_in_study": len(study.trials),
            "trials_complete_in_study": tuning.completed_in_study,
            "timeout_s": options.timeout_s,
            "cv_scoring": "fold scored on batches used neither to fit nor to stop early",
            "best_trial": best.number,
            "best_cv_mre": float(best.value),
            "seed": options.seed,
            "threads": options.threads,
            "tune_stride": options.tune_stride,
            "fallback_without": list(options.fallback_without),
            "wall_time_s": round(elapsed, 1),
            "stages_s": {k: round(v, 1) for k, v in stages.items()},
        },
        libraries=library_versions(),
        created=utc_now(),
        notes=options.notes,
        feature_reference=reference_of_table(table),
    )
    artifact = ModelArtifact(booster, card, fallback=fallback_booster)
    return TrainResult(artifact, table, study, cv_score, elapsed, stages)


def _redact(storage: str | None) -> str:
    """Storage URL without a password (the card is shipped)."""
    if not storage:
        return "in-memory"
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return storage.split("@")[-1]


def predict_table(artifact: ModelArtifact, table: pd.DataFrame) -> pd.DataFrame:
    """Nowcast, lower and upper bound of every row of a feature table (batch scoring)."""
    from bptwin.twin.features import FEATURE_NAMES

    artifact.check_features()
    matrix = table[list(FEATURE_NAMES)].to_numpy(dtype=float)
    use_fallback = artifact.needs_fallback(matrix)
    log_pred = np.empty(len(table))
    low, high = np.empty(len(table)), np.empty(len(table))
    for chosen, booster, interval in (
        (~use_fallback, artifact.booster, artifact.card.interval),
        (use_fallback, artifact.fallback, (artifact.card.fallback or {}).get("interval", {})),
    ):
        if not chosen.any() or booster is None:
            continue
        log_pred[chosen] = booster.predict(matrix[chosen], num_threads=1)
        low[chosen] = float(interval.get("lower_log", 0.0))
        high[chosen] = float(interval.get("upper_log", 0.0))
    return pd.DataFrame(
        {
            "od600_pred": np.exp(log_pred),
            "od600_lower": np.exp(log_pred + low),
            "od600_upper": np.exp(log_pred + high),
            "fallback": use_fallback,
        },
        index=table.index,
    )


def carbon_balance_baseline(train: pd.DataFrame, tables: pd.DataFrame) -> tuple[np.ndarray, float]:
    """OD from the carbon balance alone: OD₀ + k · cumulative CO₂ (mmol/L).

    OD₀ is each batch's first offline sample (the inoculum check at 0 h); the one factor k
    (OD per mmol/L of CO₂, i.e. Y_X/CO₂ over the OD→DCW factor) is fitted on the training
    batches by the median of (OD − OD₀) / cum CO₂ over windows with cum CO₂ > 20 mmol/L
    (NaN when no window has that much).
    """
    cum = train["cum_co2_mmol_per_l"].to_numpy(float)
    gain = train[LABEL_COLUMN].to_numpy(float) - train["inoculum_od600"].to_numpy(float)
    usable = np.isfinite(cum) & np.isfinite(gain) & (cum > 20.0)
    # Too little CO2 (short batches): no baseline rather than a wild one.
    k = float(np.median(gain[usable] / cum[usable])) if usable.any() else math.nan
    od0 = tables["inoculum_od600"].to_numpy(float)
    cum_all = np.nan_to_num(tables["cum_co2_mmol_per_l"].to_numpy(float), nan=0.0)
    return od0 + k * cum_all, k


def co2_at_depletion(table: pd.DataFrame) -> list[float]:
    """Cumulative CO₂ (mmol/L) at each batch's true depletion (manifest), where known."""
    values = []
    for _, rows in table.groupby(BATCH_COLUMN):
        when = rows["depletion_true"].to_numpy(float)
        if not np.isfinite(when).any():
            continue
        ends = rows["window_end"].to_numpy(float)
        if when[0] > ends[-1]:
            continue  # the batch was cut before depletion
        nearest = int(np.argmin(np.abs(ends - when[0])))
        values.append(float(rows["cum_co2_mmol_per_l"].to_numpy(float)[nearest]))
    return values


def finite_or_nan(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.nan
