"""Wiring: builds the bus, stores and drivers named in the settings and runs them.

``drivers -> bus -> recorder -> time-series store``; the same station serves the TUI
(``bptwin run``) and the headless service (``bptwin serve``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from bptwin_tui.settings import Settings, SettingsError
from database.reading import Reading
from twin.live import LatestValues, LiveSnapshot

if TYPE_CHECKING:
    from database.bus import Bus, Subscription
    from database.timeseries import TimeSeriesStore
    from drivers.base import Driver, DriverThread

log = logging.getLogger(__name__)


class Station:
    """One acquisition for the configured reactors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.latest = LatestValues()
        self.bus: Bus | None = None
        self.store: TimeSeriesStore | None = None
        self._subscriptions: list[Subscription] = []
        self._driver_threads: list[DriverThread] = []
        self._started = threading.Event()

    def start(self) -> None:
        """Open everything or raise SettingsError naming the setting that does not work."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.upgrade_notebook()
        self.store = build_store(self.settings)
        self.bus = build_bus(self.settings)
        try:
            self.bus.start()
        except OSError as exc:
            raise SettingsError(
                f"bus.host/bus.port: cannot reach the MQTT broker at "
                f"{self.settings.bus.host}:{self.settings.bus.port}: {exc}"
            ) from None
        prefix = self.settings.bus.prefix
        self._subscriptions.append(self.bus.subscribe_readings(self._record, prefix=prefix))
        for driver in build_drivers(self.settings, sink=self._publish):
            from drivers.base import DriverThread

            thread = DriverThread(driver)
            thread.start()
            self._driver_threads.append(thread)
        self._started.set()

    def upgrade_notebook(self) -> list[str]:
        from database.migrate import upgrade

        return upgrade(self.settings.notebook_url())

    def _publish(self, reading: Reading) -> None:
        assert self.bus is not None
        self.bus.publish_reading(reading, prefix=self.settings.bus.prefix)

    def _record(self, reading: Reading) -> None:
        self.latest.add(reading)
        if self.store is not None:
            self.store.write([reading])

    def snapshot(self) -> LiveSnapshot:
        return self.latest.snapshot()

    def stop(self) -> None:
        """Stop drivers first so every emitted reading still reaches the store."""
        for thread in self._driver_threads:
            thread.stop()
        self._driver_threads.clear()
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self.bus is not None:
            self.bus.stop()
        if self.store is not None:
            self.store.flush(timeout=10.0)
            self.store.close()
        self._started.clear()


def build_store(settings: Settings) -> TimeSeriesStore:
    section = settings.timeseries
    if section.backend == "embedded":
        from database.timeseries.embedded import EmbeddedStore

        return EmbeddedStore(settings.timeseries_path())
    from database.timeseries.influx import InfluxStore

    return InfluxStore(
        url=section.url,
        api_version=section.api_version,
        token=section.token.get_secret_value() if section.token else None,
        org=section.org,
        bucket=section.bucket,
        database=section.database,
        username=section.username,
        password=section.password.get_secret_value() if section.password else None,
        spool_path=settings.spool_dir() / "influx.sqlite",
        batch_size=section.batch_size,
        flush_interval_s=section.flush_interval_s,
    )


def build_bus(settings: Settings) -> Bus:
    section = settings.bus
    if section.backend == "local":
        from database.bus import LocalBus

        return LocalBus()
    from database.bus import MqttBus

    return MqttBus(
        section.host,
        section.port,
        client_id=section.client_id or None,
        username=section.username or None,
        password=section.password.get_secret_value() if section.password else None,
        tls=section.tls,
        ca_file=str(section.ca_file) if section.ca_file else None,
    )


def build_drivers(settings: Settings, sink: object) -> list[Driver]:
    """The drivers named by ``acquisition.source`` (none for a viewer-only station)."""
    source = settings.acquisition.source
    if source == "none":
        return []
    raise SettingsError(f"acquisition.source: {source!r} is not wired yet")
