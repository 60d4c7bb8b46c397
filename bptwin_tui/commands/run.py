"""``bptwin run``: the control room (the default when no sub-command is given)."""

from __future__ import annotations

import argparse

from bptwin_tui.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start the terminal control room (default)",
        description="Start the Textual control room with the acquisition configured in settings.",
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="speed factor of a simulated or replayed batch (overrides acquisition.speed)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin_tui.app import BptwinApp

    if getattr(args, "speed", None) is not None:
        settings.acquisition.speed = args.speed
    return BptwinApp(settings, require_login=True).run() or 0
