"""The shadow: simulated readings in, 30 s process states and alarm transitions out."""

from __future__ import annotations

import itertools
import math

import pytest

from bptwin.database.reading import Reading
from bptwin.twin.alarm_rules import DEFAULT_RULES
from bptwin.twin.shadow import DERIVED_CHANNELS, Shadow, derived_readings
from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import ReactorSimulator

START = 1_790_000_000.0  # a fixed instant, aligned to 30 s


def simulated_readings(hours: float, reactor: str = "R1") -> list[Reading]:
    simulator = ReactorSimulator(SimulationConfig(), seed=5, start_timestamp=START)
    readings: list[Reading] = []
    for _ in range(int(hours * 3600)):
        readings += simulator.step().to_readings(reactor)
    return readings


@pytest.fixture(scope="module")
def two_hours() -> list[Reading]:
    return simulated_readings(2.0)


def test_two_hours_give_one_state_per_window(two_hours: list[Reading]) -> None:
    shadow = Shadow(["R1"], alarm_rules=DEFAULT_RULES)
    states = [state for reading in two_hours for state in shadow.feed(reading).states]
    states += shadow.flush().states
    assert 239 <= len(states) <= 241
    assert all(b.end - a.end == pytest.approx(30.0) for a, b in itertools.pairwise(states))
    late = states[-20:]
    assert all(state.cer > 0 and state.our > 0 for state in late)
    assert all(0.4 < state.rq_smooth < 1.1 for state in late if math.isfinite(state.rq_smooth))
    assert shadow.latest_state["R1"] is states[-1]


def test_other_reactors_are_ignored_and_counted(two_hours: list[Reading]) -> None:
    shadow = Shadow(["R2"], alarm_rules=DEFAULT_RULES)
    outputs = [shadow.feed(reading) for reading in two_hours[:1000]]
    assert not any(outputs)
    assert shadow.ignored == 1000


def test_a_silent_do_probe_raises_a_stale_alarm(two_hours: list[Reading]) -> None:
    shadow = Shadow(["R1"], alarm_rules=DEFAULT_RULES)
    cut = START + 3600
    transitions = []
    for reading in two_hours:
        if reading.channel == "do" and reading.timestamp > cut:
            continue
        transitions += shadow.feed(reading).transitions
    transitions += shadow.tick(two_hours[-1].timestamp).transitions
    stale = [t for t in transitions if t.rule == "sensor_stale" and t.channel == "do"]
    assert stale, [t.alarm_id for t in transitions]
    assert stale[0].priority.value in {"warning", "critical"}
    assert any(view.channel == "do" for view in shadow.alarms.active_alarms())


def test_derived_readings_carry_the_window_end(two_hours: list[Reading]) -> None:
    shadow = Shadow(["R1"], alarm_rules=DEFAULT_RULES)
    states = [state for reading in two_hours for state in shadow.feed(reading).states]
    readings = derived_readings(states[-1])
    assert [r.channel for r in readings] == [channel for _, channel, _ in DERIVED_CHANNELS]
    assert {r.timestamp for r in readings} == {states[-1].end}
    cer = next(r for r in readings if r.channel == "cer")
    assert cer.value == pytest.approx(states[-1].cer)
