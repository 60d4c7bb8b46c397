"""``bptwin campaign``: batch acceptance rate and uptime per campaign phase, with the batches
behind each figure (the same figures as the campaign screen, from eln.campaign_service).

    bptwin campaign [--phase A|B|C ...] [--json]

:func:`add_campaign_arguments` and :func:`print_campaign` are the pieces another command (a
``batch list --campaign``) can reuse. See docs/process.md, "Campaign figures".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from bptwin.tui.settings import Settings, SettingsError

COMMAND = "campaign"

if TYPE_CHECKING:
    from bptwin.eln.campaign_figures import CampaignFigures, PhaseFigures


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "campaign",
        help="batch acceptance rate and uptime per campaign phase, with their batches",
        description=(
            "The campaign at a glance: per phase (A, B, C) the batch acceptance rate (accepted "
            "of decided batches, target >= 80 %) and the uptime (share of the batches' "
            "running time with stored readings of every key channel, target >= 95 %), and "
            "the batches behind each figure. Uptime is read from the configured time-series "
            "store."
        ),
    )
    add_campaign_arguments(parser)
    parser.set_defaults(func=print_campaign)


def add_campaign_arguments(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """``--phase`` (and ``--json`` unless the host command has its own, which
    :func:`print_campaign` then honours too)."""
    parser.add_argument(
        "--phase",
        action="append",
        choices=["A", "B", "C"],
        help="only this phase (repeat for more; default all)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")


def _say(message: str) -> None:
    print(f"bptwin campaign: {message}", file=sys.stderr, flush=True)


def print_campaign(args: argparse.Namespace, settings: Settings) -> int:
    """Print the figures; 0 when printed, 1 when the notebook refused."""
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.campaign_service import load_campaign_figures
    from bptwin.eln.errors import NotebookError
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.stores import build_store

    try:
        notebook = NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    try:
        try:
            store = build_store(settings)
        except SettingsError as exc:
            _say(f"warning: time-series store not available ({exc}); uptime left out")
            store = None
        try:
            figures = load_campaign_figures(
                notebook,
                store,
                default_reactor=settings.station.reactors[0],
                phases=tuple(getattr(args, "phase", None) or ()),
            )
        finally:
            if store is not None:
                store.close()
    except NotebookError as exc:
        _say(str(exc))
        return 1
    finally:
        notebook.engine.dispose()
    if getattr(args, "json", False):
        print(json.dumps(figures_dict(figures), indent=2))
    else:
        print(campaign_text(figures))
    return 0


def campaign_text(figures: CampaignFigures) -> str:
    """The table of the phases, then each phase's batches behind its figures."""
    from bptwin.eln.campaign_figures import (
        ACCEPTANCE_TARGET_PCT,
        UPTIME_TARGET_PCT,
        acceptance_text,
        batch_lines,
        uptime_text,
    )

    lines = [
        f"Campaign figures at {figures.computed_at:%Y-%m-%d %H:%M} UTC "
        f"(targets: acceptance >= {ACCEPTANCE_TARGET_PCT:g} %, uptime >= {UPTIME_TARGET_PCT:g} %)",
        "",
        f"{'phase':<6} {'batches':>7}  {'acceptance':<26} uptime",
    ]
    rows = [*figures.phases, figures.overall] if figures.phases else []
    for phase in rows:
        lines.append(
            f"{phase.phase:<6} {len(phase.batches):>7}  {acceptance_text(phase):<26} "
            f"{uptime_text(phase)}".rstrip()
        )
    if not rows:
        lines.append("no batches in the notebook")
    for phase in figures.phases:
        lines += ["", f"Phase {phase.phase}", *(f"  {line}" for line in batch_lines(phase))]
    for problem in figures.problems:
        lines.append(f"note: {problem}")
    return "\n".join(lines)


def figures_dict(figures: CampaignFigures) -> dict[str, Any]:
    def phase_dict(phase: PhaseFigures) -> dict[str, Any]:
        return {
            "phase": phase.phase,
            "batches": [b.number for b in phase.batches],
            "acceptance_pct": phase.acceptance_pct,
            "acceptance_met": phase.acceptance_met,
            "accepted": list(phase.accepted),
            "rejected": list(phase.rejected),
            "awaiting_decision": list(phase.awaiting_decision),
            "not_ended": list(phase.not_ended),
            "uptime_pct": phase.uptime_pct,
            "uptime_met": phase.uptime_met,
            "uptime_per_batch": {
                str(b.number): {
                    "uptime_pct": b.uptime_pct,
                    "running_s": b.uptime.running_s,
                    "longest_gap_s": b.uptime.longest_gap_s,
                    "channels": list(b.uptime.channels),
                }
                for b in phase.uptime_batches
                if b.uptime is not None
            },
        }

    return {
        "computed_at": figures.computed_at.isoformat(),
        "phases": [phase_dict(p) for p in figures.phases],
        "overall": phase_dict(figures.overall),
        "problems": list(figures.problems),
    }
