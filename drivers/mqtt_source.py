"""Driver for sensors that publish over MQTT: subscribes on a Bus and emits mapped readings.

The :class:`~bptwin.drivers.topic_map.TopicMap` says which topics to read and how; bptwin's own
contract (``docs/mqtt.md``) is the default. A payload that cannot be read is counted under its
reason (``malformed``, ``wrong_type``, ``timestamp``, ``too_large``, ``unmapped``,
``missing_field``) and logged at a rate limit; it never stops the source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from bptwin.database.backoff import Backoff
from bptwin.drivers.base import Driver, DriverStats, ReadingSink
from bptwin.drivers.topic_map import PayloadError, TopicMap

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription


class MqttSourceDriver(Driver):
    """Reads ``topic_map``'s topics from ``bus`` until stopped.

    ``manage_bus`` starts and stops the bus with the driver (a bus of its own on the lab's
    broker); leave it False when the bus is shared and started by the wiring. When the
    map reads bptwin's own reading topics and the sink republishes onto the same broker,
    pass ``sink_prefix`` so the loop is refused up front.
    """

    def __init__(
        self,
        sink: ReadingSink,
        bus: Bus,
        topic_map: TopicMap | None = None,
        *,
        reactor: str = "R1",
        name: str = "mqtt",
        qos: int = 1,
        manage_bus: bool = False,
        sink_prefix: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, reactor, sink)
        self.bus = bus
        self.topic_map = topic_map or TopicMap.default()
        if sink_prefix is not None and self.topic_map.overlaps_prefix(sink_prefix):
            raise ValueError(
                f"{name}: the topic map reads '{sink_prefix}/v1/...' reading topics that the "
                "sink publishes on the same broker; that would loop. Map the lab's own topics "
                "only, or read bptwin's topics from a different broker."
            )
        self.qos = qos
        self.manage_bus = manage_bus
        self._clock = clock
        self._subscriptions: list[Subscription] = []

    def run(self, stop: threading.Event) -> None:
        if self.manage_bus and not self._start_bus(stop):
            return
        try:
            self._subscriptions = [
                self.bus.subscribe(pattern, self.handle_message, qos=self.qos)
                for pattern in self.topic_map.subscriptions()
            ]
            while not stop.is_set():
                self._set_connected(self.bus.connected)
                stop.wait(0.5)
        finally:
            for subscription in self._subscriptions:
                subscription.cancel()
            self._subscriptions = []
            self._set_connected(False)
            if self.manage_bus:
                self.bus.stop()

    def _start_bus(self, stop: threading.Event) -> bool:
        """Connect the driver's own bus, retrying with backoff while the broker is away."""
        backoff = Backoff(0.5, 30.0)
        while not stop.is_set():
            try:
                self.bus.start()
                return True
            except OSError as exc:
                self._count_error("connect", f"cannot reach the broker: {exc}")
                backoff.wait(stop)
        return False

    def handle_message(self, topic: str, payload: bytes) -> int:
        """Decode one message and emit its readings; returns how many were emitted."""
        try:
            readings = self.topic_map.decode(
                topic, payload, arrived_at=self._clock(), default_reactor=self.reactor
            )
        except PayloadError as exc:
            self._reject(exc.reason, f"{topic[:120]}: {exc}")
            return 0
        except Exception as exc:  # a decoder bug must not kill the bus's network thread
            self._count_error("decode", f"{topic[:120]}: unexpected {exc!r}")
            return 0
        return sum(self._emit(reading) for reading in readings)

    @property
    def stats(self) -> DriverStats:
        """The driver's counters; reconnects are the bus's, the link this source depends on."""
        own = super().stats
        bus_reconnects = getattr(getattr(self.bus, "stats", None), "reconnects", 0)
        return replace(own, reconnects=own.reconnects + int(bus_reconnects or 0))
