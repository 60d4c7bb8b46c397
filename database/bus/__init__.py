"""Publish/subscribe bus: in-process (default) or MQTT, one interface (docs/mqtt.md)."""

from bptwin.database.bus import topics
from bptwin.database.bus.base import Bus, BusStats, MessageHandler, ReadingHandler, Subscription
from bptwin.database.bus.local import LocalBus
from bptwin.database.bus.mqtt import MqttBus

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
