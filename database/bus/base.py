"""The bus interface and what both implementations share: routes, dispatcher thread, stats.

Handlers never run on the publisher's thread nor on the network thread: messages go into
a queue that one dispatcher thread per bus drains in arrival order. A slow handler delays
only later handlers; a failing one is counted in ``stats.handler_errors`` and logged.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bptwin.database.bus import topics
from bptwin.database.bus.payloads import decode_any, encode_reading, encode_snapshot
from bptwin.database.reading import Reading

log = logging.getLogger("bptwin.database.bus")

MessageHandler = Callable[[str, bytes], object]  # what a handler returns is ignored
ReadingHandler = Callable[[Reading], None]

DEFAULT_MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class BusStats:
    """Counters since the bus was made (a snapshot; read ``bus.stats`` again for news).

    - published: messages handed to the bus
    - received: messages delivered to at least one handler (over MQTT 5 a message that
      matches two different patterns of one bus arrives, and counts, once per pattern)
    - malformed: payloads or topics that were not a valid reading
    - gated: messages a gate refused by their topic before they were queued
    - handler_errors: exceptions raised by handlers
    - reconnects: connections re-established after a loss
    - dropped: messages lost because a queue was full (or QoS 0 while disconnected)
    - pending: messages waiting for the dispatcher thread right now
    """

    published: int = 0
    received: int = 0
    malformed: int = 0
    gated: int = 0
    handler_errors: int = 0
    reconnects: int = 0
    dropped: int = 0
    pending: int = 0


class _Counters:
    _NAMES = (
        "published",
        "received",
        "malformed",
        "gated",
        "handler_errors",
        "reconnects",
        "dropped",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self, pending: int) -> BusStats:
        with self._lock:
            return BusStats(**self._values, pending=pending)


class _Throttle:
    """Allows one log line per interval so a flood of bad payloads cannot flood the log."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def allow(self) -> tuple[bool, int]:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._suppressed += 1
                return False, 0
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._interval_s
            return True, suppressed


@dataclass(eq=False, slots=True)
class _Route:
    pattern: str
    handler: MessageHandler
    qos: int
    active: bool = True
    since: int = 0  # sequence number at subscription: earlier messages are not for it
    no_local: bool = False  # MQTT: the broker does not send back what this client published


# Decides by its topic alone whether a message may be queued at all (False: refused, counted).
TopicGate = Callable[[str], bool]


class Subscription:
    """A live subscription; ``cancel()`` stops delivery (idempotent, callable from a handler)."""

    def __init__(self, bus: Bus, routes: list[_Route], pattern: str) -> None:
        self._bus = bus
        self._routes = routes
        self.pattern = pattern

    @property
    def active(self) -> bool:
        return any(route.active for route in self._routes)

    def cancel(self) -> None:
        for route in self._routes:
            self._bus._remove_route(route)

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.pattern!r} {state}>"


# Delivery target of a queued message: None = every matching route, a set of patterns
# (MQTT subscription identifiers) = routes with those patterns, a route = that route only.
_Target = None | frozenset[str] | _Route
_STOP = object()


