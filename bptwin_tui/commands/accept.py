"""``bptwin accept``: batch acceptance for training (evaluate, decide, the training-set registry).

    bptwin accept --batch N --evaluate [--json]
    bptwin accept --batch N --decision accept|reject --reason TEXT --supervisor NAME
    bptwin accept --list
    bptwin accept --sync

The criteria are eln.acceptance's; the sensor dropout comes from the configured time-series
store. The supervisor's PIN is read from ``BPTWIN_SUPERVISOR_PIN`` or asked for (not echoed).
An accepted batch is exported into the training set (``DATA_DIR/training-set``), which
``bptwin train`` reads; a rejected one is taken out of it. See docs/acceptance.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.models import BatchAcceptance
    from bptwin.eln.services import NotebookService

PIN_ENVIRONMENT = "BPTWIN_SUPERVISOR_PIN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "accept",
        help="evaluate a batch against the acceptance criteria; record accept/reject",
        description=(
            "Batch acceptance for training (docs/acceptance.md). --evaluate prints the five "
            "criteria with their evidence (exit 0 when all pass, 1 otherwise). --decision "
            "records a supervisor's accept or reject with a reason (name and PIN checked, "
            "audited); an accepted batch is exported into the training set that "
            "'bptwin train' reads, a rejected one is taken out of it."
        ),
    )
    parser.add_argument("--batch", type=int, metavar="N", help="batch number")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--evaluate", action="store_true", help="print the checklist")
    action.add_argument("--decision", choices=["accept", "reject"], help="record a decision")
    action.add_argument("--list", action="store_true", help="list the decisions in force")
    action.add_argument(
        "--sync", action="store_true", help="make the training set agree with the decisions"
    )
    parser.add_argument("--reason", help="why (required with --decision)")
    parser.add_argument("--supervisor", help="supervisor's login name (with --decision)")
    parser.add_argument(
        "--accept-incomplete",
        action="store_true",
        help="accept although some criteria are undecided (say in --reason what was checked)",
    )
    parser.add_argument(
        "--reactor", help="reactor of the batch's series (default: the batch's, else the first)"
    )
    parser.add_argument(
        "--training-set",
        type=Path,
        metavar="DIR",
        help="training-set folder (default DATA_DIR/training-set)",
    )
    parser.add_argument(
        "--no-training-set",
        action="store_true",
        help="record the decision only; leave the training-set folder alone",
    )
    parser.add_argument("--json", action="store_true", help="--evaluate: print JSON")
    parser.set_defaults(func=handle)


def _say(message: str) -> None:
    from bptwin.eln.text_safety import terminal_safe

    print(terminal_safe(f"bptwin accept: {message}"), file=sys.stderr, flush=True)


def _open_notebook(settings: Settings) -> NotebookService:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService

    try:
        return NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None


def _open_store(settings: Settings) -> TimeSeriesStore | None:
    """The configured store, or None (with a warning) when it cannot be opened."""
    from bptwin.tui.runtime.stores import build_store

    try:
        return build_store(settings)
    except SettingsError as exc:
        _say(f"warning: time-series store not available ({exc}); dropout left undecided")
        return None


def read_pin(supervisor: str) -> str:
    pin = os.environ.get(PIN_ENVIRONMENT)
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise SettingsError(f"no terminal to ask for the PIN: set {PIN_ENVIRONMENT}")
    return getpass.getpass(f"PIN for {supervisor}: ")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError

    if (args.evaluate or args.decision) and args.batch is None:
        _say("--batch N is required")
        return 2
    reactor = args.reactor or settings.station.reactors[0]
    folder = args.training_set or _training_set_dir(settings)
    notebook = _open_notebook(settings)
    try:
        if args.list:
            return _list(notebook)
        store = _open_store(settings)
        try:
            if args.sync:
                return _sync(notebook, store, folder, reactor)
            if args.evaluate:
                return _evaluate(notebook, store, args.batch, reactor, as_json=args.json)
            return _decide(args, notebook, store, folder, reactor)
        finally:
            if store is not None:
                store.close()
    except NotebookError as exc:
        _say(str(exc))
        return 1
    finally:
        notebook.engine.dispose()


def _training_set_dir(settings: Settings) -> Path:
    from bptwin.tui.export.acceptance_registry import training_set_dir

    return training_set_dir(settings.data_dir)


def _evaluate(
    notebook: NotebookService,
    store: TimeSeriesStore | None,
    number: int,
    reactor: str,
    *,
    as_json: bool,
) -> int:
    from bptwin.eln.acceptance_service import latest_decision
    from bptwin.tui.export.acceptance_flow import evaluate_batch

    evaluation = evaluate_batch(notebook, store, number, reactor=reactor)
    decision = latest_decision(notebook, number)
    if as_json:
        data = evaluation.to_dict()
        data["decision"] = None if decision is None else _decision_dict(decision)
        print(json.dumps(data, indent=2))
    else:
        print(evaluation.checklist())
        if decision is not None:
            print(
                f"Decision in force: {decision.decision.value} by {decision.decided_by} at "
                f"{decision.decided_at:%Y-%m-%d %H:%M} UTC: {decision.reason}"
            )
        else:
            print("No decision recorded yet.")
    return 0 if evaluation.passed else 1


def _decision_dict(decision: BatchAcceptance) -> dict[str, object]:
    return {
        "id": decision.id,
        "decision": decision.decision.value,
        "reason": decision.reason,
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at.isoformat(),
        "verdict": decision.verdict,
    }


def _decide(
    args: argparse.Namespace,
    notebook: NotebookService,
    store: TimeSeriesStore | None,
    folder: Path,
    reactor: str,
) -> int:
    from bptwin.tui.export.acceptance_flow import (
        TRAINING_SET_ADDED,
        TRAINING_SET_FAILED,
        TRAINING_SET_REMOVED,
        decide_batch,
    )

    if not args.reason or not args.supervisor:
        _say("--decision needs --reason TEXT and --supervisor NAME")
        return 2
    if store is None and not args.no_training_set:
        _say("warning: without the time-series store the training set cannot be updated")
    outcome = decide_batch(
        notebook,
        store,
        args.batch,
        supervisor=args.supervisor,
        pin=read_pin(args.supervisor),
        decision=args.decision,
        reason=args.reason,
        reactor=reactor,
        training_set=None if args.no_training_set else folder,
        accept_incomplete=args.accept_incomplete,
        progress=_progress,
    )
    row = outcome.decision
    if outcome.training_set == TRAINING_SET_ADDED:
        print(file=sys.stderr)
    print(
        f"batch {args.batch}: {row.decision.value} recorded by {row.decided_by} "
        f"(decision #{row.id}, verdict {outcome.evaluation.verdict})"
    )
    if outcome.training_set == TRAINING_SET_ADDED:
        print(f"  added to the training set {folder} ({outcome.rows} rows)")
    elif outcome.training_set == TRAINING_SET_REMOVED:
        print(f"  taken out of the training set {folder}")
    elif outcome.training_set == TRAINING_SET_FAILED:
        _say(
            f"the training set was not updated ({outcome.problem}); "
            "run 'bptwin accept --sync' later"
        )
        return 1
    return 0


def _progress(fraction: float, message: str) -> None:
    width = 30
    filled = round(width * max(0.0, min(1.0, fraction)))
    bar = "#" * filled + "-" * (width - filled)
    print(f"\r  [{bar}] {100 * fraction:5.1f} % {message:<40.40}", end="", file=sys.stderr)


def _list(notebook: NotebookService) -> int:
    from bptwin.eln.acceptance_service import decisions_in_force

    in_force = decisions_in_force(notebook)
    if not in_force:
        print("no batch has an acceptance decision yet")
        return 0
    print(f"{'batch':>6}  {'decision':<8}  {'verdict':<10}  {'by':<12}  {'when (UTC)':<16}  reason")
    from bptwin.eln.text_safety import terminal_safe

    for number, row in sorted(in_force.items()):
        line = (
            f"{number:>6}  {row.decision.value:<8}  {row.verdict:<10}  {row.decided_by:<12}  "
            f"{row.decided_at:%Y-%m-%d %H:%M}  {row.reason}"
        )
        print(terminal_safe(line, single_line=True))  # the reason is free text
    return 0


def _sync(
    notebook: NotebookService, store: TimeSeriesStore | None, folder: Path, reactor: str
) -> int:
    from bptwin.tui.export.acceptance_registry import TrainingSetError, sync_training_set

    if store is None:
        _say("the time-series store is needed to export accepted batches")
        return 1
    try:
        report = sync_training_set(notebook, store, folder, reactor=reactor, progress=_progress)
    except TrainingSetError as exc:
        _say(str(exc))
        return 1
    if report.added:
        print(file=sys.stderr)
    print(f"training set {report.directory}")
    print(
        f"  added {report.added or '-'}, removed {report.removed or '-'}, kept {report.kept or '-'}"
    )
    for number, problem in sorted(report.problems.items()):
        print(f"  batch {number} not exported: {problem}")
    return 1 if report.problems else 0
