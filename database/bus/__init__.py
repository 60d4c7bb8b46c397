"""Publish/subscribe bus: in-process (default) or MQTT, one interface (docs/mqtt.md)."""

from database.bus import topics
from database.bus.base import Bus, BusStats, MessageHandler, ReadingHandler, Subscription
from database.bus.local import LocalBus
from database.bus.mqtt import MqttBus

__all__ = [
    "Bus",
    "BusStats",
    "LocalBus",
    "MessageHandler",
    "MqttBus",
    "ReadingHandler",
    "Subscription",
    "topics",
]
