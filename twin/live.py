"""The live view of a station: latest readings, process state, prediction and alarms per reactor.

Workers write into ``LiveState``; the UI only ever sees ``LiveSnapshot`` copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bptwin.database.reading import Reading

if TYPE_CHECKING:
    from bptwin.twin.alarms import AlarmCounts, AlarmView
    from bptwin.twin.control import Recommendation
    from bptwin.twin.features import ProcessState
    from bptwin.twin.predictor import Prediction

# One shared empty mapping, the default of every mapping field below whatever its key and value.
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LinkState:
    """One link of the data path (bus, time-series store, notebook) as the status strip shows it."""

    name: str
    up: bool
    waiting: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """What the screens draw from: never mutated after it is made."""

    taken_at: float
    latest: Mapping[tuple[str, str], Reading] = field(default_factory=lambda: _EMPTY)
    readings_total: int = 0
    states: Mapping[str, ProcessState] = field(default_factory=lambda: _EMPTY)
    predictions: Mapping[str, Prediction] = field(default_factory=lambda: _EMPTY)
    alarms: tuple[AlarmView, ...] = ()
    alarm_counts: AlarmCounts | None = None
    model_version: str = ""
    problems: tuple[str, ...] = ()
    advice: Mapping[str, tuple[Recommendation, ...]] = field(default_factory=lambda: _EMPTY)
    control_status: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    links: tuple[LinkState, ...] = ()

    def for_reactor(self, reactor: str) -> list[Reading]:
        return sorted(
            (reading for (name, _), reading in self.latest.items() if name == reactor),
            key=lambda reading: reading.channel,
        )

    def alarms_for(self, reactor: str) -> tuple[AlarmView, ...]:
        return tuple(alarm for alarm in self.alarms if alarm.reactor == reactor)


class LatestValues:
    """Thread-safe collector fed by the bus and the twin worker; ``snapshot()`` copies it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Reading] = {}
        self._total = 0
        self._states: dict[str, ProcessState] = {}
        self._predictions: dict[str, Prediction] = {}
        self._alarms: tuple[AlarmView, ...] = ()
        self._alarm_counts: AlarmCounts | None = None
        self._problems: dict[str, str] = {}
        self._advice: dict[str, tuple[Recommendation, ...]] = {}
        self._control_status: dict[str, str] = {}
        self._links: dict[str, LinkState] = {}
        self.model_version = ""

    def add(self, reading: Reading) -> None:
        key = (reading.reactor, reading.channel)
        with self._lock:
            self._total += 1
            current = self._latest.get(key)
            if current is None or reading.timestamp >= current.timestamp:
                self._latest[key] = reading

    def set_state(self, state: ProcessState) -> None:
        with self._lock:
            self._states[state.reactor] = state

    def set_prediction(self, prediction: Prediction) -> None:
        with self._lock:
            self._predictions[prediction.reactor] = prediction

    def set_alarms(self, alarms: tuple[AlarmView, ...], counts: AlarmCounts) -> None:
        with self._lock:
            self._alarms, self._alarm_counts = alarms, counts

    def set_advice(
        self, reactor: str, advice: tuple[Recommendation, ...], control_status: str
    ) -> None:
        with self._lock:
            self._advice[reactor] = advice
            self._control_status[reactor] = control_status

    def set_problem(self, source: str, problem: str | None) -> None:
        """A standing problem in plain words (e.g. the model failed), or None when it is gone."""
        with self._lock:
            if problem:
                self._problems[source] = problem
            else:
                self._problems.pop(source, None)

    def set_link(self, link: LinkState) -> None:
        """The latest state of one link, replacing the previous state of the same name."""
        with self._lock:
            self._links[link.name] = link

    def snapshot(self) -> LiveSnapshot:
        with self._lock:
            return LiveSnapshot(
                taken_at=time.time(),
                latest=MappingProxyType(dict(self._latest)),
                readings_total=self._total,
                states=MappingProxyType(dict(self._states)),
                predictions=MappingProxyType(dict(self._predictions)),
                alarms=self._alarms,
                alarm_counts=self._alarm_counts,
                model_version=self.model_version,
                problems=tuple(self._problems.values()),
                advice=MappingProxyType(dict(self._advice)),
                control_status=MappingProxyType(dict(self._control_status)),
                links=tuple(self._links.values()),
            )
