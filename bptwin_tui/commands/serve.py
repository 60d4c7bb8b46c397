"""``bptwin serve``: the same acquisition without a UI, for a service manager."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings

if TYPE_CHECKING:
    from bptwin.tui.api.server import ApiServer
    from bptwin.tui.runtime.prometheus import MetricsServer
    from bptwin.tui.runtime.station import Station

log = logging.getLogger(__name__)

EXIT_REFUSED = 2  # a configuration error or another live acquisition: restarting cannot help


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run acquisition and storage headless (for systemd)",
        description=(
            "Run drivers, bus and stores without the UI until SIGTERM or SIGINT. "
            "This is the always-on mode: the TUI can be closed without losing data."
        ),
    )
    parser.add_argument("--speed", type=float, help="simulated/replay speed factor")
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop by itself after S seconds (for tests)"
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    if args.speed is not None:
        settings.acquisition.speed = args.speed
    # A simulated or replayed run gets reactors of its own (sim-R1): never a real batch's.
    # Imported here: every command's parser is built at start-up, and the station pulls in
    # numpy, the bus and the drivers (a browser session's process would pay for them too).
    from bptwin.tui.runtime.station import Station

    settings = settings.simulation_kept_apart()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Headless: no screen draws trends, so none are kept (memory per reactor stays small).
    station = Station(settings, keep_trends=False)
    # Raises SettingsError (exit 2) only for a setting that cannot work or a live acquisition
    # of a reactor elsewhere; a server that is away makes a degraded start, not a failed one.
    station.start()
    for warning in station.warnings:
        log.warning("bptwin serve: %s", warning)
    if settings.metrics.enabled or settings.api.enabled:
        station.watch_metrics(station.metrics)
    metrics_server = start_metrics(settings, station)
    api_server = start_api(settings, station)
    log.warning("bptwin serve: acquisition running for %s", ", ".join(settings.station.reactors))
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop.is_set() and not station.conflicted.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            stop.wait(0.5 if remaining is None else min(0.5, remaining))
    finally:
        if api_server is not None:
            api_server.stop()
        if metrics_server is not None:
            metrics_server.stop()
        station.stop()
    snapshot = station.snapshot()
    log.warning("bptwin serve: stopped after %d readings", snapshot.readings_total)
    if station.conflict:
        print(f"bptwin: {station.conflict}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def start_metrics(settings: Settings, station: Station) -> MetricsServer | None:
    """/metrics and /health on the loopback port of ``[metrics]``, when enabled."""
    if not settings.metrics.enabled:
        return None
    from bptwin.tui.runtime.prometheus import start_metrics_server

    try:
        server = start_metrics_server(station.metrics, settings.metrics.host, settings.metrics.port)
    except OSError as exc:  # port taken: acquisition matters more than its metrics
        log.error(
            "bptwin serve: metrics.port: cannot listen on %s:%s: %s",
            settings.metrics.host,
            settings.metrics.port,
            exc,
        )
        return None
    log.warning("bptwin serve: metrics on %s/metrics, health on %s/health", server.url, server.url)
    return server


def start_api(settings: Settings, station: Station) -> ApiServer | None:
    """The read-only HTTP API on ``[api]`` host:port when enabled, with the station's store,
    metrics and health (docs/api.md)."""
    if not settings.api.enabled or station.store is None:
        return None
    from bptwin.tui.api.server import start_in_station
    from bptwin.tui.settings import SettingsError

    try:
        server = start_in_station(settings, station.store, station.metrics)
    except (OSError, SettingsError) as exc:  # acquisition matters more than the API
        log.error("bptwin serve: api: %s", exc)
        return None
    log.warning("bptwin serve: read-only API on %s (docs/api.md)", server.url)
    return server
