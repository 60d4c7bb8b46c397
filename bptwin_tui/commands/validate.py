"""``bptwin validate``: score a model on hold-out batches, write Markdown + PNG + JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from bptwin.tui.commands.train import batch_list
from bptwin.tui.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="score an OD600 model on hold-out batches (report folder)",
        description=(
            "Per-batch MRE with a 95 % CI, R², RMSE, depletion-time error, the DO forecast's "
            "RMSE and the campaign verdict (pass / conditional / fail), plots and residual "
            "analysis. Exit code 0 for pass or conditional, 1 for fail, 2 when the model or "
            "data cannot be used."
        ),
    )
    parser.add_argument("dataset", type=Path, help="dataset folder (docs/dataset.md)")
    parser.add_argument(
        "--model",
        default=None,
        help="model folder, card.json, version name or 'current' (default: settings, then "
        "the user's current model, then the shipped one)",
    )
    parser.add_argument("--batches", type=batch_list, metavar="LIST", help="default: hold-out")
    parser.add_argument(
        "--reference",
        choices=["auto", "truth", "samples", "samples-dcw"],
        default="auto",
        help="reference: simulator truth or interpolated samples, dry weights for a model "
        "trained on them (auto: the model's own kind; truth if simulated)",
    )
    parser.add_argument("--out", type=Path, help="report folder (default DATA_DIR/reports/...)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--jobs", type=int, help="processes for the feature tables")
    parser.add_argument(
        "--drop-channel",
        action="append",
        default=[],
        metavar="NAME",
        help="stress test: score as if this sensor channel had failed (repeatable)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.twin.dataset import DatasetError
    from bptwin.twin.labels import LabelError
    from bptwin.twin.metrics import FAIL
    from bptwin.twin.registry import ModelError, load_model
    from bptwin.twin.validation import evaluate, write_report

    reference = args.model or settings.model.path
    try:
        artifact = load_model(reference, data_dir=settings.data_dir)
        result = evaluate(
            artifact,
            args.dataset,
            list(args.batches) if args.batches else None,
            reference=args.reference,
            n_boot=max(1, args.bootstrap),
            jobs=args.jobs,
            drop_channels=tuple(args.drop_channel),
        )
        stamp = datetime.now(tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
        out = args.out or settings.data_dir / "reports" / f"validation-{artifact.version}-{stamp}"
        report = write_report(result, out, plots=not args.no_plots)
    except (ModelError, DatasetError, LabelError) as exc:
        print(f"bptwin validate: {exc}", file=sys.stderr)
        return 2
    if result.pipeline_warning:
        print(f"bptwin validate: warning: {result.pipeline_warning}", file=sys.stderr)
    print(f"model {artifact.version} on batches {result.batches} (reference {result.reference})")
    for score in result.scores:
        print(
            f"  batch {score.batch}: MRE {100 * score.mre.estimate:.2f} % "
            f"[{100 * score.mre.lower:.2f}, {100 * score.mre.upper:.2f}]  R² {score.r2:.3f}  "
            f"RMSE {score.rmse:.2f}  depletion {score.depletion_error_min:+.1f} min  "
            f"DO RMSE {_sat(score.do_rmse)}"
        )
    print(f"  baseline (carbon balance) MRE {100 * result.baseline['mre_mean']:.2f} %")
    print(f"verdict: {result.verdict.outcome.upper()}")
    print(f"report: {report}")
    return 1 if result.verdict.outcome == FAIL else 0


def _sat(value: float) -> str:
    """DO RMSE in % saturation, or 'not evaluated' (no DO forecast in the model card)."""
    return f"{value:.2f} % sat" if value == value else "not evaluated"
