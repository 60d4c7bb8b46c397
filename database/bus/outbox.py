"""Store-and-forward for MQTT publishes: a durable outbox between ``publish`` and the broker.

``MqttBus(outbox_path=...)`` appends every QoS >= 1 publish to a
:class:`~bptwin.database.spool.Spool` (one SQLite transaction, so it survives SIGKILL once
``publish`` returned) and a sender thread hands the oldest items to paho while the broker is
connected, at most ``max_inflight`` ahead of the broker's PUBACKs. An item leaves the outbox only
when the broker acknowledged it, so a broker outage, a restart of the broker or of this process
loses nothing; replay keeps the original order. After a process kill an item the broker had
acknowledged just before may be sent once more: delivery is at least once, and the stores key
readings by reactor/channel/timestamp, so a repeat overwrites instead of duplicating."""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bptwin.database.backoff import Backoff
from bptwin.database.spool import Spool, SpoolError

log = logging.getLogger("bptwin.database.bus.outbox")

# send(topic, payload, qos, retain) -> the paho message id, or None when paho took nothing.
Sender = Callable[[str, bytes, int, bool], "int | None"]

_HEADER = struct.Struct("!BBH")  # qos, retain, topic length (topics are < 64 KiB by MQTT)
DEFAULT_MAX_INFLIGHT = 500


def encode_message(topic: str, payload: bytes, qos: int, retain: bool) -> bytes:
    """One outbox item: a small binary header, the UTF-8 topic, then the payload as is."""
    raw_topic = topic.encode("utf-8")
    return _HEADER.pack(qos, int(retain), len(raw_topic)) + raw_topic + payload


def decode_message(item: bytes) -> tuple[str, bytes, int, bool]:
    qos, retain, length = _HEADER.unpack_from(item)
    start = _HEADER.size
    topic = item[start : start + length].decode("utf-8")
    return topic, bytes(item[start + length :]), qos, bool(retain)


class BusOutbox:
    """Durable FIFO of outgoing messages with a sender thread; see the module docstring."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        fsync: bool = False,
        poll_s: float = 0.05,
    ) -> None:
        self.spool = Spool(path, fsync=fsync)
        self.max_inflight = max_inflight
        self.poll_s = poll_s
        self._inflight: dict[int, int] = {}  # paho mid -> spool id, sender thread only
        self._sent_through = 0  # highest spool id handed to paho in this process
        self._acked_mids: collections.deque[int] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._max_depth = self.spool.depth()
        self.delivered = 0
        self.last_error: str | None = None

    # -- producer side -------------------------------------------------------------------------

    def push(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Append a message; it is on disk when this returns (raises SpoolError if not)."""
        self.spool.push(encode_message(topic, payload, qos, retain))
        depth = self.spool.depth()
        if depth > self._max_depth:
            self._max_depth = depth
        self._wake.set()

    def confirm(self, mid: int) -> None:
        """The broker acknowledged message ``mid`` (paho's network thread: never blocks)."""
        self._acked_mids.append(mid)
        self._wake.set()

    # -- state ---------------------------------------------------------------------------------

    def depth(self) -> int:
        """Messages not yet acknowledged by the broker (waiting or in flight)."""
        return self.spool.depth()

    @property
    def max_depth(self) -> int:
        """The deepest the outbox has been since it was opened (for the soak benchmark)."""
        return self._max_depth

    # -- sender thread -------------------------------------------------------------------------

    def start(self, send: Sender, connected: Callable[[], bool]) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        # Anything in flight in an earlier run was never confirmed here: send it again.
        self._inflight.clear()
        self._sent_through = 0
        self._thread = threading.Thread(
            target=self._run, args=(send, connected), name="mqtt-outbox", daemon=True
        )
        self._thread.start()

    def drain(self, timeout: float) -> bool:
        """Wait until the broker acknowledged everything pushed so far; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.spool.depth() > 0:
            if time.monotonic() >= deadline or self._thread is None:
                return False
            self._wake.set()
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """End the sender; unacknowledged messages stay on disk for the next start."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(10.0)
        self._confirm_acked()

    def close(self) -> None:
        self.stop()
        self.spool.close()

    def _run(self, send: Sender, connected: Callable[[], bool]) -> None:
        backoff = Backoff(1.0, 30.0)  # a failing spool file is retried less and less often
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            try:
                self._confirm_acked()
                if connected():
                    self._send_more(send)
                backoff.reset()
            except SpoolError as exc:
                self.last_error = str(exc)
                log.error("MQTT outbox: %s", exc)
                backoff.wait(self._stop)
            except Exception as exc:  # the sender must outlive surprises; data stays on disk
                self.last_error = str(exc)
                log.exception("MQTT outbox sender error")
                backoff.wait(self._stop)

    def _confirm_acked(self) -> None:
        done: list[int] = []
        while self._acked_mids:
            spool_id = self._inflight.pop(self._acked_mids.popleft(), None)
            if spool_id is not None:
                done.append(spool_id)
        if done:
            self.spool.ack(done)
            self.delivered += len(done)

    def _send_more(self, send: Sender) -> None:
        room = self.max_inflight - len(self._inflight)
        while room > 0 and not self._stop.is_set():
            items = self.spool.peek(max_items=min(room, 200), after_id=self._sent_through)
            if not items:
                return
            for item in items:
                raw = item.payload if isinstance(item.payload, bytes) else item.payload.encode()
                try:
                    topic, payload, qos, retain = decode_message(raw)
                except (struct.error, UnicodeDecodeError) as exc:
                    self.spool.reject([item], f"unreadable outbox item: {exc}")
                    self._sent_through = item.id
                    continue
                mid = send(topic, payload, qos, retain)
                if mid is None:
                    return  # paho's queue is full or the link just went: try again later
                self._inflight[mid] = item.id
                self._sent_through = item.id
                room -= 1
            self._confirm_acked()
