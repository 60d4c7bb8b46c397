"""``bptwin operator``: who may sign the notebook, and lifting a PIN lockout.

    bptwin operator list
    bptwin operator unlock NAME --supervisor SUPERVISOR

The supervisor's PIN is read from ``BPTWIN_SUPERVISOR_PIN`` or asked for (not echoed); a
wrong one counts towards the supervisor's own lockout. See docs/security.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.eln.services import NotebookService


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="list operators and their PIN lockouts; unlock one (supervisor)",
        description="Operators of the lab notebook. After 5 wrong PINs in a row an operator is "
        "locked out for a delay that doubles with every further wrong PIN (30 s up to 1 h); "
        "'unlock' lifts it at once, by a supervisor whose name and PIN are checked (audited).",
    )
    actions = parser.add_subparsers(dest="operator_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="operators, roles, wrong PINs and lockouts")
    listing.set_defaults(func=handle_list)
    unlock = actions.add_parser("unlock", help="lift an operator's PIN lockout (supervisor)")
    unlock.add_argument("name", help="login name of the locked operator")
    unlock.add_argument("--supervisor", required=True, help="supervisor's login name")
    unlock.set_defaults(func=handle_unlock)


def _notebook(settings: Settings) -> NotebookService:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService

    try:
        return NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.text_safety import terminal_safe

    for operator in _notebook(settings).operators.list_operators():
        state = "active" if operator.active else "deactivated"
        if operator.locked_until is not None:
            state += f", locked until {operator.locked_until:%Y-%m-%d %H:%M:%S} UTC"
        line = (
            f"{operator.name:<16} {operator.role.value:<10} {state}, "
            f"{operator.failed_pins} wrong PIN(s) in a row  {operator.display_name}"
        )
        print(terminal_safe(line, single_line=True))
    return 0


def handle_unlock(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError
    from bptwin.eln.text_safety import terminal_safe
    from bptwin.tui.commands.accept import read_pin

    notebook = _notebook(settings)
    try:
        supervisor = notebook.operators.authenticate(args.supervisor, read_pin(args.supervisor))
        notebook.operators.unlock_operator(supervisor.name, args.name)
    except NotebookError as exc:
        print(terminal_safe(f"bptwin operator: not unlocked: {exc}"), file=sys.stderr)
        return 1
    print(terminal_safe(f"operator {args.name} unlocked by {supervisor.name} (audited)"))
    return 0
