"""``bptwin train`` (LightGBM + Optuna on a dataset folder) and ``bptwin models`` (registry)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bptwin.tui.settings import Settings, SettingsError

STORAGE_HELP = (
    "Optuna study storage: 'sqlite' (default, a file in the data folder), 'memory', "
    "'notebook' (the notebook's Postgres from the settings, so several machines tune one "
    "study), or a database URL: sqlite:///FILE, postgresql://user@host/db (postgres:// too; "
    "Postgres is reached through psycopg2)"
)


def batch_list(text: str) -> tuple[int, ...]:
    """'16,17,18' or '4-15' or '1-3,7' → batch numbers."""
    numbers: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if low > high:
                    raise ValueError(part)
                numbers.extend(range(low, high + 1))
            else:
                numbers.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a batch list such as 16,17,18 or 4-15"
        ) from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch numbers start at 1")
    return tuple(sorted(set(numbers)))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train and tune the OD600 model on a dataset folder",
        description=(
            "Build the 30 s feature table with the live pipeline, label it with OD600, tune "
            "LightGBM with Optuna (grouped K-fold by batch; hold-out batches never used), fit "
            "the best model, score it on the hold-out batches and store it in the registry."
        ),
    )
    parser.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        help="dataset folder (docs/dataset.md); default: the training set of accepted batches, "
        "DATA_DIR/training-set (docs/acceptance.md)",
    )
    parser.add_argument("--holdout", type=batch_list, default=(16, 17, 18), metavar="LIST")
    parser.add_argument(
        "--train-batches", type=batch_list, metavar="LIST", help="default: all not held out"
    )
    parser.add_argument(
        "--label",
        choices=["samples", "samples-loglinear", "samples-dcw", "truth"],
        default="samples",
        help="samples: OD600 samples, interpolated along the CO2 curve; samples-loglinear: "
        "interpolated log-linearly in time (for comparison); samples-dcw: dry weights (g/L) "
        "for a lab without OD600; truth: the simulator's true OD600 (simulated data only)",
    )
    parser.add_argument("--trials", type=int, default=30, help="Optuna trials (default 30)")
    parser.add_argument("--timeout", type=float, metavar="S", help="stop tuning after S s")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    parser.add_argument("--jobs", type=int, help="processes for the feature tables")
    parser.add_argument("--storage", default="sqlite", help=STORAGE_HELP)
    parser.add_argument(
        "--fallback-without",
        default="od_probe",
        metavar="CHANNELS",
        help="also fit a fallback model without these channels, used when they fail "
        "(comma-separated; default od_probe; '' for none)",
    )
    parser.add_argument("--study", help="Optuna study name (default from the data fingerprint)")
    parser.add_argument("--registry", type=Path, help="model registry (default DATA_DIR/models)")
    parser.add_argument("--version", dest="model_version", help="model version name")
    parser.add_argument(
        "--promote", action="store_true", help="put in service if it beats the current model"
    )
    parser.add_argument("--force", action="store_true", help="with --promote: even if worse")
    parser.add_argument("--report", type=Path, help="validation report folder")
    parser.set_defaults(func=handle)

    models = subparsers.add_parser(
        "models",
        help="list, show, promote or restore OD600 model versions",
        description="The model registry: DATA_DIR/models unless --registry is given.",
    )
    models.add_argument("--registry", type=Path, help="registry folder")
    models.add_argument("action", choices=["list", "show", "promote", "restore", "history"])
    models.add_argument("version", nargs="?", help="model version (show, promote)")
    models.add_argument("--force", action="store_true", help="promote even if not better")
    models.add_argument(
        "--actor",
        metavar="NAME",
        help="who promotes or restores, for the history (default: station.operator, else the "
        "login name)",
    )
    models.set_defaults(func=handle_models)


def resolve_storage(choice: str, settings: Settings) -> str | None:
    if choice == "memory":
        return None
    if choice == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{settings.data_dir / 'optuna.sqlite3'}"
    from bptwin.database.relational import DatabaseURLError, normalise_url

    if choice == "notebook":
        url = settings.notebook.url
        if not url.startswith("postgres"):
            raise SettingsError(
                "--storage notebook needs notebook.url to be a postgresql:// URL in the settings"
            )
        choice = url
    elif "://" not in choice:
        raise SettingsError(f"--storage {choice!r}: use sqlite, memory, notebook or a URL")
    try:
        return normalise_url(choice)
    except DatabaseURLError as exc:
        raise SettingsError(f"--storage: {exc}") from None


def _progress(report: object) -> None:
    from bptwin.twin.model import TrialProgress

    assert isinstance(report, TrialProgress)
    if report.state != "complete" or report.value is None:
        value = report.state
    else:
        value = f"CV MRE {100 * report.value:.2f} %"
    best = "–" if report.best is None else f"{100 * report.best:.2f} %"
    left = "?" if report.remaining_s is None else _clock(report.remaining_s)
    print(
        f"  trial {report.finished}/{report.budget}: {value:<16} best {best}  "
        f"pruned {report.pruned}  elapsed {_clock(report.elapsed_s)}  left ~{left}",
        file=sys.stderr,
        flush=True,
    )


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.twin.dataset import DatasetError, read_manifest
    from bptwin.twin.labels import LabelError
    from bptwin.twin.model import TrainingError, TrainOptions, train_model
    from bptwin.twin.registry import ModelError, Registry, user_registry
    from bptwin.twin.validation import evaluate, write_report

    if args.dataset is None:
        from bptwin.tui.export.acceptance_registry import training_set_dir

        args.dataset = training_set_dir(settings.data_dir)
    if args.trials < 1:
        print("bptwin train: --trials must be at least 1", file=sys.stderr)
        return 2
    registry = Registry(args.registry) if args.registry else user_registry(settings.data_dir)
    options = TrainOptions(
        dataset=args.dataset,
        holdout=args.holdout,
        train_batches=args.train_batches,
        label=args.label,
        trials=args.trials,
        seed=args.seed,
        folds=args.folds,
        storage=resolve_storage(args.storage, settings),
        study_name=args.study,
        timeout_s=args.timeout,
        threads=args.threads,
        jobs=args.jobs,
        version=args.model_version,
        fallback_without=tuple(c.strip() for c in args.fallback_without.split(",") if c.strip()),
    )
    say = lambda message: print(f"bptwin train: {message}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = train_model(options, progress=_progress, stage=say)
        artifact = result.artifact
        present = {r.number for r in read_manifest(args.dataset).batches}
        holdout = [b for b in options.holdout if b in present]
        if holdout:
            say(f"scoring hold-out batches {holdout}")
            validation = evaluate(artifact, args.dataset, holdout, jobs=args.jobs)
            artifact.card.metrics["holdout"] = validation.summary_metrics()
        folder = registry.add(artifact)
        if holdout:
            report = write_report(validation, args.report or folder / "validation")
            say(f"validation report: {report}")
    except (TrainingError, LabelError, DatasetError, ModelError) as exc:
        print(f"bptwin train: {exc}", file=sys.stderr)
        return 2
    cv = artifact.card.metrics["cv"]["mre_mean"]
    print(f"model {artifact.version} stored in {folder}")
    print(
        f"  cross-validation MRE {100 * cv:.2f} % ({len(artifact.card.training_batches)} batches)"
    )
    if "holdout" in artifact.card.metrics:
        hold = artifact.card.metrics["holdout"]
        print(f"  hold-out MRE {100 * hold['mre_mean']:.2f} %, verdict {hold['verdict']}")
    print(f"  wall time {result.elapsed_s:.0f} s")
    if args.promote:
        try:
            promotion = registry.promote(
                artifact.version, force=args.force, actor=settings.station.operator
            )
        except ModelError as exc:
            print(f"bptwin train: {exc}", file=sys.stderr)
            return 1
        print(f"  promoted: {promotion.reason}")
    return 0


def handle_models(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.twin.registry import SHIPPED_MODELS_DIR, ModelError, Registry, user_registry

    registry = Registry(args.registry) if args.registry else user_registry(settings.data_dir)
    actor = args.actor or settings.station.operator
    try:
        if args.action == "list":
            current = registry.current_version()
            versions = registry.versions()
            print(f"registry {registry.root}")
            if not versions:
                print(f"  (empty; the shipped model in {SHIPPED_MODELS_DIR} is used)")
            for name in versions:
                card = registry.load(name, check=False).card
                mark = "*" if name == current else " "
                print(f" {mark} {name}  hold-out MRE {_pct(card.holdout_mre)}  {card.created}")
            return 0
        if args.action == "show":
            name = args.version or "current"
            print(registry.load(name, check=False).card.to_json(), end="")
            return 0
        if args.action == "promote":
            if not args.version:
                print("bptwin models promote: name the version", file=sys.stderr)
                return 2
            promotion = registry.promote(args.version, force=args.force, actor=actor)
            print(f"{promotion.version} in service ({promotion.reason})")
            return 0
        if args.action == "history":
            print(f"registry {registry.root}")
            for entry in registry.history():
                who = entry.actor or "?"
                print(
                    f"  {entry.when}  {entry.action:<8} {entry.version}  "
                    f"(was {entry.previous or '-'}; by {who}) {entry.reason}"
                )
            return 0
        promotion = registry.restore_previous(actor=actor)
        print(f"{promotion.version} restored (was {promotion.previous})")
        return 0
    except ModelError as exc:
        print(f"bptwin models: {exc}", file=sys.stderr)
        return 1


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %" if value == value else "–"
