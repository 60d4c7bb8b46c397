"""The simulator's external-setpoint hook: overrides its own DO cascade, hands back on None."""

from __future__ import annotations

import math

import pytest

from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import ReactorSimulator

DENSE = SimulationConfig().with_changes(
    reactor={"inoculum_od600": 40.0, "inoculum_fraction": 0.5}, kinetics={"lag_h": 0.1}
)


def run(sim: ReactorSimulator, seconds: int) -> list[dict[str, float]]:
    return [sim.step().readings for _ in range(seconds)]


def test_external_setpoints_override_the_cascade_until_handed_back() -> None:
    sim = ReactorSimulator(DENSE, seed=1)
    sim.apply_setpoint("stirrer_speed", 500.0)
    sim.apply_setpoint("o2_flow", 0.0)
    readings = run(sim, 1800)  # demand rises; the own cascade would have stepped up by now
    assert all(abs(r["stirrer_speed"] - 500.0) < 10 for r in readings[-60:])
    assert readings[-1]["do"] < 30.0
    assert sim.external_setpoints == {"stirrer_speed": 500.0, "o2_flow": 0.0}
    sim.apply_setpoint("stirrer_speed", 800.0)
    assert abs(run(sim, 5)[-1]["stirrer_speed"] - 800.0) < 10
    sim.apply_setpoint("stirrer_speed", None)
    sim.apply_setpoint("o2_flow", None)
    assert sim.external_setpoints == {}
    later = run(sim, 600)
    assert later[-1]["stirrer_speed"] > 800.0  # the own cascade took over and stepped up


def test_without_external_setpoints_the_batch_is_unchanged() -> None:
    plain = [s["do"] for s in run(ReactorSimulator(DENSE, seed=2), 300)]
    hooked = ReactorSimulator(DENSE, seed=2)
    hooked.apply_setpoint("o2_flow", 0.1)
    hooked.apply_setpoint("o2_flow", None)
    again = [s["do"] for s in run(hooked, 300)]
    assert plain == again


@pytest.mark.parametrize(
    ("parameter", "value", "words"),
    [
        ("temperature", 30.0, "cannot be set"),
        ("stirrer_speed", 5000.0, "outside"),
        ("o2_flow", -1.0, "outside"),
        ("o2_flow", math.nan, "outside"),
        ("stirrer_speed", True, "outside"),
    ],
)
def test_bad_setpoints_are_refused_by_name(parameter: str, value: float, words: str) -> None:
    sim = ReactorSimulator(DENSE, seed=0)
    with pytest.raises(ValueError, match=words):
        sim.apply_setpoint(parameter, value)
    assert sim.external_setpoints == {}
