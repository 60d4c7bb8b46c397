"""``bptwin db``: schema migrations of the lab notebook."""

from __future__ import annotations

import argparse

from bptwin.tui.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "db",
        help="notebook database: upgrade the schema, show its revision",
        description="Manage the lab-notebook schema (SQLite by default, Postgres when configured).",
    )
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade",
        help="apply every pending migration",
        description="Apply pending schema migrations to notebook.url (idempotent).",
    )
    upgrade.set_defaults(func=handle_upgrade)
    current = actions.add_parser(
        "current", help="print the schema revision", description="Print the applied revision."
    )
    current.set_defaults(func=handle_current)


def handle_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import DatabaseUnavailable

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        applied = upgrade(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    if applied:
        print("applied: " + ", ".join(applied))
    else:
        print("schema already up to date")
    return 0


def handle_current(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.migrate import current_revision, head_revision
    from bptwin.database.relational import DatabaseUnavailable

    try:
        current = current_revision(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    print(f"current: {current or '(empty database)'}  head: {head_revision()}")
    return 0