class Bus(ABC):
    """Publish/subscribe with MQTT topic semantics (wildcards ``+`` and ``#``)."""

    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING, name: str = "bus") -> None:
        self._name = name
        self._max_pending = max_pending
        self._routes: list[_Route] = []
        self._routes_lock = threading.Lock()
        self._counters = _Counters()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sequence = itertools.count(1)  # orders subscriptions and messages
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._malformed_log = _Throttle()
        self._dropped_log = _Throttle()
        self._gates: tuple[tuple[str, TopicGate], ...] = ()
        self._gates_lock = threading.Lock()

    # --- the interface -------------------------------------------------------------

    @abstractmethod
    def start(self) -> None:
        """Connect (MQTT) and start delivering; idempotent."""

    @abstractmethod
    def stop(self) -> None:
        """Deliver what is queued, then disconnect; idempotent."""

    @abstractmethod
    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Send ``payload`` to every subscriber of ``topic`` (no wildcards in ``topic``)."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while messages can flow (MQTT: connected to the broker)."""

    @property
    def stats(self) -> BusStats:
        return self._counters.snapshot(pending=self._queue.qsize())

    def subscribe(
        self, pattern: str, handler: MessageHandler, *, qos: int = 1, no_local: bool = False
    ) -> Subscription:
        """Call ``handler(topic, payload)`` for every message whose topic matches ``pattern``.

        ``no_local``: over MQTT the broker does not send back what this bus published itself
        (MQTT 5 "No Local"); the in-process bus, whose every message is this process's own,
        ignores it.
        """
        topics.validate_pattern(pattern)
        _check_qos(qos)
        route = _Route(pattern, handler, qos, no_local=no_local)
        self._add_route(route)
        return Subscription(self, [route], pattern)

    def add_gate(self, pattern: str, gate: TopicGate) -> Callable[[], None]:
        """Refuse messages on topics matching ``pattern`` for which ``gate(topic)`` is False.

        Gates run as a message arrives (MQTT: on the network thread), before it is queued for
        the handlers: a refused message costs no decode and no place in the queue, and is
        acknowledged (counted in ``stats.gated``; the gate counts its own reasons). Gates must
        be cheap and thread-safe. Returns a function that removes the gate.
        """
        topics.validate_pattern(pattern)
        entry = (pattern, gate)
        with self._gates_lock:
            self._gates = (*self._gates, entry)

        def remove() -> None:
            with self._gates_lock:
                self._gates = tuple(g for g in self._gates if g is not entry)

        return remove

    def publish_reading(self, reading: Reading, *, prefix: str = topics.DEFAULT_PREFIX) -> None:
        """One reading on ``<prefix>/v1/<reactor>/sensors/<channel>`` with QoS 1."""
        topic = topics.reading_topic(reading.reactor, reading.channel, prefix)
        self.publish(topic, encode_reading(reading), qos=1)

    def publish_snapshot(
        self, readings: Iterable[Reading], *, prefix: str = topics.DEFAULT_PREFIX
    ) -> None:
        """Several channels of one reactor in one message on ``<prefix>/v1/<reactor>/sensors``."""
        readings = list(readings)
        payload = encode_snapshot(readings)
        self.publish(topics.snapshot_topic(readings[0].reactor, prefix), payload, qos=1)

    def subscribe_readings(
        self,
        handler: ReadingHandler,
        *,
        reactor: str = "+",
        channel: str = "+",
        prefix: str = topics.DEFAULT_PREFIX,
        no_local: bool = False,
    ) -> Subscription:
        """Call ``handler(reading)`` for single-reading and snapshot payloads alike.

        Subscribed with ``<prefix>/v1/<reactor>/sensors/#`` (or the one channel asked for), so
        topics with extra levels arrive and are refused by name instead of going unseen.
        Malformed payloads and topics are counted in ``stats.malformed`` and logged, never
        raised. ``no_local`` as in :meth:`subscribe` (a station skips its own echo).
        """
        snapshot = topics.snapshots_pattern(reactor, prefix)
        patterns = (
            [f"{snapshot}/#"]
            if channel == "+"
            else [topics.readings_pattern(reactor, channel, prefix), snapshot]
        )
        wanted_channel = None if channel == "+" else channel

        def on_message(topic: str, payload: bytes) -> None:
            try:
                topic_reactor, topic_channel = topics.parse_reading_topic(topic, prefix=prefix)
                readings = decode_any(payload, reactor=topic_reactor, channel=topic_channel)
            except ValueError as exc:  # ReadingError is a ValueError
                self._count_malformed(topic, payload, exc)
                return
            for reading in readings:
                if wanted_channel is None or reading.channel == wanted_channel:
                    self._call(handler, reading)

        routes = [_Route(pattern, on_message, 1, no_local=no_local) for pattern in patterns]
        for route in routes:
            self._add_route(route)
        return Subscription(self, routes, patterns[0])

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every message queued so far has been through its handlers.

        False on timeout or when the dispatcher is not running. Must not be called from a handler.
        """
        if self._worker is None or threading.current_thread() is self._worker:
            return False
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    # --- for implementations ---------------------------------------------------------

    def _add_route(self, route: _Route) -> None:
        route.since = next(self._sequence)
        with self._routes_lock:
            self._routes.append(route)
        self._route_added(route)

    def _remove_route(self, route: _Route) -> None:
        with self._routes_lock:
            if not route.active:
                return
            route.active = False
            self._routes.remove(route)
            still_used = any(other.pattern == route.pattern for other in self._routes)
        if not still_used:
            self._pattern_unused(route.pattern)

    def _route_added(self, route: _Route) -> None:  # noqa: B027 - optional hook
        """Hook: a route was added (MQTT subscribes, LocalBus replays retained messages)."""

    def _pattern_unused(self, pattern: str) -> None:  # noqa: B027 - optional hook
        """Hook: no route uses ``pattern`` any more (MQTT unsubscribes)."""

    def _acknowledge(self, token: Any) -> None:  # noqa: B027 - optional hook
        """Hook: the message carrying ``token`` went through its handlers (MQTT PUBACK)."""

    def _patterns(self) -> list[tuple[str, int]]:
        """Distinct active patterns with the highest QoS asked for each."""
        with self._routes_lock:
            best: dict[str, int] = {}
            for route in self._routes:
                best[route.pattern] = max(best.get(route.pattern, 0), route.qos)
        return list(best.items())

    def _no_local(self, pattern: str) -> bool:
        """True when every route on ``pattern`` asked not to get this bus's own messages."""
        with self._routes_lock:
            routes = [route for route in self._routes if route.pattern == pattern]
        return bool(routes) and all(route.no_local for route in routes)

    def _wait_for_room(self, timeout: float) -> None:
        """Block a publisher (never the dispatcher itself) while the queue is full."""
        if self._queue.qsize() < self._max_pending or threading.current_thread() is self._worker:
            return
        deadline = time.monotonic() + timeout
        while self._queue.qsize() >= self._max_pending and time.monotonic() < deadline:
            time.sleep(0.002)

    def _enqueue(self, topic: str, payload: bytes, target: _Target = None, ack: Any = None) -> bool:
        """Hand a message to the dispatcher thread; False (counted, logged) when full.

        A message a gate refuses is not queued and counts as handled (True).
        """
        for pattern, gate in self._gates:
            if topics.matches(pattern, topic) and not self._passes(gate, topic):
                self._counters.add("gated")
                return True
        if self._queue.qsize() >= self._max_pending:
            self._counters.add("dropped")
            allowed, suppressed = self._dropped_log.allow()
            if allowed:
                log.warning(
                    "%s: dispatcher queue full (%d messages), dropped a message on %s "
                    "(%d more drops not logged); a handler is too slow",
                    self._name, self._max_pending, topic, suppressed,
                )  # fmt: skip
            return False
        self._queue.put((topic, payload, target, ack, next(self._sequence)))
        return True

    def _passes(self, gate: TopicGate, topic: str) -> bool:
        try:
            return gate(topic)
        except Exception:  # a broken gate must not stop delivery; let the message through
            log.exception("%s: gate failed on %s", self._name, topic[:200])
            return True

    def _start_dispatcher(self) -> None:
        with self._worker_lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._dispatch_loop, name=f"{self._name}-dispatcher", daemon=True
            )
            self._worker.start()

    def _stop_dispatcher(self, timeout: float = 10.0) -> None:
        """Deliver everything queued before this call, then end the thread."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is None:
            return
        self._queue.put(_STOP)
        if threading.current_thread() is not worker:
            worker.join(timeout)
            if worker.is_alive():
                log.warning("%s: a handler is still running after %.0f s", self._name, timeout)

    def _discard_pending(self) -> int:
        """Forget queued messages (MQTT: unacknowledged, so the broker sends them again)."""
        discarded = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return discarded
            if isinstance(item, threading.Event):
                item.set()
            elif item is not _STOP:
                discarded += 1

    def _dispatch_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            topic, payload, target, ack, sequence = item
            try:
                self._deliver(topic, payload, target, sequence)
            except Exception:  # a bug here must not end delivery for good
                log.exception("%s: delivering a message on %s failed", self._name, topic)
            if ack is not None:
                try:
                    self._acknowledge(ack)
                except Exception:
                    log.exception("%s: acknowledging a message on %s failed", self._name, topic)

    def _deliver(self, topic: str, payload: bytes, target: _Target, sequence: int) -> None:
        if isinstance(target, _Route):
            routes = [target] if target.active else []
        else:
            with self._routes_lock:
                # As in MQTT, a subscription gets only messages published after it was made.
                candidates = [r for r in self._routes if r.since < sequence]
            if target is None:
                routes = [r for r in candidates if topics.matches(r.pattern, topic)]
            else:
                routes = [r for r in candidates if r.pattern in target]
        if not routes:
            return
        self._counters.add("received")
        for route in routes:
            if route.active:  # a handler before this one may have cancelled it
                self._call(route.handler, topic, payload)

    def _call(self, handler: Callable[..., object], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            self._counters.add("handler_errors")
            log.exception("%s: handler %s raised", self._name, _name_of(handler))

    def _count_malformed(self, topic: str, payload: bytes, error: Exception) -> None:
        self._counters.add("malformed")
        allowed, suppressed = self._malformed_log.allow()
        if allowed:
            log.warning(
                "%s: malformed payload on %s (%d bytes) rejected: %s%s",
                self._name, topic[:200], len(payload), error,
                f" ({suppressed} more since the last report)" if suppressed else "",
            )  # fmt: skip


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")


def _name_of(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def as_bytes(payload: bytes | bytearray | str) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"payload must be bytes or str, got {type(payload).__name__}")
