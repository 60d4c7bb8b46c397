"""Alarm notifications beyond the screen: webhook, MQTT topic, mail.

:class:`Notifier` takes alarm transitions from the acquisition and delivers the ones that
matter (raised alarms of ``min_priority`` or more urgent; by default critical only) on its own
thread. :meth:`Notifier.notify` only puts on a bounded queue, so a slow mail server or a dead
webhook never holds up acquisition. Each channel is retried on its own with exponential
back-off with jitter (``bptwin.database.backoff``); a notification that still fails after the
last retry is logged and counted.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from bptwin.database.backoff import Backoff
from bptwin.twin.alarm_rules import PRIORITY_RANK, Priority
from bptwin.twin.alarms import AlarmState, AlarmTransition, transition_payload

log = logging.getLogger(__name__)

NOTIFY_STATES = frozenset({AlarmState.ACTIVE_UNACK})  # raised (or raised again)


class DeliveryFailed(Exception):
    """One attempt on one channel failed; the message says why (never holds a secret)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What every channel sends: a subject line, a plain-text body and the JSON payload."""

    subject: str
    body: str
    payload: dict[str, Any]

    @classmethod
    def from_transition(cls, transition: AlarmTransition, station: str = "") -> Notification:
        t = transition
        where = f"{station}/{t.reactor}" if station else t.reactor
        subject = f"[bptwin {t.priority.value.upper()}] {where}: {t.message}"
        value = "" if t.value is None else f"\nvalue: {t.value:g}"
        channel = f"\nchannel: {t.channel}" if t.channel else ""
        body = (
            f"{t.message}\n\nreactor: {t.reactor}{channel}{value}\n"
            f"alarm: {t.alarm_id} ({t.priority.value})\nstate: {t.to_state.value}\n"
            f"at: {transition_payload(t)['at']}\n"
        )
        payload = {"station": station, **transition_payload(t)}
        return cls(subject=subject, body=body, payload=payload)


_WAKE_UP = Notification(subject="", body="", payload={})  # ends the thread's wait at stop()


class Channel(Protocol):
    name: str

    def send(self, notification: Notification) -> None:
        """Deliver once or raise :class:`DeliveryFailed`."""


class WebhookChannel:
    """HTTP(S) POST of the JSON payload (plus ``text`` for chat webhooks)."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"webhook URL must be http(s)://host/...: {parts.scheme}://...")
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        # Webhook URLs often carry a secret in their path: log only scheme, host and port.
        self.name = f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def send(self, notification: Notification) -> None:
        body = json.dumps({"text": notification.subject, **notification.payload}).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "bptwin-notify"},
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"{self.name} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryFailed(f"{self.name} unreachable: {reason}") from None


class MqttChannel:
    """The JSON payload on one topic of the station's bus (QoS 1, not retained)."""

    def __init__(self, topic: str, publish: Callable[[str, bytes], None]) -> None:
        self.topic = topic
        self.publish = publish
        self.name = f"mqtt {topic}"

    def send(self, notification: Notification) -> None:
        try:
            self.publish(self.topic, json.dumps(notification.payload).encode())
        except Exception as exc:  # the bus's own error types vary; report, then retry
            raise DeliveryFailed(f"{self.name}: {exc}") from None


class SmtpChannel:
    """A plain-text mail through an SMTP server (STARTTLS, implicit TLS or none)."""

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        recipients: Sequence[str],
        security: Literal["starttls", "ssl", "none"] = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not recipients:
            raise ValueError("a mail channel needs at least one recipient")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.security = security
        self.username = username
        self.password = password
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.name = f"mail {host}:{port}"

    def message(self, notification: Notification) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = notification.subject
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail.set_content(notification.body)
        return mail

    def send(self, notification: Notification) -> None:
        context = self.ssl_context or ssl.create_default_context()
        try:
            if self.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with client:
                if self.security == "starttls":
                    client.starttls(context=context)
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(self.message(notification))
        except smtplib.SMTPException as exc:
            raise DeliveryFailed(f"{self.name}: {exc}") from None
        except OSError as exc:
            raise DeliveryFailed(f"{self.name} unreachable: {exc}") from None


@dataclass
class ChannelStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0  # gave up after the last retry
    last_error: str | None = None


@dataclass
class NotifierStats:
    accepted: int = 0  # notifications queued
    filtered: int = 0  # transitions below min_priority or not a raise
    dropped: int = 0  # queue full
    channels: dict[str, ChannelStats] = field(default_factory=dict)


@dataclass(order=True)
class _Attempt:
    due: float
    sequence: int
    channel_index: int = field(compare=False)
    notification: Notification = field(compare=False)
    attempt: int = field(compare=False, default=0)
    backoff: Backoff | None = field(compare=False, default=None)


