"""``bptwin batch``: the end of a batch, its closure and signatures, process changes and media.

    bptwin batch list [--status S]
    bptwin batch show N
    bptwin batch end N [--at TIME]                      (an operator ends the running batch)
    bptwin batch abort N --reason TEXT
    bptwin batch closure N --outcome X [--final-od600 V --final-dcw V --harvest-volume ML ...]
    bptwin batch close N --signer NAME                  (a supervisor signs the closure)
    bptwin batch amend N --signer NAME --reason TEXT [--final-od600 V ...]
    bptwin batch media N --recipe "glycerol=40,basal_salts=26.7" [--autoclave C --sterile y|n]
    bptwin batch plan-change N --parameter P --new V [--old V --at TIME --reason TEXT]
    bptwin batch approve-change ID --signer NAME
    bptwin batch review-deviation ID --signer NAME [--close --root-cause T ...]

Writes are made as ``--operator NAME`` (default: the station's ``[station] operator``);
signing asks for the signer's PIN now (``getpass`` on a terminal, else one line of standard
input). Every write is audited; a signature is checked by ``bptwin audit verify``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.eln.services import NotebookService

Handler = Callable[[argparse.Namespace, "NotebookService", Settings], int]

# (option, closure field, help) of the closure's values, shared by `closure` and `amend`.
CLOSURE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--final-od600", "final_od600", "final OD600"),
    ("--final-dcw", "final_dcw_g_per_l", "final dry cell weight, g/L"),
    ("--harvest-volume", "harvest_volume_ml", "harvest volume, mL"),
    ("--runtime", "runtime_h", "run time, h"),
    ("--depletion-time", "depletion_time_h", "glycerol depletion after inoculation, h"),
    ("--do-spike-time", "do_spike_time_h", "DO spike after inoculation, h"),
    ("--base-used", "base_used_ml", "base used, mL"),
    ("--harvest", "harvest", "what was harvested and where it went"),
    (
        "--missing-samples-reason",
        "missing_samples_reason",
        "why fewer than the SOP's 8 samples were taken (required then)",
    ),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="end, abort, close and sign batches; process changes and media",
        description=(
            "The end of a batch from the command line: an operator ends or aborts the running "
            "batch (an abort needs the reason) and records the closure (final OD600/DCW, "
            "harvest volume, outcome; fewer than the SOP's 8 samples need a reason), a "
            "supervisor closes it with an electronic signature (name and PIN asked now). "
            "Process changes (approved by a supervisor's signature) and media preparations "
            "too. See docs/operator-guide-notebook.md and docs/signatures.md."
        ),
    )
    actions = parser.add_subparsers(dest="batch_action", metavar="ACTION", required=True)
    register_list(actions)

    show = _action(actions, "show", "a batch with its end, closure, changes, media, signatures")
    show.add_argument("number", type=int, metavar="N", help="batch number")
    show.set_defaults(batch_handler=_show)

    end = _action(actions, "end", "end the running batch (status complete)")
    end.add_argument("number", type=int, metavar="N", help="batch number")
    end.add_argument("--at", metavar="TIME", help="end time, ISO 8601 with zone (default now)")
    end.set_defaults(batch_handler=_end)

    abort = _action(actions, "abort", "abort the batch (running or in setup); reason required")
    abort.add_argument("number", type=int, metavar="N", help="batch number")
    abort.add_argument("--reason", required=True, help="why the batch is aborted")
    abort.add_argument("--at", metavar="TIME", help="abort time, ISO 8601 with zone")
    abort.set_defaults(batch_handler=_abort)

    closure = _action(actions, "closure", "record the closure of an ended batch")
    closure.add_argument("number", type=int, metavar="N", help="batch number")
    closure.add_argument("--outcome", required=True, help="e.g. complete, contaminated")
    _closure_options(closure)
    closure.set_defaults(batch_handler=_closure)

    close = _action(actions, "close", "a supervisor closes the batch: signs its closure")
    close.add_argument("number", type=int, metavar="N", help="batch number")
    _signer_option(close)
    close.set_defaults(batch_handler=_close)

    amend = _action(actions, "amend", "change a signed closure under a new signature")
    amend.add_argument("number", type=int, metavar="N", help="batch number")
    _signer_option(amend)
    amend.add_argument("--reason", required=True, help="why the signed record changes")
    amend.add_argument("--outcome", help="the outcome, if it changes")
    _closure_options(amend)
    amend.set_defaults(batch_handler=_amend)

    media = _action(actions, "media", "record (or with no --recipe, list) media preparations")
    media.add_argument("number", type=int, metavar="N", help="batch number")
    media.add_argument("--recipe", help='ingredient=amount pairs, e.g. "glycerol=40,salts=26.7"')
    media.add_argument("--autoclave", default="", metavar="CYCLE", help="autoclave cycle id")
    media.add_argument("--sterile", choices=["y", "n"], help="sterility check passed?")
    media.add_argument("--at", metavar="TIME", help="preparation time, ISO 8601 with zone")
    media.add_argument("--notes", default="", help="free text")
    media.set_defaults(batch_handler=_media)

    changes = _action(actions, "changes", "list a batch's process changes")
    changes.add_argument("number", type=int, metavar="N", help="batch number")
    changes.set_defaults(batch_handler=_changes)

    plan = _action(actions, "plan-change", "plan a process change (a supervisor approves it)")
    plan.add_argument("number", type=int, metavar="N", help="batch number")
    plan.add_argument("--parameter", required=True, help="e.g. stirrer_rpm, temperature_setpoint")
    plan.add_argument("--old", default="", help="value before")
    plan.add_argument("--new", required=True, help="value after")
    plan.add_argument("--at", metavar="TIME", help="planned time, ISO 8601 with zone (now)")
    plan.add_argument("--reason", default="", help="why")
    plan.set_defaults(batch_handler=_plan_change)

    approve = _action(actions, "approve-change", "a supervisor approves a change (signed)")
    approve.add_argument("change_id", type=int, metavar="ID", help="process change id")
    _signer_option(approve)
    approve.set_defaults(batch_handler=_approve_change)

    review = _action(actions, "review-deviation", "review (or close) a deviation, signed")
    review.add_argument("deviation_id", type=int, metavar="ID", help="deviation id")
    _signer_option(review)
    review.add_argument("--close", action="store_true", help="close it (after the review)")
    review.add_argument("--root-cause", help="root cause")
    review.add_argument("--corrective-action", help="corrective action")
    review.add_argument("--impact", help="impact on the batch")
    review.set_defaults(batch_handler=_review_deviation)
    parser.set_defaults(func=handle)


def register_list(actions: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``bptwin batch list``: its own parser, so more filters (a campaign view) can be added."""
    listing = _action(actions, "list", "batches, newest first, with their end and closure")
    listing.add_argument(
        "--status", choices=["setup", "running", "complete", "aborted"], help="only this status"
    )
    from bptwin.tui.commands.campaign_report import add_campaign_arguments

    listing.add_argument(
        "--campaign",
        action="store_true",
        help="the campaign at a glance instead: acceptance rate and uptime per phase, with the "
        "batches behind each figure (as 'bptwin campaign')",
    )
    add_campaign_arguments(listing)
    listing.set_defaults(batch_handler=_list)
    return listing


