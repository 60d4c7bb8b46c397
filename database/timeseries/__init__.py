"""Time-series stores: one interface, an embedded SQLite store (default) and InfluxDB.

The InfluxDB store is imported lazily so that code using only the embedded store does not pay for
urllib3/influxdb-client at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bptwin.database.timeseries.base import (
    StoreStatus,
    TimeSeriesError,
    TimeSeriesStore,
    WindowAggregate,
)
from bptwin.database.timeseries.embedded import EmbeddedStore

if TYPE_CHECKING:
    from bptwin.database.timeseries.influx import InfluxStore
    from bptwin.database.timeseries.influx_common import InfluxConfig, InfluxConfigError

__all__ = [
    "EmbeddedStore",
    "InfluxConfig",
    "InfluxConfigError",
    "InfluxStore",
    "StoreStatus",
    "TimeSeriesError",
    "TimeSeriesStore",
    "WindowAggregate",
]


def __getattr__(name: str) -> Any:
    if name == "InfluxStore":
        from bptwin.database.timeseries.influx import InfluxStore

        return InfluxStore
    if name in {"InfluxConfig", "InfluxConfigError"}:
        from bptwin.database.timeseries import influx_common

        return getattr(influx_common, name)
    raise AttributeError(f"module 'bptwin.database.timeseries' has no attribute {name!r}")
