"""What the API reads from: the notebook's services, the time-series store, the model registries,
the reactors configured, and where its metrics and health come from."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from bptwin.database.relational import RelationalStoreError
from bptwin.database.timeseries.base import TimeSeriesError, TimeSeriesStore
from bptwin.eln.api_tokens import ApiTokenService
from bptwin.eln.errors import NotebookError
from bptwin.eln.services import NotebookService
from bptwin.tui.api.config import ApiSettings
from bptwin.tui.runtime.health import Health
from bptwin.twin.registry import Registry

CHANNEL_LIST_TTL_S = 5.0


@dataclass
class ApiContext:
    """Everything one API app reads; built by bptwin.tui.api.server from the settings."""

    notebook: NotebookService
    store: TimeSeriesStore
    reactors: tuple[str, ...]
    model_registries: tuple[tuple[str, Registry], ...]
    limits: ApiSettings = field(default_factory=ApiSettings)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    health: Callable[[], Health] | None = None
    clock: Callable[[], float] = time.monotonic
    _channels: tuple[float, list[tuple[str, str]]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens(self) -> ApiTokenService:
        return ApiTokenService(self.notebook.unit)

    def stored_channels(self) -> list[tuple[str, str]]:
        """``(reactor, channel)`` pairs holding data, re-read from the store every few seconds."""
        now = self.clock()
        with self._lock:
            cached = self._channels
        if cached is not None and now - cached[0] < CHANNEL_LIST_TTL_S:
            return cached[1]
        pairs = self.store.list_channels()
        with self._lock:
            self._channels = (now, pairs)
        return pairs

    def known_reactors(self) -> list[str]:
        stored = {reactor for reactor, _ in self.stored_channels()}
        return sorted(stored | set(self.reactors))

    def check_health(self) -> Health:
        """The station's judgement inside ``bptwin serve``; else: can notebook and store answer?"""
        if self.health is not None:
            return self.health()
        problems: list[str] = []
        try:
            self.notebook.audit.audit_trail(limit=1)
        except (NotebookError, RelationalStoreError) as exc:
            problems.append(f"notebook: {exc}")
        try:
            status = self.store.status()
            if not status.link_ok:
                problems.append(f"time-series store {status.name}: {status.last_error or 'down'}")
        except TimeSeriesError as exc:
            problems.append(f"time-series store: {exc}")
        return Health("unhealthy" if problems else "ok", tuple(problems))
