"""What the adversarial tests share: a station on the real broker and an outsider's client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bptwin.database.bus import MqttBus
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings

TIMEOUT_S = 60.0


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    """True as soon as ``condition()`` holds; waits on the condition, never a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def unique_prefix() -> str:
    return f"bptwin-adv-{uuid.uuid4().hex[:10]}"


def station_settings(
    data_dir: Path,
    broker: tuple[str, int],
    prefix: str,
    *,
    reactors: list[str] | None = None,
    sources: list[dict[str, Any]] | None = None,
    **acquisition: Any,
) -> Settings:
    """A station on the real broker under its own prefix, embedded stores in ``data_dir``."""
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.station.reactors = reactors or ["R1"]
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port = broker
    settings.bus.prefix = prefix
    settings.acquisition.sources = sources or [{"name": "gateway", "kind": "bptwin"}]
    for key, value in acquisition.items():
        setattr(settings.acquisition, key, value)
    return settings


@contextmanager
def running(settings: Settings) -> Iterator[Station]:
    station = Station(settings)
    station.start()
    try:
        yield station
    finally:
        station.stop()


class Outsider:
    """Anyone on the anonymous broker: publishes raw payloads, as mosquitto_pub would."""

    def __init__(self, broker: tuple[str, int], prefix: str) -> None:
        self.prefix = prefix
        self.bus = MqttBus(*broker)
        self.bus.start()

    def reading(
        self, reactor: str, channel: str, ts: float | str, value: float | None, **extra: Any
    ) -> None:
        payload = {"ts": ts, "value": value, **extra}
        self.raw(f"{self.prefix}/v1/{reactor}/sensors/{channel}", json.dumps(payload).encode())

    def snapshot(self, reactor: str, ts: float, values: dict[str, Any]) -> None:
        payload = json.dumps({"ts": ts, "values": values}).encode()
        self.raw(f"{self.prefix}/v1/{reactor}/sensors", payload)

    def raw(self, topic: str, payload: bytes) -> None:
        self.bus.publish(topic, payload, qos=1)

    def flush(self) -> None:
        assert self.bus.flush(30), "the broker did not take the outsider's messages"

    def close(self) -> None:
        self.bus.stop()


def discarded(station: Station, reason: str, origin: str = "bus") -> int:
    assert station.intake is not None
    return station.intake.admission.stats().discarded.get((origin, reason), 0)


def stored_values(station: Station, reactor: str, channel: str) -> list[tuple[float, float]]:
    assert station.store is not None and station.recorder is not None
    station.recorder.flush(10)
    station.store.flush(10)
    return [(r.timestamp, r.value) for r in station.store.read_range(reactor, channel, 0, 4e9)]


def series(station: Station) -> set[tuple[str, str]]:
    assert station.store is not None
    return set(station.store.list_channels())