class Notifier:
    """Background delivery of notifications to every channel, with retries."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        min_priority: Priority = Priority.CRITICAL,
        states: frozenset[AlarmState] = NOTIFY_STATES,
        retries: int = 5,
        backoff_s: float = 2.0,
        max_backoff_s: float = 300.0,
        queue_size: int = 1000,
        station: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channels = list(channels)
        self.min_priority = min_priority
        self.states = states
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.station = station
        self._clock = clock
        self._queue: queue.Queue[Notification] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # notifications taken off the queue whose attempts are not all done
        self._sequence = itertools.count()
        self._stats = NotifierStats(channels={c.name: ChannelStats() for c in self.channels})

    # -- caller side (acquisition threads): never blocks --

    def wants(self, transition: AlarmTransition) -> bool:
        """True for a transition this notifier sends (state and priority)."""
        return (
            transition.to_state in self.states
            and PRIORITY_RANK[transition.priority] <= PRIORITY_RANK[self.min_priority]
        )

    def notify_transition(self, transition: AlarmTransition) -> bool:
        """Queue a transition if it is wanted; False when filtered out or the queue is full."""
        if not self.wants(transition):
            with self._lock:
                self._stats.filtered += 1
            return False
        return self.notify(Notification.from_transition(transition, self.station))

    def notify(self, notification: Notification) -> bool:
        """Queue any notification (e.g. a test message from ``bptwin doctor``)."""
        try:
            self._queue.put_nowait(notification)
        except queue.Full:
            with self._lock:
                self._stats.dropped += 1
            log.error("notification queue full; dropped: %s", notification.subject)
            return False
        with self._lock:
            self._stats.accepted += 1
        return True

    @property
    def stats(self) -> NotifierStats:
        with self._lock:
            return NotifierStats(
                accepted=self._stats.accepted,
                filtered=self._stats.filtered,
                dropped=self._stats.dropped,
                channels={k: ChannelStats(**vars(v)) for k, v in self._stats.channels.items()},
            )

    # -- life cycle --

    def start(self) -> Notifier:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()
        return self

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered or given up (for tests and shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._queue.empty():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining if remaining is not None else 1.0)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is due within ``timeout``, then give up the rest (logged)."""
        self.wait_idle(timeout)
        self._stop.set()
        # Ends the thread's wait on the queue now (a full queue means it is not waiting).
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE_UP)
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))
            self._thread = None

    # -- the delivery thread --

    def _run(self) -> None:
        pending: list[_Attempt] = []
        while True:
            now = self._clock()
            wait = 0.5 if not pending else max(0.0, min(0.5, pending[0].due - now))
            if self._stop.is_set():
                break
            try:
                notification = self._queue.get(timeout=wait)
            except queue.Empty:
                notification = None
            if notification is _WAKE_UP:
                continue
            if notification is not None:
                with self._lock:
                    self._busy += len(self.channels)
                for index in range(len(self.channels)):
                    heapq.heappush(
                        pending, _Attempt(self._clock(), next(self._sequence), index, notification)
                    )
            while pending and pending[0].due <= self._clock() and not self._stop.is_set():
                self._attempt(heapq.heappop(pending), pending)
        if pending:
            log.error("notifier stopped with %d deliveries not done", len(pending))

    def _attempt(self, attempt: _Attempt, pending: list[_Attempt]) -> None:
        channel = self.channels[attempt.channel_index]
        try:
            channel.send(attempt.notification)
        except Exception as exc:  # a channel bug must not end the thread
            error = str(exc) if isinstance(exc, DeliveryFailed) else f"{type(exc).__name__}: {exc}"
            self._failed_attempt(channel.name, attempt, error, pending)
            return
        with self._idle:
            self._stats.channels[channel.name].sent += 1
            self._busy -= 1
            self._idle.notify_all()

    def _failed_attempt(
        self, name: str, attempt: _Attempt, error: str, pending: list[_Attempt]
    ) -> None:
        with self._idle:
            stats = self._stats.channels[name]
            stats.last_error = error
            if attempt.attempt < self.retries:
                stats.retried += 1
                if attempt.backoff is None:
                    attempt.backoff = Backoff(
                        self.backoff_s, max(self.backoff_s, self.max_backoff_s)
                    )
                delay = attempt.backoff.next_delay()
                attempt.attempt += 1
                attempt.due = self._clock() + delay
                attempt.sequence = next(self._sequence)
                heapq.heappush(pending, attempt)
                log.warning("%s; retry %d in %.1f s", error, attempt.attempt, delay)
                return
            stats.failed += 1
            self._busy -= 1
            self._idle.notify_all()
        log.error("%s; gave up on: %s", error, attempt.notification.subject)
