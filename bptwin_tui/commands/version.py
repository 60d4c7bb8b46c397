"""``bptwin version``: the versions that matter when reporting a problem."""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import PackageNotFoundError, version

from bptwin.tui import __version__
from bptwin.tui.settings import Settings

COMPONENTS = ("textual", "paho-mqtt", "influxdb-client", "sqlmodel", "lightgbm", "numpy", "pandas")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "version",
        help="print bptwin's version and its main libraries'",
        description="Print the version of bptwin, Python and the libraries it relies on.",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    print(f"bptwin {__version__}")
    print(f"python {platform.python_version()} ({platform.machine()})")
    for name in COMPONENTS:
        try:
            print(f"{name} {version(name)}")
        except PackageNotFoundError:
            print(f"{name} (not installed)")
    return 0
