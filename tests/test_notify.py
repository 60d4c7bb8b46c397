"""Alarm notifications against local receivers: HTTP server, the real Mosquitto, SMTP server."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bptwin.database.bus import MqttBus
from bptwin.tui.runtime.notifications import (
    MqttChannel,
    Notification,
    Notifier,
    SmtpChannel,
    WebhookChannel,
)
from bptwin.tui.settings_ops import NotifySettings, notifier_from_settings
from bptwin.twin.alarm_rules import Priority
from bptwin.twin.alarms import AlarmState, AlarmTransition, alarm_id_of
from tests.fixtures.servers import free_port


def transition(
    priority: Priority = Priority.CRITICAL,
    to_state: AlarmState = AlarmState.ACTIVE_UNACK,
    rule: str = "do_low",
) -> AlarmTransition:
    return AlarmTransition(
        alarm_id=alarm_id_of("R1", rule, "lo_lo"),
        rule=rule,
        reactor="R1",
        condition="lo_lo",
        channel="do",
        priority=priority,
        from_state=AlarmState.NORMAL,
        to_state=to_state,
        at=1_794_992_400.0,
        actor=None,
        value=12.5,
        message="DO below 15 % for 2 min",
        reason="condition",
        condition_active=True,
    )


# --- a webhook receiver -----------------------------------------------------------------------


class WebhookReceiver:
    """Records POSTs; answers 500 to the first ``fail_first`` of them; may hold requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], dict]] = []
        self.fail_first = fail_first
        self.release = threading.Event()
        self.release.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived.set()
                receiver.release.wait(30)
                receiver.requests.append((dict(self.headers), json.loads(body)))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/s3cret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# --- a minimal SMTP receiver (smtpd/asyncore are gone from Python 3.12) ----------------------


