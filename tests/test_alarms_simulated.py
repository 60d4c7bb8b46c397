"""The SOP default rules on a simulated batch: quiet while normal, loud when a sensor fails."""

from __future__ import annotations

import math

import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.twin.alarm_rules import DEFAULT_RULES, FrozenRule, LimitRule, StaleRule
from bptwin.twin.alarms import AlarmEngine, AlarmState
from bptwin.twin.features import states_from_frame
from bptwin.twin.simulator import simulate_batch

T0 = 1_790_000_000.0


def watched_channels() -> list[str]:
    names: set[str] = set()
    for rule in DEFAULT_RULES:
        if isinstance(rule, LimitRule):
            names.add(rule.source)
        elif isinstance(rule, (StaleRule, FrozenRule)):
            names.update(rule.channels)
    return sorted(names)


@pytest.fixture(scope="module")
def batch():
    return simulate_batch(seed=0, start_timestamp=T0)


def run_batch(engine: AlarmEngine, frame, *, break_do_at: float | None = None) -> list:
    out = []
    times = frame["timestamp"].to_numpy()
    columns = {name: frame[name].to_numpy() for name in watched_channels()}
    for row, at in enumerate(times):
        at = float(at)
        for name, values in columns.items():
            value = float(values[row])
            if name == "vessel_weight" and math.isnan(value):
                continue  # the balance reports every 10 s only
            if name == "do" and break_do_at is not None and at >= break_do_at:
                value = math.nan  # the DO transmitter fails: NaN from now on
            quality = Quality.BAD if math.isnan(value) else Quality.GOOD
            out.extend(engine.feed(Reading(at, "R1", name, value, "", quality)))
        if row % 10 == 0:
            out.extend(engine.evaluate(at))
    for state in states_from_frame(frame, reactor="R1"):
        out.extend(engine.feed_state(state))
    return out


@pytest.mark.slow
def test_a_normal_batch_raises_only_the_glycerol_depletion(batch):
    engine = AlarmEngine(DEFAULT_RULES)
    out = run_batch(engine, batch.sensors)
    assert {t.alarm_id for t in out} == {"R1/glycerol_depleted/glycerol_depleted"}
    assert [t.to_state for t in out] == [AlarmState.ACTIVE_UNACK, AlarmState.RETURNED_UNACK]
    depletion_h = (out[0].at - T0) / 3600
    assert depletion_h == pytest.approx(batch.depletion_time_s / 3600, abs=0.25)


def test_a_failed_do_transmitter_is_stale_within_a_minute(batch):
    engine = AlarmEngine(DEFAULT_RULES)
    failure = T0 + 6 * 3600
    out = run_batch(engine, batch.sensors.iloc[: 7 * 3600], break_do_at=failure)
    stale = [t for t in out if t.alarm_id == "R1/sensor_stale/do"]
    assert [t.to_state for t in stale] == [AlarmState.ACTIVE_UNACK]
    # last good value 1 s before the failure; evaluate() runs every 10 s
    assert failure + 59 < stale[0].at <= failure + 70
