"""The health view of a station: each link up or down, what waits on disk, what was refused.

One view feeds both places an operator looks: the status strip (``LinkState`` in the live
snapshot) and ``/health`` of ``bptwin serve``. A link that is down while its data waits on
local disk makes the station *degraded*; no reading for ``stale_after_s``, or a problem that
needs a person (two acquisitions of one reactor), makes it *unhealthy*.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bptwin.twin.live import LinkState

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.database.recorder import Recorder
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.eln.write_queue import SpooledNotebook
    from bptwin.tui.runtime.wiring import Runtime
    from bptwin.tui.settings import Settings

HealthStatus = Literal["ok", "degraded", "unhealthy"]


@dataclass(frozen=True, slots=True)
class Health:
    """``/health``'s answer: 200 when ok, 503 with the problems otherwise."""

    status: HealthStatus
    problems: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return self.status == "ok"

    @property
    def http_status(self) -> int:
        return 200 if self.healthy else 503

    def to_json(self) -> bytes:
        return json.dumps({"status": self.status, "problems": list(self.problems)}).encode()


def judge(
    links: Iterable[LinkState],
    *,
    newest_reading_at: float | None,
    started: float,
    now: float,
    stale_after_s: float,
    urgent: Iterable[str] = (),
    waiting: Iterable[str] = (),
) -> Health:
    """Degraded for a link that is down or a step ``waiting`` for one; unhealthy for no
    readings or an ``urgent`` problem."""
    degraded = [
        f"{link.name} link down" + (f": {link.detail}" if link.detail else "")
        for link in links
        if not link.up
    ]
    degraded += waiting
    unhealthy = list(urgent)
    since = newest_reading_at if newest_reading_at is not None else started
    if now - since > stale_after_s:
        what = "no reading since start" if newest_reading_at is None else "no reading"
        unhealthy.append(f"{what} for {now - since:.0f} s (limit {stale_after_s:g} s)")
    status: HealthStatus = "unhealthy" if unhealthy else "degraded" if degraded else "ok"
    return Health(status, (*degraded, *unhealthy))


def bus_link(settings: Settings, bus: Bus) -> LinkState:
    """The bus as the status strip shows it: broker reachable, messages waiting in the outbox."""
    if settings.bus.backend == "local":
        return LinkState("bus", bus.connected, 0, "in-process")
    waiting = int(getattr(bus, "outbox_depth", 0))
    where = f"{settings.bus.host}:{settings.bus.port}"
    detail = where if bus.connected else f"broker {where} unreachable; messages kept on disk"
    return LinkState("bus", bus.connected, waiting, detail)


def store_link(store: TimeSeriesStore, recorder: Recorder | None) -> LinkState:
    """The time-series store: its server answers, and how many readings wait for it."""
    status = store.status()
    buffered = recorder.stats().buffered if recorder is not None else 0
    waiting = status.pending + status.spooled + buffered
    detail = "" if status.link_ok else f"{status.last_error or 'unreachable'}; spooled"
    return LinkState("timeseries", status.link_ok, waiting, detail)


def notebook_link(notebook: SpooledNotebook, schema_problem: str | None = None) -> LinkState:
    """The notebook database: reachable and migrated, and how many writes wait on disk."""
    state = notebook.status()
    up = state.up and schema_problem is None
    detail = ""
    if not up:
        detail = f"{schema_problem or state.last_error or 'unreachable'}; queued"
    if state.rejected:
        detail = f"{detail}; {state.rejected} refused on replay".lstrip("; ")
    return LinkState("notebook", up, state.waiting, detail)


class HealthView:
    """Links, refused inputs and the health judgement of one running station."""

    def __init__(
        self,
        runtime: Callable[[], Runtime | None],
        *,
        schema_problem: Callable[[], str | None] = lambda: None,
        urgent: Callable[[], list[str]] = list,
        waiting: Callable[[], list[str]] = list,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._schema_problem = schema_problem
        self._urgent = urgent
        self._waiting = waiting
        self._clock = clock
        self._urgent_shown = 0  # problems of the last update on the strip (to clear them)

    def links(self) -> list[LinkState]:
        runtime = self._runtime()
        if runtime is None:
            return []
        return [
            bus_link(runtime.settings, runtime.bus),
            store_link(runtime.store, runtime.recorder),
            notebook_link(runtime.notebook, self._schema_problem()),
        ]

    def rejected_inputs(self) -> dict[str, int]:
        """Inputs refused with a reason since start, by source and reason (all logged too).

        MQTT payloads that are not a valid reading (bus), lines or messages a driver refused
        (e.g. a serial checksum), notebook writes refused for their values, readings refused at
        admission (``"<origin> <reason>"``: clock skew, unknown reactor or channel, a channel
        another source owns), readings the store refused or kept aside as a conflict, and operator
        commands from the bus (alarm, control) that were not valid (``"operator command
        <reason>"``: unsigned, bad signature, stale, unknown operator...).
        """
        runtime = self._runtime()
        if runtime is None:
            return {}
        counts: dict[str, int] = {}
        if runtime.bus.stats.malformed:
            counts["mqtt payload"] = runtime.bus.stats.malformed
        for driver in runtime.drivers:
            for reason, count in driver.stats.rejected_by_reason.items():
                key = f"{driver.name} {reason}"
                counts[key] = counts.get(key, 0) + count
        if runtime.notebook.refused_inputs:
            counts["notebook form"] = runtime.notebook.refused_inputs
        counts.update(runtime.intake.rejected_counts())
        if runtime.commands is not None:  # forged, stale or unknown operators' alarm commands
            for reason, count in runtime.commands.invalid_counts().items():
                counts[f"operator command {reason}"] = count
        status = runtime.store.status()
        for what, count in (("refused", status.refused), ("conflict", status.conflicts)):
            if count:
                counts[f"store {what}"] = count
        return counts

    def clock_problems(self) -> list[str]:
        """Clock faults now: sources stamping readings ahead of the station clock."""
        runtime = self._runtime()
        return runtime.intake.problems() if runtime is not None else []

    def update(self) -> None:
        """Links and refused inputs into the live values (the status strip)."""
        runtime = self._runtime()
        if runtime is None:
            return
        for link in self.links():
            runtime.latest.set_link(link)
        faults = self.clock_problems()
        runtime.latest.set_problem("clock", "; ".join(faults) if faults else None)
        rejected = self.rejected_inputs()
        total = sum(rejected.values())
        by_source = ", ".join(f"{source} {count}" for source, count in sorted(rejected.items()))
        runtime.latest.set_problem(
            "input", f"rejected input: {total} ({by_source})" if total else None
        )
        urgent = self._urgent() + self._waiting()
        for index in range(max(len(urgent), self._urgent_shown)):
            runtime.latest.set_problem(
                f"urgent-{index}", urgent[index] if index < len(urgent) else None
            )
        self._urgent_shown = len(urgent)

    def health(self) -> Health:
        runtime = self._runtime()
        if runtime is None:
            return Health("unhealthy", ("station not running",))
        return judge(
            self.links(),
            newest_reading_at=runtime.metrics.newest_reading_at(),
            started=runtime.metrics.started,
            now=self._clock(),
            stale_after_s=runtime.settings.metrics.stale_after_s,
            urgent=self._urgent(),
            waiting=self._waiting(),
        )
