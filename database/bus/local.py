"""In-process bus: the default when no broker is configured; MQTT semantics without a network."""

from __future__ import annotations

import threading

from bptwin.database.bus import topics
from bptwin.database.bus.base import DEFAULT_MAX_PENDING, Bus, _check_qos, _Route, as_bytes


class LocalBus(Bus):
    """Thread-safe in-process bus with MQTT topic matching and retained messages.

    ``publish`` only enqueues (it never runs a handler), so a failing handler cannot break
    the publisher. Messages published before ``start()`` are delivered once it is called.
    When ``max_pending`` messages wait, ``publish`` waits up to ``full_wait_s`` for room
    (back-pressure: a simulated batch at full speed slows to what the subscribers take
    instead of losing readings); after that new ones are dropped and counted in
    ``stats.dropped``.
    """

    def __init__(
        self, *, max_pending: int = DEFAULT_MAX_PENDING, full_wait_s: float = 10.0
    ) -> None:
        super().__init__(max_pending=max_pending, name="local-bus")
        self.full_wait_s = full_wait_s
        self._running = False
        self._retained: dict[str, bytes] = {}
        self._retained_lock = threading.Lock()

    def start(self) -> None:
        self._start_dispatcher()
        self._running = True

    def stop(self) -> None:
        self._running = False
        self._stop_dispatcher()

    @property
    def connected(self) -> bool:
        return self._running

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        topics.validate_topic(topic)
        _check_qos(qos)
        data = as_bytes(payload)
        if retain:
            with self._retained_lock:
                # As in MQTT, an empty retained payload clears the retained message.
                if data:
                    self._retained[topic] = data
                else:
                    self._retained.pop(topic, None)
        self._counters.add("published")
        self._wait_for_room(self.full_wait_s)
        self._enqueue(topic, data)

    def _route_added(self, route: _Route) -> None:
        with self._retained_lock:
            retained = [
                (topic, data)
                for topic, data in self._retained.items()
                if topics.matches(route.pattern, topic)
            ]
        for topic, data in retained:
            self._enqueue(topic, data, target=route)