def _action(
    actions: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    description = help_text[:1].upper() + help_text[1:] + "."
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=description
    )
    # After the action, as an operator types it: `bptwin batch end 7 --operator ana`.
    parser.add_argument(
        "--operator", metavar="NAME", help="who writes (default: [station] operator)"
    )
    return parser


def _signer_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signer",
        required=True,
        metavar="NAME",
        help="the signer's login name; the PIN is asked for now (or read from standard input)",
    )


def _closure_options(parser: argparse.ArgumentParser) -> None:
    for option, field, help_text in CLOSURE_OPTIONS:
        parser.add_argument(option, dest=field, help=help_text)


# ---------------------------------------------------------------- running


def _say(message: str) -> None:
    print(f"bptwin batch: {message}", file=sys.stderr, flush=True)


def read_signing_pin(signer: str) -> str:
    """The signer's PIN, asked now: hidden on a terminal, else the next line of standard input."""
    if sys.stdin.isatty():
        return getpass.getpass(f"PIN of {signer} (signing): ")
    line = sys.stdin.readline()
    if not line:
        raise SettingsError("no PIN given: type it when asked, or pipe it on standard input")
    return line.rstrip("\r\n")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.errors import NotebookError, NotebookValidationError
    from bptwin.eln.services import NotebookService

    try:
        notebook = NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    try:
        return int(args.batch_handler(args, notebook, settings))
    except NotebookValidationError as exc:
        _say(f"{exc.field}: {exc.message}" if exc.field not in str(exc) else str(exc))
        return 1
    except NotebookError as exc:
        _say(str(exc))
        return 1
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    finally:
        notebook.engine.dispose()


