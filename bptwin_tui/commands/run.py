"""``bptwin run``: the control room (the default when no sub-command is given)."""

from __future__ import annotations

import argparse

from bptwin.tui.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start the terminal control room (default)",
        description=(
            "Start the Textual control room with the acquisition configured in settings; "
            "when an acquisition already runs (bptwin serve), attach to it as a viewer."
        ),
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="speed factor of a simulated or replayed batch (overrides acquisition.speed)",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="a browser session (started by 'bptwin web'): read-only unless [web] allow_writes "
        "and an operator logs in with a PIN",
    )
    # Passed by 'bptwin web', which migrated the notebook once at start: its sessions skip it.
    parser.add_argument("--notebook-migrated", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.tui.app import BptwinApp
    from bptwin.tui.runtime.viewer import station_for

    if getattr(args, "speed", None) is not None:
        settings.acquisition.speed = args.speed
    # A simulated or replayed run gets reactors of its own (sim-R1): never a real batch's.
    settings = settings.simulation_kept_apart()
    # A running acquisition (e.g. 'bptwin serve') is watched, not started a second time.
    web = bool(getattr(args, "web", False))
    if web:  # a browser session watches a real acquisition, never runs one (closing a tab ends it)
        from bptwin.tui.runtime.web_session import web_station_for

        factory = web_station_for
    else:
        factory = station_for
    migrate = not getattr(args, "notebook_migrated", False)
    app = BptwinApp(
        settings,
        station_factory=factory,  # type: ignore[arg-type]
        require_login=True,
        web=web,
        migrate=migrate,
    )
    return app.run() or 0
