"""``bptwin api``: serve the read-only HTTP API, and manage its tokens (a supervisor's job)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.eln.api_tokens import ApiTokenService


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "api",
        help="read-only HTTP API for LIMS and scripts: serve it, manage its tokens",
        description="The read-only HTTP API (docs/api.md): batches, samples, calibrations, "
        "deviations, alarms, acceptance decisions, model versions and channel ranges, each "
        "request with a bearer token that a supervisor made.",
    )
    actions = parser.add_subparsers(dest="api_action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the API in the foreground until Ctrl-C / SIGTERM",
        description="Serve the API on [api] host:port (default 127.0.0.1:8100). Bind to "
        "loopback and put a TLS reverse proxy in front to reach it from elsewhere "
        "(docs/operations.md).",
    )
    serve.add_argument("--host", help="bind address (default: [api] host)")
    serve.add_argument("--port", type=int, help="port (default: [api] port)")
    serve.set_defaults(func=handle_serve)

    openapi = actions.add_parser(
        "openapi",
        help="print the OpenAPI schema (JSON)",
        description="Print the API's OpenAPI schema; docs/openapi.json is this output.",
    )
    openapi.set_defaults(func=handle_openapi)

    token = actions.add_parser(
        "token",
        help="create, revoke or list API tokens (supervisor name and PIN)",
        description="Tokens are made and revoked by a supervisor, whose PIN is asked for (or "
        "read as one line from standard input when it is not a terminal). Both are entries "
        "of the notebook's audit trail; only a hash of each token is kept.",
    )
    token_actions = token.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    create = token_actions.add_parser(
        "create", help="make a token and print it once", description="Print a new token once."
    )
    create.add_argument("--supervisor", required=True, metavar="NAME")
    create.add_argument(
        "--label", required=True, help="who or what uses it, e.g. 'LIMS import job'"
    )
    create.set_defaults(func=handle_create)
    revoke = token_actions.add_parser(
        "revoke", help="revoke a token at once", description="Revoke token ID (see 'list')."
    )
    revoke.add_argument("--supervisor", required=True, metavar="NAME")
    revoke.add_argument("token_id", type=int, metavar="ID")
    revoke.set_defaults(func=handle_revoke)
    listing = token_actions.add_parser(
        "list", help="list tokens (never the tokens themselves)", description="List tokens."
    )
    listing.add_argument("--supervisor", required=True, metavar="NAME")
    listing.set_defaults(func=handle_list)


def handle_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.tui.api.server import ApiServer, context_from_settings

    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise SettingsError(f"--port {port} is not a port number (0-65535)")
    context = context_from_settings(settings)
    try:
        server = ApiServer(context, host, port)
    except OSError as exc:
        raise SettingsError(str(exc)) from None
    print(f"bptwin api: serving {server.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        context.store.close()
    return 0


def handle_openapi(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from bptwin.tui.api.app import openapi_document

    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
    return 0


def read_pin(supervisor: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"PIN of {supervisor}: ")
    return sys.stdin.readline().strip()


def _tokens(settings: Settings) -> ApiTokenService:
    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import RelationalStoreError
    from bptwin.eln.api_tokens import ApiTokenService
    from bptwin.eln.services import NotebookService

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade(settings.notebook_url())
        return ApiTokenService(NotebookService.from_url(settings.notebook_url()).unit)
    except RelationalStoreError as exc:
        raise SettingsError(f"notebook.url: {exc}") from None


def _refused(exc: Exception) -> int:
    print(f"bptwin api: {exc}", file=sys.stderr)
    return 1


def handle_create(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError

    tokens = _tokens(settings)
    try:
        made = tokens.create_token(args.supervisor, read_pin(args.supervisor), args.label)
    except NotebookError as exc:
        return _refused(exc)
    print(
        f"token {made.record.id} for {made.record.label!r}, made by {made.record.created_by}. "
        "It is shown only now; keep it secret:",
        file=sys.stderr,
    )
    print(made.secret)
    return 0


def handle_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError

    tokens = _tokens(settings)
    try:
        record = tokens.revoke_token(args.supervisor, read_pin(args.supervisor), args.token_id)
    except NotebookError as exc:
        return _refused(exc)
    print(f"token {record.id} ({record.label}) revoked by {record.revoked_by}")
    return 0


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError

    tokens = _tokens(settings)
    try:
        records = tokens.list_tokens(args.supervisor, read_pin(args.supervisor))
    except NotebookError as exc:
        return _refused(exc)
    if not records:
        print("no API tokens")
    for record in records:
        state = "active" if record.active else f"revoked {record.revoked_at:%Y-%m-%d %H:%M}Z"
        print(
            f"{record.id:>4}  {record.shown_prefix}…  {state:<24}  "
            f"made {record.created_at:%Y-%m-%d %H:%M}Z by {record.created_by}  {record.label}"
        )
    return 0
