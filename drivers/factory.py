"""Build the drivers of one source from plain values (scripts and tests; docs/drivers.md).

The station builds its sources from the settings through drivers/sources.py (several sources
per reactor, each reading admitted); this builds one source's drivers without admission.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bptwin.drivers.base import Driver, ReadingSink
from bptwin.drivers.sources import DriverConfigError

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.drivers.replay import RecordedBatch

__all__ = ["SOURCES", "DriverConfigError", "build_drivers"]

log = logging.getLogger(__name__)

SOURCES = ("simulated", "mqtt", "serial", "replay", "none")


def build_drivers(
    source: str,
    sink: ReadingSink,
    *,
    reactor: str = "R1",
    speed: float = 1.0,
    seed: int = 0,
    replay_file: str | Path | RecordedBatch | None = None,
    replay_batch: int | None = None,
    replay_offset: float | None = None,
    shift_to_now: bool = True,
    topic_map: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    serial_port: str = "/dev/ttyUSB0",
    baudrate: int = 9600,
    bus: Bus | None = None,
    bus_is_mqtt: bool = False,
    prefix: str = "bptwin",
    on_sample: Callable[[Any], None] | None = None,
) -> list[Driver]:
    """The drivers for ``acquisition.source``; raises DriverConfigError naming a bad setting.

    ``sink`` is normally ``bus.publish_reading``. For ``mqtt``, ``bus`` is the shared bus the
    lab's topics arrive on; an empty ``topic_map`` means sensors already publish bptwin's own
    contract, which reaches the recorder through the bus without any driver. ``on_sample``
    receives the simulated reactor's offline samples (``bptwin.twin.simulator.OfflineSample``)
    or a replayed dataset batch's (``bptwin.drivers.replay.RecordedSample``, re-based by
    ``replay_offset`` seconds, default: onto the station clock, drivers/replay.py).
    """
    if source == "none":
        return []
    if source == "simulated":
        from bptwin.drivers.simulated import SimulatedReactorDriver

        return [
            SimulatedReactorDriver(
                sink, reactor=reactor, seed=seed, speed=speed, on_sample=on_sample
            )
        ]
    if source == "serial":
        from bptwin.drivers.serial_analyser import SerialAnalyserDriver

        if not serial_port:
            raise DriverConfigError("acquisition.serial.port: no serial port given")
        return [SerialAnalyserDriver(sink, port=serial_port, reactor=reactor, baudrate=baudrate)]
    if source == "replay":
        from bptwin.drivers.replay import ReplayDriver, ReplayError

        if replay_file is None:
            raise DriverConfigError("acquisition.replay_file: needed when source = 'replay'")
        try:
            driver = ReplayDriver(
                sink,
                replay_file,
                reactor=reactor,
                speed=speed,
                shift_to_now=shift_to_now,
                batch=replay_batch,
                on_sample=on_sample,
                offset=replay_offset,
            )
        except ReplayError as exc:
            raise DriverConfigError(f"acquisition.replay_file: {exc}") from None
        return [driver]
    if source == "mqtt":
        from bptwin.drivers.mqtt_source import MqttSourceDriver
        from bptwin.drivers.topic_map import TopicMap, TopicMapError

        if bus is None or not bus_is_mqtt:
            raise DriverConfigError(
                "acquisition.source = 'mqtt' needs bus.backend = 'mqtt' (the in-process bus "
                "receives nothing from outside)"
            )
        if not topic_map:
            log.info("sensors publish bptwin's own topics: no MQTT driver needed")
            return []
        try:
            mapping = TopicMap.from_settings(topic_map)
            return [MqttSourceDriver(sink, bus, mapping, reactor=reactor, sink_prefix=prefix)]
        except (TopicMapError, ValueError) as exc:
            raise DriverConfigError(f"acquisition.topic_map: {exc}") from None
    raise DriverConfigError(f"acquisition.source: {source!r} is not one of {', '.join(SOURCES)}")
