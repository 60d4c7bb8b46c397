"""The ``bptwin`` command line: parses arguments, loads settings, runs one sub-command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bptwin.tui import __version__
from bptwin.tui.commands import COMMANDS
from bptwin.tui.settings import SettingsError, load_settings, secrets_in_world_readable_file

log = logging.getLogger("bptwin")

DESCRIPTION = """\
bptwin: terminal control room and digital shadow for Pichia pastoris glycerol batches.

With no sub-command, starts the control room (same as 'bptwin run'). With nothing
configured it runs on embedded defaults: a simulated reactor, an in-process bus and
SQLite files in the user's data folder.
"""

EPILOG = """\
settings: --config FILE, else the user's config file if present, then BPTWIN_... environment
overrides (e.g. BPTWIN_BUS__BACKEND=mqtt). See docs/configuration.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bptwin",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="settings file (TOML)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity on stderr (default: WARNING)",
    )
    parser.add_argument("--version", action="version", version=f"bptwin {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bptwin.tui.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "run"])
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"bptwin: {exc}", file=sys.stderr)
        return 2
    if args.config is not None:
        for key in secrets_in_world_readable_file(args.config):
            print(
                f"bptwin: warning: {args.config} is readable by other users and holds {key}; "
                f"run 'chmod 600 {args.config}'",
                file=sys.stderr,
            )
    try:
        return int(args.func(args, settings) or 0)
    except SettingsError as exc:
        print(f"bptwin: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
