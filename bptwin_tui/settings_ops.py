"""Settings sections for operations: the metrics endpoint and alarm notifications.

Kept apart from ``settings.py`` so they can be reviewed and tested on their own; ``Settings``
holds them as ``metrics: MetricsSettings`` and ``notify: NotifySettings``
(docs/operations.md, docs/configuration.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

if TYPE_CHECKING:
    from bptwin.tui.runtime.notifications import Notifier

LOOPBACK_NAMES = {"localhost"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (the only addresses metrics may bind)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsSettings(_Section):
    """Health and Prometheus metrics of ``bptwin serve`` on a loopback port."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="loopback address only")
    port: int = Field(9821, ge=1, le=65535)
    stale_after_s: float = Field(
        60.0, gt=0, le=86_400, description="/health fails when no reading arrived for this long"
    )

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if not is_loopback(host):
            raise ValueError(
                "must be a loopback address (127.0.0.1, ::1 or localhost); metrics carry no "
                "authentication, so reach them from elsewhere through a reverse proxy or SSH"
            )
        return host


class SmtpSettings(_Section):
    """Mail for critical alarms (``[notify.smtp]``)."""

    host: str = ""
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    sender: str = Field("", description="From: address")
    recipients: list[str] = Field(default_factory=list, description="To: addresses")
    username: str = ""
    password: SecretStr | None = None
    timeout_s: float = Field(20.0, gt=0, le=300)

    @field_validator("sender")
    @classmethod
    def _sender_address(cls, sender: str) -> str:
        if sender and "@" not in sender:
            raise ValueError(f"{sender!r} is not a mail address")
        return sender

    @field_validator("recipients")
    @classmethod
    def _recipient_addresses(cls, recipients: list[str]) -> list[str]:
        for address in recipients:
            if "@" not in address:
                raise ValueError(f"{address!r} is not a mail address")
        return recipients

    @property
    def configured(self) -> bool:
        return bool(self.host)


class NotifySettings(_Section):
    """Where alarm transitions go beyond the screen (webhook, MQTT topic, mail)."""

    min_priority: Literal["critical", "warning", "info"] = "critical"
    webhook_url: str = ""
    webhook_token: SecretStr | None = Field(
        None, description="sent as 'Authorization: Bearer <token>' when set"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    mqtt_topic: str = Field("", description="published on the station's bus, QoS 1")
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    retries: int = Field(5, ge=0, le=100, description="attempts after the first, per channel")
    backoff_s: float = Field(2.0, gt=0, le=600, description="first retry delay, then doubling")
    max_backoff_s: float = Field(300.0, gt=0, le=3600)
    queue_size: int = Field(1000, ge=1, le=100_000)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in {"http", "https"} or not parsed.hostname:
                raise ValueError("must be an http(s) URL such as https://chat.lab/hooks/bptwin")
        return url

    @field_validator("mqtt_topic")
    @classmethod
    def _plain_topic(cls, topic: str) -> str:
        if topic and (any(c in topic for c in "+#\x00") or len(topic.encode()) > 65535):
            raise ValueError("must be a plain MQTT topic without '+' or '#'")
        return topic

    @field_validator("smtp")
    @classmethod
    def _complete_smtp(cls, smtp: SmtpSettings) -> SmtpSettings:
        if smtp.host and (not smtp.sender or not smtp.recipients):
            raise ValueError("a mail host needs 'sender' and at least one of 'recipients'")
        return smtp

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or self.mqtt_topic or self.smtp.configured)


def notifier_from_settings(
    section: NotifySettings,
    *,
    publish: Callable[[str, bytes], None] | None = None,
    station: str = "",
) -> Notifier | None:
    """A started-ready Notifier for the configured channels, or None when none is configured.

    ``publish(topic, payload)`` sends on the station's bus (needed for ``mqtt_topic``).
    """
    from bptwin.tui.runtime.notifications import (
        Channel,
        MqttChannel,
        Notifier,
        SmtpChannel,
        WebhookChannel,
    )
    from bptwin.twin.alarm_rules import Priority

    channels: list[Channel] = []
    if section.webhook_url:
        token = section.webhook_token.get_secret_value() if section.webhook_token else None
        channels.append(
            WebhookChannel(section.webhook_url, token=token, timeout_s=section.webhook_timeout_s)
        )
    if section.mqtt_topic and publish is not None:
        channels.append(MqttChannel(section.mqtt_topic, publish))
    smtp = section.smtp
    if smtp.configured:
        channels.append(
            SmtpChannel(
                smtp.host,
                smtp.port,
                sender=smtp.sender,
                recipients=smtp.recipients,
                security=smtp.security,
                username=smtp.username or None,
                password=smtp.password.get_secret_value() if smtp.password else None,
                timeout_s=smtp.timeout_s,
            )
        )
    if not channels:
        return None
    return Notifier(
        channels,
        min_priority=Priority(section.min_priority),
        retries=section.retries,
        backoff_s=section.backoff_s,
        max_backoff_s=section.max_backoff_s,
        queue_size=section.queue_size,
        station=station,
    )
