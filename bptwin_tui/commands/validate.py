"""``bptwin validate``: score a model on hold-out batches, write Markdown + PNG + JSON."""

from __future__ import annotations

import argparse
import math
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="score batches the model was trained on (an error otherwise: optimistic scores)",
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
            force=args.force,
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
    for entry in result.adaptation:
        print(
            f"  batch {entry['batch']} adapted to its samples: MRE {_pct(entry['adapted_mre'])}, "
            f"from the 2 h sample {_pct(entry['adapted_mre_from_2h_sample'])}, from the 4 h "
            f"sample {_pct(entry['adapted_mre_from_4h_sample'])} (baseline "
            f"{_pct(entry['baseline_mre'])}); 90 % band covers "
            f"{_pct(entry.get('band_coverage', math.nan))} as trained (card's band "
            f"{_pct(entry['model_band_coverage'])}), {_pct(entry['adapted_band_coverage'])} adapted"
        )
        if "adapted_do_rmse" in entry:
            print(
                f"    forecasts from the adapted nowcast: DO RMSE {_sat(entry['adapted_do_rmse'])}"
                f" (as trained {_sat(entry['model_do_rmse'])}), depletion mean |error| "
                f"{entry['adapted_depletion_mean_abs_min']:.0f} min, worst "
                f"{entry['adapted_depletion_worst_abs_min']:.0f} min (as trained "
                f"{entry['model_depletion_mean_abs_min']:.0f} / "
                f"{entry['model_depletion_worst_abs_min']:.0f} min)"
            )
        if "drift_worst_feature" in entry:
            at = entry.get("drift_tripped_at_h")
            said = f"tripped at {at:.1f} h" if at is not None else "quiet"
            print(
                f"    drift watch: {said} "
                f"(worst {entry['drift_worst_feature']} PSI {entry['drift_worst_psi']:.2f}); "
                f"band with the watch covers {_pct(entry['guarded_band_coverage'])}"
            )
    print(f"verdict: {result.verdict.outcome.upper()}")
    print(f"report: {report}")
    return 1 if result.verdict.outcome == FAIL else 0


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %" if value == value else "–"


def _sat(value: float) -> str:
    """DO RMSE in % saturation, or 'not evaluated' (no DO forecast in the model card)."""
    return f"{value:.2f} % sat" if value == value else "not evaluated"