def _actor(args: argparse.Namespace, settings: Settings) -> str:
    actor = args.operator or settings.station.operator
    if not actor:
        raise SettingsError("say who writes: --operator NAME (or set [station] operator)")
    return str(actor)


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    from bptwin.eln.errors import NotebookValidationError

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise NotebookValidationError(field, f"{field} {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise NotebookValidationError(field, f"{field} {value!r} needs its zone (e.g. +00:00)")
    return moment


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def _number(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}"


def _list(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    if args.campaign:
        from bptwin.tui.commands.campaign_report import print_campaign

        return print_campaign(args, settings)
    if args.phase or args.json:
        raise SettingsError("--phase and --json go with --campaign")
    batches = notebook.batches.list_batches(args.status)
    closures = {batch.number: notebook.batches.get_closure(batch.number) for batch in batches}
    print(f"{'batch':>6}  phase  {'status':<9} {'reactor':<8} {'ended':<21} closure")
    for batch in batches:
        closure = closures[batch.number]
        if closure is None:
            state = "—"
        elif closure.signed_off_by:
            state = f"closed by {closure.signed_off_by}"
        else:
            state = f"recorded ({closure.outcome}), not signed"
        print(
            f"{batch.number:>6}  {batch.phase.value:<5}  {batch.status.value:<9} "
            f"{batch.reactor_id or '—':<8} {_when(batch.ended_at):<21} {state}"
        )
    if not batches:
        print("no batches")
    return 0


def _show(args: argparse.Namespace, notebook: NotebookService, _settings: Settings) -> int:
    from bptwin.eln.signatures import manifestation

    batch = notebook.batches.get_batch(args.number)
    print(f"Batch {batch.number} · phase {batch.phase.value} · {batch.status.value}")
    print(f"  strain {batch.strain or '—'} · medium lot {batch.medium_lot or '—'}")
    print(f"  inoculated {_when(batch.inoculated_at)} · ended {_when(batch.ended_at)}")
    if batch.ended_by:
        why = f": {batch.end_reason}" if batch.end_reason else ""
        print(f"  ended by {batch.ended_by}{why}")
    closure = notebook.batches.get_closure(args.number)
    if closure is None:
        print("Closure: not recorded")
    else:
        print(f"Closure: {closure.outcome}, recorded by {closure.recorded_by or '—'}")
        print(
            f"  final OD600 {_number(closure.final_od600)} · final DCW "
            f"{_number(closure.final_dcw_g_per_l, ' g/L')} · harvest "
            f"{_number(closure.harvest_volume_ml, ' mL')}"
        )
        if closure.missing_samples_reason:
            print(f"  fewer samples: {closure.missing_samples_reason}")
        print(f"  closed by {closure.signed_off_by or '— (not signed yet)'}")
    samples = notebook.samples.list_samples(args.number)
    print(f"Samples: {len(samples)}")
    for change in notebook.process_changes.list_process_changes(args.number):
        approval = f"approved by {change.approved_by}" if change.approved_by else "NOT APPROVED"
        print(
            f"Change #{change.id}: {change.parameter} {change.old_value or '?'} → "
            f"{change.new_value} at {_when(change.planned_at)} ({approval})"
        )
    for media in notebook.preparation.list_media_preparations(args.number):
        recipe = ", ".join(f"{name} {amount:g}" for name, amount in media.recipe.items())
        print(f"Medium #{media.id}: {recipe} · autoclave {media.autoclave_cycle or '—'}")
    signatures = notebook.signatures.list_signatures(batch_number=args.number)
    if signatures:
        print("Signatures:")
        for signature in signatures:
            print(f"  {signature.table_name} {signature.record_id}: {manifestation(signature)}")
    return 0


def _end(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    batch = notebook.batches.end_batch(
        _actor(args, settings), args.number, ended_at=_moment(args.at, "end time")
    )
    print(f"batch {batch.number} ended {_when(batch.ended_at)}; next: bptwin batch closure")
    return 0


def _abort(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    batch = notebook.batches.end_batch(
        _actor(args, settings),
        args.number,
        aborted=True,
        reason=args.reason,
        ended_at=_moment(args.at, "end time"),
    )
    print(f"batch {batch.number} aborted {_when(batch.ended_at)}: {batch.end_reason}")
    return 0


def _closure_values(args: argparse.Namespace) -> dict[str, Any]:
    return {
        field: getattr(args, field)
        for _, field, _ in CLOSURE_OPTIONS
        if getattr(args, field) is not None
    }


def _closure(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    closure = notebook.batches.close_batch(
        _actor(args, settings), args.number, outcome=args.outcome, **_closure_values(args)
    )
    print(
        f"closure of batch {args.number} recorded ({closure.outcome}); a supervisor closes it: "
        f"bptwin batch close {args.number} --signer NAME"
    )
    return 0


def _close(args: argparse.Namespace, notebook: NotebookService, _settings: Settings) -> int:
    notebook.batches.sign_off_batch(args.signer, args.number, pin=read_signing_pin(args.signer))
    return _signed(notebook, "batch_closure", args.number)


def _amend(args: argparse.Namespace, notebook: NotebookService, _settings: Settings) -> int:
    changes = _closure_values(args)
    if args.outcome is not None:
        changes["outcome"] = args.outcome
    if not changes:
        _say("nothing to change: give the closure values that change")
        return 2
    pin = read_signing_pin(args.signer)
    notebook.batches.amend_closure(args.signer, args.number, pin=pin, reason=args.reason, **changes)
    return _signed(notebook, "batch_closure", args.number)


def _signed(notebook: NotebookService, table: str, batch_number: int | None = None) -> int:
    """Print the newest signature of ``table`` (of the batch): its manifestation."""
    from bptwin.eln.signatures import manifestation

    signatures = notebook.signatures.list_signatures(batch_number=batch_number, table_name=table)
    print(f"signed: {manifestation(signatures[-1])}")
    return 0


def _media(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    from bptwin.eln import form_rules

    if args.recipe is None:
        preparations = notebook.preparation.list_media_preparations(args.number)
        for media in preparations:
            recipe = ", ".join(f"{name}={amount:g}" for name, amount in media.recipe.items())
            sterile = {True: "sterile", False: "NOT sterile", None: "sterility not checked"}
            print(
                f"#{media.id} {_when(media.prepared_at)} by {media.prepared_by}: {recipe} · "
                f"autoclave {media.autoclave_cycle or '—'} · {sterile[media.sterility_ok]}"
            )
        if not preparations:
            print(f"batch {args.number}: no media preparations recorded")
        return 0
    media = notebook.preparation.record_media_preparation(
        _actor(args, settings),
        args.number,
        recipe=form_rules.recipe("recipe", args.recipe),  # type: ignore[arg-type]
        autoclave_cycle=args.autoclave,
        sterility_ok=None if args.sterile is None else args.sterile == "y",
        prepared_at=_moment(args.at, "preparation time"),
        notes=args.notes,
    )
    print(f"medium #{media.id} recorded for batch {args.number}")
    return 0


def _changes(args: argparse.Namespace, notebook: NotebookService, _settings: Settings) -> int:
    changes = notebook.process_changes.list_process_changes(args.number)
    for change in changes:
        approval = (
            f"approved by {change.approved_by} {_when(change.approved_at)}"
            if change.approved_by
            else "waiting for a supervisor's approval"
        )
        print(
            f"#{change.id} {_when(change.planned_at)} {change.parameter}: "
            f"{change.old_value or '?'} → {change.new_value} · {approval}"
            + (f" · {change.reason}" if change.reason else "")
        )
    if not changes:
        print(f"batch {args.number}: no process changes")
    return 0


def _plan_change(args: argparse.Namespace, notebook: NotebookService, settings: Settings) -> int:
    planned = _moment(args.at, "planned time") or notebook.clock()
    change = notebook.process_changes.plan_process_change(
        _actor(args, settings),
        args.number,
        parameter=args.parameter,
        old_value=args.old,
        new_value=args.new,
        planned_at=planned,
        reason=args.reason,
    )
    print(
        f"process change #{change.id} planned; a supervisor approves it: "
        f"bptwin batch approve-change {change.id} --signer NAME"
    )
    return 0


def _approve_change(
    args: argparse.Namespace, notebook: NotebookService, _settings: Settings
) -> int:
    pin = read_signing_pin(args.signer)
    change = notebook.process_changes.approve_process_change(args.signer, args.change_id, pin=pin)
    return _signed_record(notebook, "process_change", int(change.id or 0))


def _review_deviation(
    args: argparse.Namespace, notebook: NotebookService, _settings: Settings
) -> int:
    pin = read_signing_pin(args.signer)
    deviation = notebook.deviations.review_deviation(
        args.signer,
        args.deviation_id,
        root_cause=args.root_cause,
        corrective_action=args.corrective_action,
        impact=args.impact,
        close=args.close,
        pin=pin,
    )
    return _signed_record(notebook, "deviation", int(deviation.id or 0))


def _signed_record(notebook: NotebookService, table: str, record_id: int) -> int:
    from bptwin.eln.signatures import manifestation

    signatures = notebook.signatures.list_signatures(table_name=table, record_id=record_id)
    print(f"signed: {manifestation(signatures[-1])}")
    return 0
