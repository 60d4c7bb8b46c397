"""Running the API: its context from the settings, and uvicorn on a socket of our own.

:class:`ApiServer` binds the socket first (a taken port is a plain error at once, port 0 picks
a free one) and runs uvicorn in a thread, so ``bptwin serve`` can run it beside acquisition and
tests can start and stop it; ``bptwin api serve`` runs it in the foreground.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from bptwin.tui.api.app import create_app
from bptwin.tui.api.context import ApiContext
from bptwin.tui.settings import Settings, SettingsError
from bptwin.tui.settings_ops import is_loopback

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.tui.runtime.health import Health
    from bptwin.tui.runtime.prometheus import StationMetrics
    from bptwin.twin.registry import Registry

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


def model_registries(settings: Settings) -> tuple[tuple[str, Registry], ...]:
    from bptwin.twin.registry import SHIPPED_MODELS_DIR, Registry, user_registry

    return (("user", user_registry(settings.data_dir)), ("shipped", Registry(SHIPPED_MODELS_DIR)))


def open_read_store(settings: Settings) -> TimeSeriesStore:
    """The time-series store for reading, apart from the one ``bptwin serve`` writes through
    (the InfluxDB store gets a spool of its own, which stays empty)."""
    from bptwin.tui.runtime.stores import build_store

    return build_store(settings, reader="api")


def context_from_settings(
    settings: Settings,
    *,
    store: TimeSeriesStore | None = None,
    registry: CollectorRegistry | None = None,
    health: Callable[[], Health] | None = None,
    migrate: bool = True,
) -> ApiContext:
    """The API's context: the notebook at ``notebook.url`` (migrated first, like the station
    does), ``store`` or one opened for reading, and ``registry`` for the metrics."""
    from prometheus_client import CollectorRegistry

    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import RelationalStoreError
    from bptwin.eln.services import NotebookService

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if migrate:
            upgrade(settings.notebook_url())
        notebook = NotebookService.from_url(
            settings.notebook_url(), calibration_policy=settings.calibration.policy()
        )
    except RelationalStoreError as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    return ApiContext(
        notebook=notebook,
        store=store if store is not None else open_read_store(settings),
        reactors=tuple(settings.station.reactors),
        model_registries=model_registries(settings),
        limits=settings.api,
        registry=registry if registry is not None else CollectorRegistry(),
        health=health,
    )


class ApiServer:
    """uvicorn serving the API on ``host:port`` in a daemon thread."""

    def __init__(self, context: ApiContext, host: str = "127.0.0.1", port: int = 0) -> None:
        self.context = context
        self.app = create_app(context)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError as exc:
            self._socket.close()
            raise OSError(f"api.port: cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", server_header=False
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        if not is_loopback(host):
            log.warning(
                "api: listening on %s, not loopback: put it behind a TLS reverse proxy "
                "(docs/operations.md)",
                host,
            )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.run,
                kwargs={"sockets": [self._socket]},
                name="api-http",
                daemon=True,
            )
            self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def run(self) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (uvicorn handles them)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None
        self._socket.close()


def start_in_station(
    settings: Settings, store: TimeSeriesStore, metrics: StationMetrics
) -> ApiServer:
    """The API inside ``bptwin serve``: the station's store, metrics registry and health
    (the station has migrated the notebook already)."""
    context = context_from_settings(
        settings, store=store, registry=metrics.registry, health=metrics.health, migrate=False
    )
    return ApiServer(context, settings.api.host, settings.api.port).start()
