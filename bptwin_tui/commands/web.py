"""``bptwin web``: the control room in a browser, served by textual-serve.

Each browser session gets its own ``bptwin run --web`` process (textual-serve starts one per
websocket); that process is read-only unless ``[web] allow_writes`` is true and the person logs
in with an operator PIN (docs/web.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from textual_serve.server import Server

    from bptwin.tui.web_config import WebSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the control room to browsers (read-only unless [web] allow_writes)",
        description="Serve the control room on [web] host:port (default 127.0.0.1:8200) with "
        "textual-serve: every browser session runs its own 'bptwin run --web', a viewer that "
        "cannot write unless [web] allow_writes is true and an operator logs in with a PIN. "
        "Only clients in [web] allowed_networks may connect; for TLS put a reverse proxy in "
        "front and set [web] public_url (docs/web.md).",
    )
    parser.add_argument("--host", help="bind address (default: [web] host)")
    parser.add_argument("--port", type=int, help="port (default: [web] port)")
    parser.set_defaults(func=handle)


def session_command(config: str | None, notebook_migrated: bool = False) -> str:
    """The shell command textual-serve runs for each browser session."""
    parts = [sys.executable, "-m", "bptwin.tui.cli"]
    if config is not None:
        parts += ["--config", config]
    parts += ["run", "--web"]
    if notebook_migrated:
        parts.append("--notebook-migrated")
    return shlex.join(parts)


def migrate_notebook(config: str | None) -> bool:
    """Migrate the notebook once here, so no session pays for it (about 1 s of CPU each).

    Run as 'bptwin db upgrade' in a process of its own: the migration tool would otherwise stay
    in this server's memory for as long as it serves. False when it cannot be done now
    (database away, folder refused): each session then migrates for itself, as without this.
    """
    command = [sys.executable, "-m", "bptwin.tui.cli"]
    if config is not None:
        command += ["--config", config]
    try:
        done = subprocess.run(
            [*command, "db", "upgrade"], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    else:
        if done.returncode == 0:
            return True
        problem = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    print(f"bptwin web: notebook not migrated here ({problem}); each session will try")
    return False


def keep_session_bytecode(settings: Settings) -> None:
    """Let every browser session reuse the bytecode an earlier one compiled.

    Each session is a new Python process; where it cannot write compiled modules (an install it
    may not write to, or ``PYTHONDONTWRITEBYTECODE`` set) it compiles every module it imports
    again, about half of its start-up CPU. Sessions write it under the data folder instead
    (``PYTHONPYCACHEPREFIX``, unless already set), never into the installation; the variables
    reach only the sessions this server starts.
    """
    folder = settings.data_dir / "web-bytecode"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # the notebook's own folder is refused too: the session will say so
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(folder))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def build_server(settings: WebSettings, command: str, host: str, port: int) -> Server:
    """A textual-serve server that turns away clients outside ``allowed_networks``."""
    from aiohttp import web
    from textual_serve.server import Server

    class GuardedServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()

            @web.middleware
            async def only_allowed(
                request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
            ) -> web.StreamResponse:
                if not settings.allows(request.remote):
                    raise web.HTTPForbidden(
                        text=f"bptwin web: {request.remote} is not in [web] allowed_networks\n"
                    )
                return await handler(request)

            app.middlewares.append(only_allowed)
            return app

    return GuardedServer(
        command,
        host=host,
        port=port,
        title="bptwin control room",
        public_url=settings.public_url or None,
    )


def handle(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.web.host
    port = settings.web.port if args.port is None else args.port
    if not 1 <= port <= 65535:
        raise SettingsError(f"--port {port} is not a port number (1-65535)")
    config = str(args.config.resolve()) if args.config is not None else None
    mode = "operators may write after a PIN login" if settings.web.allow_writes else "read-only"
    print(f"bptwin web: {mode}; clients from {', '.join(settings.web.allowed_networks)}")
    keep_session_bytecode(settings)
    command = session_command(config, notebook_migrated=migrate_notebook(config))
    build_server(settings.web, command, host, port).serve()
    return 0
