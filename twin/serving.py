"""Sinks for the inference worker: publish predictions on the bus, keep them in the store.

Bus: topic ``<prefix>/v1/<reactor>/predictions/od600`` (docs/mqtt.md), QoS 1, payload
``{"ts", "value", "unit": "OD600", "lower", "upper", "model_version", "fallback",
"forecast": {...}}``. Store: the nowcast and its band as readings of the pseudo-channels in
:data:`PREDICTION_CHANNELS` (plus the forecast depletion time and the DO forecast 1 h ahead
with its band when there are), so the trend view and later drift checks can read them back
like any series. The payload's ``forecast`` block carries the DO summary of
:func:`bptwin.twin.predictor.do_forecast_summary` (1, 2, 4 h ahead with band, minimum, end).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone

from bptwin.database.bus.base import Bus
from bptwin.database.bus.topics import DEFAULT_PREFIX, prediction_topic
from bptwin.database.reading import Reading
from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.twin.features import ProcessState
from bptwin.twin.metrics import json_safe
from bptwin.twin.predictor import Prediction, do_forecast_summary

PREDICTION_NAME = "od600"
PREDICTION_CHANNELS = {
    "od600": "od600_pred",
    "lower": "od600_pred_lower",
    "upper": "od600_pred_upper",
    "depletion": "depletion_forecast",
    "do_1h": "do_forecast_1h",
    "do_1h_lower": "do_forecast_1h_lower",
    "do_1h_upper": "do_forecast_1h_upper",
}


def prediction_payload(prediction: Prediction) -> bytes:
    """The JSON payload published for one prediction (NaN becomes null)."""
    data = prediction.to_dict()
    stamp = datetime.fromtimestamp(prediction.timestamp, tz=timezone.utc)
    payload = {
        "ts": stamp.isoformat().replace("+00:00", "Z"),
        "value": data.pop("od600"),
        "unit": "OD600",
        **{k: v for k, v in data.items() if k not in ("timestamp", "reactor")},
    }
    return json.dumps(json_safe(payload), allow_nan=False).encode()


def bus_sink(bus: Bus, prefix: str = DEFAULT_PREFIX) -> Callable[[Prediction, ProcessState], None]:
    def publish(prediction: Prediction, state: ProcessState) -> None:
        reactor = prediction.reactor or state.reactor
        topic = prediction_topic(reactor, PREDICTION_NAME, prefix)
        bus.publish(topic, prediction_payload(prediction), qos=1)

    return publish


def prediction_readings(prediction: Prediction, reactor: str) -> list[Reading]:
    values = {
        PREDICTION_CHANNELS["od600"]: (prediction.od600, "OD600"),
        PREDICTION_CHANNELS["lower"]: (prediction.lower, "OD600"),
        PREDICTION_CHANNELS["upper"]: (prediction.upper, "OD600"),
    }
    if math.isfinite(prediction.depletion_forecast):
        values[PREDICTION_CHANNELS["depletion"]] = (prediction.depletion_forecast, "s")
    forecast = prediction.forecast
    if forecast is not None and forecast.do is not None:
        summary = do_forecast_summary(forecast)
        for key in ("do_1h", "do_1h_lower", "do_1h_upper"):
            values[PREDICTION_CHANNELS[key]] = (summary[key], "%sat")
    return [
        Reading(prediction.timestamp, reactor, channel, value, unit)
        for channel, (value, unit) in values.items()
    ]


def store_sink(store: TimeSeriesStore) -> Callable[[Prediction, ProcessState], None]:
    def keep(prediction: Prediction, state: ProcessState) -> None:
        store.write(prediction_readings(prediction, prediction.reactor or state.reactor))

    return keep
