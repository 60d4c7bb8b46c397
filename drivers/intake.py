"""Where readings enter a station: its sources' drivers and the bus, both through admission.

:class:`ReadingIntake` joins an :class:`~bptwin.drivers.sources.AcquisitionPlan` (who owns
which channel) with :class:`~bptwin.database.admission.Admission` (what may enter):

- each local source's drivers emit into a sink that admits the reading under the source's
  name before the station records and publishes it (:meth:`ReadingIntake.sink_for`);
- bptwin's own topics on the bus pass a topic gate first (unknown reactor, extra levels, a
  channel another source owns: refused before the payload is decoded or queued), then
  admission per reading (:meth:`ReadingIntake.connect_bus`).

Everything refused is counted by origin and reason (:meth:`ReadingIntake.rejected_counts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bptwin.database.admission import BUS_ORIGIN, Admission, ClockFault
from bptwin.database.bus import MqttBus, topics
from bptwin.drivers.base import ReadingSink
from bptwin.drivers.sources import AcquisitionPlan, SourceContext

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.database.reading import Reading
    from bptwin.drivers.base import Driver
    from bptwin.drivers.replay import LoadedReplay

log = logging.getLogger(__name__)


def _log_clock_fault(fault: ClockFault) -> None:
    """Without a listener of its own, a persistent clock fault goes to the log (once)."""
    log.warning("%s, for %.0f s now", fault.describe(), fault.last_at - fault.first_at)


def _ignore(topic: str, payload: bytes) -> None:
    """The watcher's handler: its gate refuses every message before it would get here."""


class ReadingIntake:
    """The plan's drivers and the bus subscription, every reading admitted or counted."""

    def __init__(
        self,
        plan: AcquisitionPlan,
        *,
        max_clock_skew_s: float,
        history_horizon_s: float,
        clock_fault_after_s: float,
        clock: Callable[[], float] | None = None,
        on_clock_fault: Callable[[ClockFault], None] | None = None,
    ) -> None:
        """``on_clock_fault`` hears once of each clock fault that persists (default: the log)."""
        self.plan = plan
        policy = plan.policy(
            max_clock_skew_s=max_clock_skew_s,
            history_horizon_s=history_horizon_s,
            clock_fault_after_s=clock_fault_after_s,
        )
        listener = on_clock_fault or _log_clock_fault
        if clock is None:
            self.admission = Admission(policy, on_clock_fault=listener)
        else:
            self.admission = Admission(policy, clock=clock, on_clock_fault=listener)
        self._removers: list[Callable[[], None]] = []
        self._watcher: MqttBus | None = None
        self._watching = False
        self._watcher_failed = False

    def sink_for(self, record: ReadingSink) -> Callable[[str], ReadingSink]:
        """Per source name, a sink that admits each reading before handing it to ``record``."""
        admit = self.admission.admit

        def sink_of(origin: str) -> ReadingSink:
            def admitted(reading: Reading) -> None:
                if admit(reading, origin) is None:
                    record(reading)

            return admitted

        return sink_of

    def build_drivers(
        self,
        record: ReadingSink,
        *,
        bus: Bus | None,
        bus_is_mqtt: bool,
        prefix: str,
        on_sample: Callable[[object], None] | None = None,
        replays: Mapping[str, LoadedReplay] | None = None,
    ) -> list[Driver]:
        """The drivers of every local source, emitting through admission into ``record``;
        ``replays`` are recordings loaded ahead, by source name."""
        context = SourceContext(
            sink_for=self.sink_for(record),
            station_reactors=self.plan.reactors,
            bus=bus,
            bus_is_mqtt=bus_is_mqtt,
            prefix=prefix,
            on_sample=on_sample,
            replays=dict(replays or {}),
        )
        return self.plan.build_drivers(context)

    def connect_bus(
        self, bus: Bus, record: ReadingSink, *, prefix: str, bus_is_mqtt: bool
    ) -> list[Subscription]:
        """Receive bptwin's own reading topics of the station's reactors, gated and admitted.

        The station subscribes to its configured reactors only (``<prefix>/v1/R1/sensors/#``
        each), so the broker never sends it a flood for another reactor: such a flood cannot
        fill the broker's queue for the station and push real readings out. What arrives for
        other reactors is counted on a second, best-effort connection (:meth:`MqttBus.watcher`,
        QoS 0) whose gate refuses everything before it is queued.

        Over MQTT the broker does not send back this station's own publishes (No Local), so
        any reading on a channel a local source owns came from someone else and is counted
        (``acquired_locally``); on the in-process bus every message is this process's own,
        and its echo is skipped without counting.
        """
        gate = self.admission.topic_gate(prefix, echo_expected=not bus_is_mqtt)
        pattern = f"{topics.snapshots_pattern('+', prefix)}/#"
        self._removers.append(bus.add_gate(pattern, gate))
        admit = self.admission.admit

        def from_bus(reading: Reading) -> None:
            if admit(reading, BUS_ORIGIN) is None:
                record(reading)

        subscriptions = [
            bus.subscribe_readings(from_bus, reactor=reactor, prefix=prefix, no_local=bus_is_mqtt)
            for reactor in self.plan.reactors
        ]
        if isinstance(bus, MqttBus):
            self._watch_others(bus, prefix)
        return subscriptions

    def _watch_others(self, bus: MqttBus, prefix: str) -> None:
        """Count (best effort) readings published for reactors this station does not have."""
        watcher = bus.watcher()
        pattern = f"{topics.snapshots_pattern('+', prefix)}/#"
        self._removers.append(watcher.add_gate(pattern, self.admission.foreign_gate(prefix)))
        watcher.subscribe(pattern, _ignore, qos=0)
        self._watcher = watcher
        self.start_watcher()

    def start_watcher(self) -> bool:
        """Connect the counting watcher; False while its broker does not answer (try again).

        True when it runs or there is none (not MQTT). Counting is a courtesy: acquisition goes
        on without it, so a station started before its broker retries this once it connects.
        """
        watcher = self._watcher
        if watcher is None or self._watching:
            return True
        try:
            watcher.start()
        except OSError as exc:
            # Said once; the retries while the broker stays away only go to the debug log.
            level = logging.DEBUG if self._watcher_failed else logging.WARNING
            log.log(level, "not counting readings for unknown reactors yet: %s", exc)
            self._watcher_failed = True
            return False
        if self._watcher_failed:
            log.info("counting readings for unknown reactors again")
        self._watching = True
        self._watcher_failed = False
        return True

    def disconnect_bus(self) -> None:
        """Stop the best-effort watcher and remove the gates (the station stops its bus)."""
        for remove in self._removers:
            remove()
        self._removers.clear()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
            self._watching = False

    def rejected_counts(self) -> dict[str, int]:
        """Readings refused at admission, as ``{"<origin> <reason>": count}``."""
        return {
            f"{origin} {reason}": count
            for (origin, reason), count in self.admission.stats().discarded.items()
        }

    def problems(self) -> list[str]:
        """Clock faults now, for the status strip (the discards show as rejected input)."""
        return [fault.describe() for fault in self.admission.clock_faults()]
