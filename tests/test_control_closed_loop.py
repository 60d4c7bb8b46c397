"""Closed loop against the simulator: controller in mode 1 drives stirrer and O2 over the bus.

The simulated reactor's own cascade is switched off for both actuators (external setpoints);
every 30 s window goes through the live feature pipeline to the controller, whose advice the
confirmed actuator publishes on the setpoint topic; a subscriber applies what arrives to the
reactor. The batch starts dense (high inoculum, short lag) so the high-demand phase, O2
enrichment and the end-of-batch back-off all happen within a few simulated hours.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from bptwin.database.bus import LocalBus
from bptwin.database.bus.topics import setpoint_topic
from bptwin.twin.actuation import (
    Actuator,
    ControlAuthorisation,
    ControlKey,
    ControlMode,
    ControlSettings,
    SetpointCommand,
    SetpointVerifier,
)
from bptwin.twin.control import AdvisoryController, Recommendation, Setpoints
from bptwin.twin.features import FeatureConfig, StreamingFeatures
from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import ReactorSimulator

HOURS = 6.0
DENSE_BATCH = SimulationConfig().with_changes(
    reactor={"inoculum_od600": 40.0, "inoculum_fraction": 0.5, "glycerol_start_g_l": 22.0},
    kinetics={"lag_h": 0.1},
)


@dataclass
class LoopRun:
    do_pct: np.ndarray  # true DO every second
    sent: list[Recommendation] = field(default_factory=list)
    refused: int = 0
    stirrer: list[float] = field(default_factory=list)  # applied, per second
    o2: list[float] = field(default_factory=list)
    depletion_s: float | None = None


def run_loop(
    controlled: bool,
    hours: float = HOURS,
    seed: int = 3,
    config: SimulationConfig = DENSE_BATCH,
) -> LoopRun:
    sim = ReactorSimulator(config, seed=seed)
    sim.apply_setpoint("stirrer_speed", 500.0)  # the reactor's own cascade is off
    sim.apply_setpoint("o2_flow", 0.0)
    features = StreamingFeatures(
        FeatureConfig(initial_biomass_g_per_l=6.0, glycerol_g_per_l=22.0), reactor="R1"
    )
    controller = AdvisoryController()
    bus = LocalBus()
    bus.start()
    arrived: list[SetpointCommand] = []
    lock = threading.Lock()
    clock = [sim.start_timestamp]
    key = ControlKey.generate()
    verifier = SetpointVerifier(key, clock=lambda: clock[0])  # the receiver checks every one

    def on_setpoint(topic: str, payload: bytes) -> None:
        with lock:
            arrived.append(SetpointCommand.from_message(topic, payload, verifier))

    bus.subscribe("bptwin/v1/R1/setpoints/+", on_setpoint)
    settings = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=True, confirmation_minutes=600)
    actuator = Actuator(bus, "R1", settings, clock=lambda: clock[0], key=key)
    actuator.authorise(ControlAuthorisation.for_minutes("sam", "R1", 600, at=clock[0]))
    setpoints = Setpoints(500.0, 0.0)
    do, stirrer, o2 = [], [], []
    run = LoopRun(do_pct=np.empty(0))
    try:
        for _ in range(int(hours * 3600)):
            step = sim.step()
            clock[0] = step.timestamp
            do.append(step.truth["do_pct"])
            applied = sim.external_setpoints
            stirrer.append(applied["stirrer_speed"])
            o2.append(applied["o2_flow"])
            for reading in step.to_readings("R1"):
                for state in features.add(reading):
                    for rec in controller.update(state, setpoints):
                        if not (controlled and rec.is_change):
                            continue
                        result = actuator.actuate(rec)
                        if not result.sent:
                            run.refused += 1
                            continue
                        run.sent.append(rec)
                        values = {
                            "stirrer_speed": setpoints.stirrer_speed,
                            "o2_flow": setpoints.o2_flow,
                        }
                        values[rec.parameter] = rec.recommended
                        setpoints = Setpoints(**values)
            if controlled and run.sent:
                assert bus.drain(10.0)
                with lock:
                    commands, arrived[:] = list(arrived), []
                for command in commands:
                    sim.apply_setpoint(command.parameter, command.value)
    finally:
        bus.stop()
    run.do_pct = np.asarray(do)
    run.stirrer, run.o2 = stirrer, o2
    run.depletion_s = sim.depletion_time_s
    return run


@pytest.fixture(scope="module")
def controlled() -> LoopRun:
    return run_loop(controlled=True)


def test_the_uncontrolled_reactor_runs_out_of_oxygen() -> None:
    """The reference: at fixed 500 rpm, no O2, DO spends a long time below 20 %."""
    run = run_loop(controlled=False, hours=3.0)
    assert (run.do_pct < 20.0).mean() > 0.3


def test_closed_loop_keeps_do_above_20_percent(controlled: LoopRun) -> None:
    assert controlled.depletion_s is not None  # the run covers growth and the end of batch
    growth = controlled.do_pct[: int(controlled.depletion_s)]
    assert (growth > 20.0).mean() > 0.98
    assert np.percentile(growth, 1) > 20.0
    assert controlled.refused == 0


def test_closed_loop_walks_the_whole_cascade_and_backs_off(controlled: LoopRun) -> None:
    stirrer, o2 = np.asarray(controlled.stirrer), np.asarray(controlled.o2)
    assert stirrer.max() == 1000.0 and o2.max() > 0.0  # O2 enrichment reached
    assert o2.max() <= 0.3 + 1e-9
    first_o2 = int(np.argmax(o2 > 0))
    assert stirrer[first_o2] == 1000.0  # O2 only once the stirrer is at its limit
    assert o2[-1] == 0.0 and stirrer[-1] < 1000.0  # after depletion it gave O2 and speed back
    steps = np.diff(stirrer)
    assert set(np.unique(np.abs(steps[steps != 0]))) == {50.0}


def test_closed_loop_does_not_chatter(controlled: LoopRun) -> None:
    sent = controlled.sent
    # A few dozen changes over hours, never two within a minute, few reversals.
    assert 10 <= len(sent) <= 60
    times = [rec.timestamp for rec in sent]
    assert all(b - a >= 60.0 for a, b in itertools.pairwise(times))
    directions = [rec.direction for rec in sent]
    reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    assert reversals <= 2
    assert setpoint_topic("R1", "stirrer_speed") == "bptwin/v1/R1/setpoints/stirrer_speed"


def test_closed_loop_rides_through_sensor_faults() -> None:
    """Dropouts, frozen values, spikes and foam blips (many more than a real day has)."""
    faulty = DENSE_BATCH.with_changes(
        faults={
            "enabled": True,
            "dropouts_per_day": 40.0,
            "spikes_per_day": 100.0,
            "frozen_per_day": 10.0,
            "foam_events_per_day": 20.0,
        }
    )
    run = run_loop(controlled=True, seed=5, config=faulty)
    assert run.depletion_s is not None
    growth = run.do_pct[: int(run.depletion_s)]
    assert (growth > 20.0).mean() > 0.98
    directions = [rec.direction for rec in run.sent]
    assert len(run.sent) <= 60
    assert sum(1 for a, b in itertools.pairwise(directions) if a != b) <= 3
