"""The digital shadow of the watched reactors: readings in; process states and alarms out.

One object per station. Readings of every reactor go through cleaning, 30 s windows and
the feature pipeline (one ``StreamingFeatures`` per reactor, the same code path as
training) and through the alarm engine. Prediction runs elsewhere (``InferenceWorker``) so
a slow model never holds up the windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bptwin.database.reading import Quality, Reading
from bptwin.twin.alarm_rules import Rule
from bptwin.twin.alarms import AlarmEngine, AlarmTransition
from bptwin.twin.features import (
    FLAG_CER_ASSUMES_RQ,
    FLAG_CO2_TOTAL_ASSUMES_RQ,
    FLAG_TOTALS_SKIP_GAP,
    FeatureConfig,
    ProcessState,
    StreamingFeatures,
)

# Derived values stored beside the sensor channels: (state attribute, stored channel, unit).
DERIVED_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("our", "our", "mmol/L/h"),
    ("cer", "cer", "mmol/L/h"),
    ("rq", "rq", ""),
    ("mu_cer", "mu", "1/h"),
    ("kla", "kla", "1/h"),
    ("cum_co2_mmol_per_l", "cum_co2", "mmol/L"),
    ("cum_o2_mmol_per_l", "cum_o2", "mmol/L"),
    ("base_rate_ml_per_h", "base_rate", "mL/h"),
    ("biomass_carbon_g_per_l", "biomass_carbon", "g/L"),
)
# Stored values that rest on an assumption or miss part of their input: uncertain, never good.
UNCERTAIN_WITH_FLAG: dict[str, frozenset[str]] = {
    FLAG_CER_ASSUMES_RQ: frozenset({"cer", "mu"}),
    FLAG_CO2_TOTAL_ASSUMES_RQ: frozenset({"cum_co2", "biomass_carbon"}),
    FLAG_TOTALS_SKIP_GAP: frozenset({"cum_co2", "cum_o2", "biomass_carbon"}),
}


@dataclass(frozen=True, slots=True)
class ShadowOutput:
    """What one call produced; each item is new and to be stored/published once."""

    states: tuple[ProcessState, ...] = ()
    transitions: tuple[AlarmTransition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.states or self.transitions)


@dataclass(slots=True)
class _Collected:
    states: list[ProcessState] = field(default_factory=list)
    transitions: list[AlarmTransition] = field(default_factory=list)

    def frozen(self) -> ShadowOutput:
        return ShadowOutput(tuple(self.states), tuple(self.transitions))


class Shadow:
    """Feature pipelines per reactor and one alarm engine; one worker thread feeds it."""

    def __init__(
        self,
        reactors: Iterable[str],
        *,
        alarm_rules: Iterable[Rule],
        feature_config: Callable[[str], FeatureConfig] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.reactors = tuple(reactors)
        config_for = feature_config or (lambda reactor: FeatureConfig())
        self._features = {
            reactor: StreamingFeatures(config_for(reactor), reactor=reactor)
            for reactor in self.reactors
        }
        self.alarms = AlarmEngine(list(alarm_rules), clock=clock)
        self.latest_state: dict[str, ProcessState] = {}
        self.ignored = 0

    def feed(self, reading: Reading) -> ShadowOutput:
        features = self._features.get(reading.reactor)
        if features is None:
            self.ignored += 1
            return ShadowOutput()
        out = _Collected()
        out.transitions += self.alarms.feed(reading)
        self._take_states(features, features.add(reading), out)
        return out.frozen()

    def tick(self, now: float) -> ShadowOutput:
        """Close windows whose time has passed and evaluate time-based alarms (stale, shelve)."""
        out = _Collected()
        for features in self._features.values():
            self._take_states(features, features.advance_to(now), out)
        out.transitions += self.alarms.evaluate(now)
        return out.frozen()

    def flush(self) -> ShadowOutput:
        out = _Collected()
        for features in self._features.values():
            self._take_states(features, features.flush(), out)
        return out.frozen()

    def set_inoculation_time(self, reactor: str, timestamp: float) -> None:
        features = self._features.get(reactor)
        if features is not None:
            features.pipeline.set_inoculation_time(timestamp)

    def configure(self, reactor: str, config: FeatureConfig) -> None:
        """Start ``reactor``'s features afresh with ``config``: only before its first reading
        (a replayed dataset batch's constants, once it is lined up with its notebook batch)."""
        if reactor in self._features:
            self._features[reactor] = StreamingFeatures(config, reactor=reactor)

    def note_sample(self, reactor: str, timestamp: float, dry_weight_g_l: float) -> None:
        """An offline sample of ``reactor`` (volume and carbon-balance fit, if configured)."""
        features = self._features.get(reactor)
        if features is not None:
            features.pipeline.note_sample(timestamp, dry_weight_g_l)

    def _take_states(
        self, features: StreamingFeatures, states: list[ProcessState], out: _Collected
    ) -> None:
        for event in features.pop_events():
            out.transitions += self.alarms.feed_cleaning_event(event)
        for state in states:
            self.latest_state[state.reactor] = state
            out.states.append(state)
            out.transitions += self.alarms.feed_state(state)


def derived_readings(state: ProcessState) -> list[Reading]:
    """The window's derived values as readings (stamped at the window end) for the store."""
    readings = []
    uncertain = {
        channel for flag in state.flags for channel in UNCERTAIN_WITH_FLAG.get(flag, frozenset())
    }
    for attribute, channel, unit in DERIVED_CHANNELS:
        value = float(getattr(state, attribute))
        quality = Quality.GOOD
        if not math.isfinite(value):
            value, quality = math.nan, Quality.BAD
        elif channel in uncertain or (state.low_signal and channel in {"our", "cer", "rq", "mu"}):
            quality = Quality.UNCERTAIN
        readings.append(Reading(state.end, state.reactor, channel, value, unit, quality))
    return readings
