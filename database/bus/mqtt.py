"""MQTT bus on paho-mqtt 2.x (MQTT 5): reconnects by itself and resubscribes everything.

Delivery is at least once for QoS 1: a message is acknowledged to the broker (PUBACK)
only after its handlers ran, and the session outlives a connection loss, so the broker
re-sends what was in flight. Handlers run on the bus's dispatcher thread, never on
paho's network thread, so a slow or failing handler cannot stall keep-alives.

Store-and-forward: with ``outbox_path`` every QoS >= 1 publish goes to a durable outbox on
disk first (database/bus/outbox.py) and reaches the broker from there, in order, once it is
reachable; an outage or a killed process loses nothing that ``publish`` accepted.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bptwin.database.bus import topics
from bptwin.database.bus.base import DEFAULT_MAX_PENDING, Bus, _check_qos, _Route, as_bytes
from bptwin.database.bus.outbox import BusOutbox
from bptwin.database.spool import SpoolError

log = logging.getLogger("bptwin.database.bus.mqtt")

# QoS >= 1 messages published while disconnected wait in paho's memory up to this many
# (with in-flight ones). At 19 single-reading messages/s that is ~88 min of outage; with
# snapshot payloads (one message/s) about a day. Beyond it publish() drops and counts.
DEFAULT_MAX_QUEUED = 100_000
DEFAULT_MAX_INFLIGHT = 1_000
_instance_numbers = itertools.count(1)


def default_client_id() -> str:
    """``bptwin-<hostname>-<pid>``, with a suffix for the second bus of one process."""
    number = next(_instance_numbers)
    base = f"bptwin-{socket.gethostname()[:32]}-{os.getpid()}"
    return base if number == 1 else f"{base}-{number}"


class MqttBus(Bus):
    """Bus over an MQTT broker (Mosquitto). ``start()`` raises OSError if it cannot connect.

    With an explicit ``client_id`` the broker keeps the session (subscriptions and queued
    QoS 1 messages) for ``session_expiry_s`` (default 1 h) after a disconnect or restart;
    with the generated id the session lives 5 min for reconnects and ends at ``stop()``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        keepalive: int = 30,
        certfile: str | None = None,
        keyfile: str | None = None,
        session_expiry_s: int | None = None,
        max_queued_messages: int = DEFAULT_MAX_QUEUED,
        max_inflight_messages: int = DEFAULT_MAX_INFLIGHT,
        max_pending: int = DEFAULT_MAX_PENDING,
        connect_timeout_s: float = 10.0,
        stop_flush_s: float = 5.0,
        reconnect_delay_s: tuple[int, int] = (1, 30),
        outbox_path: str | Path | None = None,
        not_queued: tuple[str, ...] = (),
    ) -> None:
        super().__init__(max_pending=max_pending, name="mqtt-bus")
        self.host = host
        self.port = port
        self._persistent = client_id is not None
        self.client_id = client_id or default_client_id()
        self._username = username
        self._password = password
        self._tls = tls or ca_file is not None or certfile is not None
        self._ca_file = ca_file
        self._certfile = certfile
        self._keyfile = keyfile
        self._keepalive = keepalive
        if session_expiry_s is None:
            session_expiry_s = 3600 if self._persistent else 300
        self._session_expiry_s = session_expiry_s
        self._connect_timeout_s = connect_timeout_s
        self._stop_flush_s = stop_flush_s
        self._state_lock = threading.RLock()
        self._started = False
        self._stopping = False
        self._connected = False
        self._ever_connected = False
        self._connack = threading.Event()
        self._subacks: dict[int, threading.Event] = {}
        self._subacks_lock = threading.Lock()
        self._suback_timeout_s = connect_timeout_s
        self._connack_failure: str | None = None
        # One broker subscription per distinct pattern, tagged with a subscription
        # identifier so each arriving message names the patterns it matched.
        # Never taken around a paho call: the network thread needs it in _on_message,
        # and stop() waits for that thread.
        self._ids_lock = threading.Lock()
        self._pattern_ids: dict[str, int] = {}
        self._patterns_by_id: dict[int, str] = {}
        self._next_id = itertools.count(1)

        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        self._client.max_queued_messages_set(max_queued_messages)
        self._client.max_inflight_messages_set(max_inflight_messages)
        self._client.reconnect_delay_set(*reconnect_delay_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self.outbox: BusOutbox | None = None
        # Topic patterns never stored and forwarded (commands: late is worse than never).
        self._not_queued = tuple(topics.validate_pattern(p) for p in not_queued)
        if outbox_path is not None:
            try:
                self.outbox = BusOutbox(outbox_path)
            except SpoolError as exc:
                raise OSError(f"MQTT outbox: {exc}") from exc

    # --- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        with self._state_lock:
            if self._started:
                return
            self._configure_security()
            self._stopping = False
            self._start_dispatcher()
            self._connack.clear()
            self._connack_failure = None
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
            clean_start: Any = False if self._persistent else paho.MQTT_CLEAN_START_FIRST_ONLY
            try:
                self._client.connect(
                    self.host,
                    self.port,
                    keepalive=self._keepalive,
                    clean_start=clean_start,
                    properties=properties,
                )
            except OSError as exc:
                self._stop_dispatcher()
                raise ConnectionError(
                    f"cannot connect to the MQTT broker at {self.host}:{self.port}: {exc}"
                ) from exc
            self._client.loop_start()
            answered = self._connack.wait(self._connect_timeout_s)
            if not answered or self._connack_failure is not None:
                self._client.loop_stop()
                self._client.disconnect()
                self._stop_dispatcher()
                if not answered:
                    raise TimeoutError(
                        f"MQTT broker at {self.host}:{self.port} did not answer CONNECT "
                        f"within {self._connect_timeout_s:.0f} s"
                    )
                raise ConnectionRefusedError(
                    f"MQTT broker at {self.host}:{self.port} refused the connection: "
                    f"{self._connack_failure}"
                )
            self._started = True
            if self.outbox is not None:
                self.outbox.start(self._send_from_outbox, lambda: self._connected)

    def stop(self) -> None:
        with self._state_lock:
            if not self._started:
                return
            self._stopping = True
            # Handlers see (and acknowledge) everything that arrived before stop().
            self._stop_dispatcher()
            if self.outbox is not None:
                if self._connected and not self.outbox.drain(self._stop_flush_s):
                    log.warning(
                        "MQTT stop: %d messages stay in the outbox %s for the next start",
                        self.outbox.depth(), self.outbox.spool.path,
                    )  # fmt: skip
                self.outbox.stop()
            if self._connected and not self.flush(self._stop_flush_s):
                log.warning(
                    "MQTT stop: %d QoS 1 messages not yet acknowledged by %s:%s are lost",
                    self.unacknowledged, self.host, self.port,
                )  # fmt: skip
            properties = None
            if not self._persistent:
                # Nobody can resume a generated id's session: let the broker drop it now.
                properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
            self._client.loop_stop()
            # Arrived after the dispatcher ended, never acknowledged: the broker re-sends
            # them to a resumed session, so delivering them later would only duplicate.
            self._discard_pending()
            self._connected = False
            self._started = False

    @property
    def connected(self) -> bool:
        return self._connected

    def watcher(self) -> MqttBus:
        """A second, lightweight connection to the same broker with the same credentials.

        No outbox and a session of its own (a generated client id): for best-effort
        subscriptions (e.g. counting what arrives for unknown reactors) that must never
        take the place of this bus's own messages in the broker's queue for it.
        """
        return MqttBus(
            self.host,
            self.port,
            username=self._username,
            password=self._password,
            tls=self._tls,
            ca_file=self._ca_file,
            certfile=self._certfile,
            keyfile=self._keyfile,
            keepalive=self._keepalive,
            connect_timeout_s=self._connect_timeout_s,
        )

    @property
    def unacknowledged(self) -> int:
        """QoS >= 1 messages published but not yet acknowledged by the broker."""
        # paho has no public counter; its outgoing-message table is what we would count.
        in_paho = len(getattr(self._client, "_out_messages", ()))
        return max(in_paho, self.outbox.depth()) if self.outbox is not None else in_paho

    @property
    def outbox_depth(self) -> int:
        """Messages waiting in the durable outbox for the broker (0 without an outbox)."""
        return self.outbox.depth() if self.outbox is not None else 0

    def close(self) -> None:
        """Stop and close the outbox file (a stopped bus without close() can start again)."""
        self.stop()
        if self.outbox is not None:
            self.outbox.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the broker acknowledged every QoS >= 1 publish; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.unacknowledged:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # --- messages --------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Send a message; QoS >= 1 ones are queued by paho while the broker is away."""
        topics.validate_topic(topic)
        _check_qos(qos)
        if any(topics.matches(pattern, topic) for pattern in self._not_queued):
            if not self._connected:
                raise ConnectionError(
                    f"MQTT broker {self.host}:{self.port} unreachable: {topic} not sent "
                    "(commands are not queued, they must not arrive late)"
                )
        elif self.outbox is not None and qos > 0:
            try:
                self.outbox.push(topic, as_bytes(payload), qos, retain)
                self._counters.add("published")
                return
            except SpoolError as exc:  # disk full or gone: fall back to paho's memory queue
                log.error("MQTT outbox refused a message on %s: %s", topic, exc)
        info = self._client.publish(topic, as_bytes(payload), qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
        ):
            self._counters.add("published")
            return
        self._counters.add("dropped")
        allowed, suppressed = self._dropped_log.allow()
        if allowed:
            reason = (
                "the send queue is full"
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                else "QoS 0 while disconnected"
                if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
                else paho.error_string(info.rc)
            )
            log.warning(
                "MQTT publish on %s dropped: %s (%d more drops not logged)",
                topic, reason, suppressed,
            )  # fmt: skip

    def _send_from_outbox(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """Hand one outbox message to paho; its mid, or None when paho would not queue it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return int(info.mid)  # NO_CONN: paho keeps it and sends it on reconnect
        return None

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.outbox is not None:
            self.outbox.confirm(mid)

    def _route_added(self, route: _Route) -> None:
        with self._ids_lock:
            if route.pattern not in self._pattern_ids:
                identifier = next(self._next_id)
                self._pattern_ids[route.pattern] = identifier
                self._patterns_by_id[identifier] = route.pattern
        # A known pattern is subscribed again too, so the broker sends its retained
        # messages for the new handler (as MQTT does on a resubscribe, the handlers already
        # on that pattern see them once more) and any higher QoS takes effect.
        qos = dict(self._patterns()).get(route.pattern, route.qos)
        self._subscribe(route.pattern, qos, resubscribe=False)

    def _pattern_unused(self, pattern: str) -> None:
        with self._ids_lock:
            if any(p == pattern for p, _ in self._patterns()):
                return  # a new route took the pattern up again meanwhile
            identifier = self._pattern_ids.pop(pattern, None)
            if identifier is not None:
                self._patterns_by_id.pop(identifier, None)
        if identifier is not None:
            self._client.unsubscribe(pattern)

    def _subscribe(self, pattern: str, qos: int, *, resubscribe: bool) -> None:
        """Subscribe at the broker; a new subscription waits for SUBACK while connected,
        so messages published after ``subscribe()`` returns are delivered."""
        identifier = self._pattern_ids.get(pattern)
        if identifier is None:
            return
        properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        properties.SubscriptionIdentifier = identifier
        # On a resubscribe the broker may still hold the subscription (session present):
        # retainHandling=1 stops it from sending the retained messages a second time.
        options = SubscribeOptions(
            qos=qos, noLocal=self._no_local(pattern), retainHandling=1 if resubscribe else 0
        )
        acknowledged = threading.Event()
        with self._subacks_lock:  # held so the SUBACK cannot overtake the registration
            result, mid = self._client.subscribe(pattern, options=options, properties=properties)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._subacks[mid] = acknowledged
        if result not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT subscribe to %s failed: %s", pattern, paho.error_string(result))
        # NO_CONN is fine: _on_connect subscribes every pattern on (re)connect.
        on_network_thread = threading.current_thread() is getattr(self._client, "_thread", None)
        must_wait = result == MQTTErrorCode.MQTT_ERR_SUCCESS and not resubscribe
        if must_wait and not on_network_thread and not acknowledged.wait(self._suback_timeout_s):
            log.warning("MQTT broker did not acknowledge the subscription to %s", pattern)
        if mid is not None:
            with self._subacks_lock:
                self._subacks.pop(mid, None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._subacks_lock:
            event = self._subacks.get(mid)
        if event is not None:
            event.set()
        for code in reason_codes:
            if code.is_failure:
                log.warning("MQTT broker refused a subscription: %s", code)

    def _acknowledge(self, token: Any) -> None:
        mid, qos = token
        self._client.ack(mid, qos)

    # --- paho callbacks (network thread: must never raise) ----------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                self._connack_failure = str(reason_code)
                log.error("MQTT broker %s:%s refused: %s", self.host, self.port, reason_code)
                return
            if self._ever_connected:
                self._counters.add("reconnects")
                log.info("MQTT reconnected to %s:%s", self.host, self.port)
            self._ever_connected = True
            for pattern, qos in self._patterns():
                self._subscribe(pattern, qos, resubscribe=True)
            # Connected only now: the outbox sends nothing before the SUBSCRIBEs are out,
            # so this bus's own handlers get what it replays after a reconnect.
            self._connected = True
        except Exception:
            log.exception("MQTT on_connect failed")
        finally:
            self._connack.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        if not self._stopping:
            log.warning(
                "MQTT connection to %s:%s lost (%s); reconnecting with back-off",
                self.host, self.port, reason_code,
            )  # fmt: skip

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            if self._stopping:
                return  # not acknowledged: a resumed session gets it again
            target = None
            identifiers = getattr(message.properties, "SubscriptionIdentifier", None)
            if identifiers:
                with self._ids_lock:
                    target = frozenset(
                        self._patterns_by_id[i] for i in identifiers if i in self._patterns_by_id
                    )
            ack = (message.mid, message.qos) if message.qos > 0 else None
            payload = bytes(message.payload)
            if not self._enqueue(message.topic, payload, target, ack) and ack:
                self._acknowledge(ack)  # dropped and counted; do not stall the broker
        except Exception:
            log.exception("MQTT on_message failed for %s", getattr(message, "topic", "?"))

    def _configure_security(self) -> None:
        if self._username is not None:
            self._client.username_pw_set(self._username, self._password)
        if self._tls and self._client._ssl_context is None:
            for name, path in (
                ("ca_file", self._ca_file),
                ("certfile", self._certfile),
                ("keyfile", self._keyfile),
            ):
                if path is not None and not os.path.isfile(path):
                    raise FileNotFoundError(f"MQTT {name} {path!r} does not exist")
            self._client.tls_set(
                ca_certs=self._ca_file, certfile=self._certfile, keyfile=self._keyfile
            )
