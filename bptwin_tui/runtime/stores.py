"""The time-series store the settings describe: embedded file or InfluxDB (docs/configuration.md).

One place turns ``[timeseries]`` into a store, for the station that writes through it and for
readers beside it (``bptwin api``), and into an :class:`InfluxConfig` for ``bptwin doctor``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError, TimeSeriesSettings

if TYPE_CHECKING:
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.database.timeseries.influx_common import InfluxConfig


def influx_config(section: TimeSeriesSettings, *, timeout_s: float | None = None) -> InfluxConfig:
    """The InfluxDB connection of ``[timeseries]``; InfluxConfigError names a bad key."""
    from bptwin.database.timeseries.influx_common import InfluxConfig

    config = InfluxConfig(
        url=section.url,
        api_version=section.api_version,
        token=section.token.get_secret_value() if section.token else None,
        org=section.org or None,
        bucket=section.bucket or None,
        database=section.database or None,
        username=section.username or None,
        password=section.password.get_secret_value() if section.password else None,
    )
    return config if timeout_s is None else dataclasses.replace(config, timeout_s=timeout_s)


def build_store(settings: Settings, *, reader: str | None = None) -> TimeSeriesStore:
    """The station's store; with ``reader`` (``"api"``), one for reading beside it.

    A reader's store carries the reader in its name, and an InfluxDB reader gets a spool file
    of its own (which stays empty), apart from the one the station writes through.
    SettingsError names the ``timeseries`` key that cannot work.
    """
    from bptwin.database.timeseries import TimeSeriesError

    section = settings.timeseries
    suffix = f"-{reader}" if reader else ""
    try:
        if section.backend == "embedded":
            from bptwin.database.timeseries.embedded import EmbeddedStore

            return EmbeddedStore(settings.timeseries_path(), name=f"embedded{suffix}")
        from bptwin.database.timeseries.influx import InfluxStore
        from bptwin.database.timeseries.influx_common import InfluxConfigError

        try:
            config = influx_config(section)
        except InfluxConfigError as exc:
            raise SettingsError(f"timeseries: {exc}") from None
        if reader:
            spool = settings.spool_dir() / f"{reader}-read-influx.sqlite"
            return InfluxStore(config, spool, name=f"influx{suffix}")
        return InfluxStore(
            config,
            settings.spool_dir() / "influx.sqlite",
            batch_size=section.batch_size,
            flush_interval=section.flush_interval_s,
        )
    except TimeSeriesError as exc:
        raise SettingsError(f"timeseries: {exc}") from None