class SmtpReceiver:
    """Speaks just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive mail."""

    def __init__(self, *, reject_first: int = 0) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[str, str]] = []
        self.reject_first = reject_first
        self.sessions = 0
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                receiver.sessions += 1
                if receiver.sessions <= receiver.reject_first:
                    self.reply("421 too busy, try later")
                    return
                self.reply("220 test-smtp ready")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    command = line.decode().rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb in {"EHLO", "HELO"}:
                        self.wfile.write(b"250-test-smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        _, user, password = base64.b64decode(command.split()[2]).split(b"\0")
                        receiver.logins.append((user.decode(), password.decode()))
                        self.reply("235 authenticated")
                    elif verb == "MAIL":
                        sender = command.split(":", 1)[1].strip().split()[0].strip("<>")
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        receiver.messages.append((sender, recipients, data))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmtpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


# --- tests -------------------------------------------------------------------------------------


def test_webhook_gets_the_critical_alarm_as_json(webhook: WebhookReceiver) -> None:
    notifier = Notifier([WebhookChannel(webhook.url, token="t0ken")], station="bench-1").start()
    try:
        assert notifier.notify_transition(transition())
        assert notifier.wait_idle(30)
    finally:
        notifier.stop()
    assert len(webhook.requests) == 1
    headers, body = webhook.requests[0]
    assert headers["Authorization"] == "Bearer t0ken"
    assert body["priority"] == "critical" and body["reactor"] == "R1"
    assert body["to"] == "active_unacknowledged" and body["station"] == "bench-1"
    assert body["text"].startswith("[bptwin CRITICAL] bench-1/R1: DO below 15 %")
    assert notifier.stats.channels[notifier.channels[0].name].sent == 1


def test_only_raised_alarms_at_or_above_min_priority_are_sent(webhook: WebhookReceiver) -> None:
    notifier = Notifier([WebhookChannel(webhook.url)]).start()
    try:
        assert not notifier.notify_transition(transition(Priority.WARNING))
        assert not notifier.notify_transition(transition(to_state=AlarmState.ACTIVE_ACK))
        assert notifier.notify_transition(transition(rule="temp_high"))
        assert notifier.wait_idle(30)
    finally:
        notifier.stop()
    assert [body["rule"] for _, body in webhook.requests] == ["temp_high"]
    assert notifier.stats.filtered == 2
    warning_too = Notifier([], min_priority=Priority.WARNING)
    assert warning_too.wants(transition(Priority.WARNING))
    assert not warning_too.wants(transition(Priority.INFO))


def test_failed_webhook_is_retried_until_it_answers() -> None:
    with WebhookReceiver(fail_first=2) as receiver:
        notifier = Notifier([WebhookChannel(receiver.url)], backoff_s=0.05).start()
        try:
            notifier.notify_transition(transition())
            assert notifier.wait_idle(30)
        finally:
            notifier.stop()
    stats = notifier.stats.channels[notifier.channels[0].name]
    assert len(receiver.requests) == 3
    assert (stats.sent, stats.retried, stats.failed) == (1, 2, 0)
    assert stats.last_error is not None and "HTTP 500" in stats.last_error
    # The channel's name, used in logs, does not carry the URL's secret path.
    assert "s3cret" not in notifier.channels[0].name


def test_unreachable_webhook_gives_up_after_the_retries() -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{free_port()}/hook", timeout_s=2)
    notifier = Notifier([channel], retries=2, backoff_s=0.01).start()
    try:
        notifier.notify_transition(transition())
        assert notifier.wait_idle(30)
    finally:
        notifier.stop()
    stats = notifier.stats.channels[channel.name]
    assert (stats.sent, stats.retried, stats.failed) == (0, 2, 1)
    assert stats.last_error is not None and "unreachable" in stats.last_error


def test_a_hanging_receiver_never_blocks_the_caller(webhook: WebhookReceiver) -> None:
    webhook.release.clear()  # the receiver holds every request until we let it go
    notifier = Notifier([WebhookChannel(webhook.url, timeout_s=60)], queue_size=2).start()
    try:
        assert notifier.notify_transition(transition(rule="a"))
        assert webhook.arrived.wait(30)  # the first is stuck in the receiver now
        # The caller returns at once; beyond the queue's room notifications are dropped.
        accepted = [notifier.notify_transition(transition(rule=r)) for r in "bcde"]
        assert accepted == [True, True, False, False]
        assert notifier.stats.dropped == 2
        webhook.release.set()
        assert notifier.wait_idle(30)
    finally:
        webhook.release.set()
        notifier.stop()
    assert sorted(body["rule"] for _, body in webhook.requests) == ["a", "b", "c"]


def test_mqtt_topic_receives_the_alarm(mqtt_broker: tuple[str, int], mqtt_prefix: str) -> None:
    topic = f"{mqtt_prefix}/notify/critical"
    received: list[bytes] = []
    arrived = threading.Event()
    bus = MqttBus(*mqtt_broker)
    bus.start()
    try:
        bus.subscribe(topic, lambda _t, payload: (received.append(payload), arrived.set()))
        channel = MqttChannel(topic, lambda t, p: bus.publish(t, p, qos=1))
        notifier = Notifier([channel]).start()
        notifier.notify_transition(transition())
        assert notifier.wait_idle(30)
        notifier.stop()
        assert arrived.wait(30)
    finally:
        bus.stop()
    payload = json.loads(received[0])
    assert payload["alarm_id"] == "R1/do_low/lo_lo" and payload["value"] == 12.5


def test_mail_is_sent_with_login_and_retried_after_a_refusal() -> None:
    with SmtpReceiver(reject_first=1) as receiver:
        channel = SmtpChannel(
            "127.0.0.1",
            receiver.port,
            sender="bptwin@lab.example",
            recipients=["night-shift@lab.example", "qa@lab.example"],
            security="none",
            username="bptwin",
            password="pw",
        )
        notifier = Notifier([channel], backoff_s=0.05, station="bench-1").start()
        try:
            notifier.notify_transition(transition())
            assert notifier.wait_idle(30)
        finally:
            notifier.stop()
    assert notifier.stats.channels[channel.name].retried == 1
    assert receiver.logins == [("bptwin", "pw")]
    sender, recipients, data = receiver.messages[0]
    assert sender == "bptwin@lab.example"
    assert recipients == ["night-shift@lab.example", "qa@lab.example"]
    mail = email.message_from_bytes(data, policy=email.policy.default)
    assert mail["Subject"] == "[bptwin CRITICAL] bench-1/R1: DO below 15 % for 2 min"
    assert "value: 12.5" in mail.get_body().get_content()


def test_a_broken_channel_does_not_stop_the_others(webhook: WebhookReceiver) -> None:
    class Broken:
        name = "broken"

        def send(self, notification: Notification) -> None:
            raise RuntimeError("bug in a channel")

    notifier = Notifier([Broken(), WebhookChannel(webhook.url)], retries=0).start()
    try:
        notifier.notify_transition(transition())
        assert notifier.wait_idle(30)
    finally:
        notifier.stop()
    assert len(webhook.requests) == 1
    assert notifier.stats.channels["broken"].failed == 1
    assert "RuntimeError: bug in a channel" in str(notifier.stats.channels["broken"].last_error)


def test_settings_build_the_configured_channels(webhook: WebhookReceiver, tmp_path: Path) -> None:
    assert notifier_from_settings(NotifySettings()) is None
    section = NotifySettings.model_validate(
        {
            "webhook_url": webhook.url,
            "mqtt_topic": "lab/alarms",
            "min_priority": "warning",
            "smtp": {"host": "mail.lab", "sender": "a@lab", "recipients": ["b@lab"]},
        }
    )
    notifier = notifier_from_settings(section, publish=lambda t, p: None, station="s")
    assert notifier is not None
    assert [type(c).__name__ for c in notifier.channels] == [
        "WebhookChannel",
        "MqttChannel",
        "SmtpChannel",
    ]
    assert notifier.min_priority is Priority.WARNING


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"webhook_url": "ftp://x/y"}, "webhook_url"),
        ({"mqtt_topic": "lab/#"}, "mqtt_topic"),
        ({"smtp": {"host": "mail.lab"}}, "smtp"),
        ({"smtp": {"host": "m", "sender": "nobody", "recipients": ["b@lab"]}}, "smtp.sender"),
        ({"min_priority": "urgent"}, "min_priority"),
    ],
)
def test_bad_notify_settings_name_the_key(values: dict, problem: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as error:
        NotifySettings.model_validate(values)
    locations = [".".join(str(p) for p in e["loc"]) for e in error.value.errors()]
    assert problem in locations
