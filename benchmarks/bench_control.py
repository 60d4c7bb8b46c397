"""Control path cost per 30 s window: controller advice, actuation on the bus, audit write."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bptwin.database.bus import LocalBus
from bptwin.twin.actuation import (
    Actuator,
    ControlAuthorisation,
    ControlKey,
    ControlMode,
    ControlSettings,
)
from bptwin.twin.control import AdvisoryController, Recommendation
from bptwin.twin.features import FeatureConfig, ProcessState, states_from_frame
from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import simulate_batch

DENSE_BATCH = SimulationConfig().with_changes(
    reactor={"inoculum_od600": 40.0, "inoculum_fraction": 0.5, "glycerol_start_g_l": 22.0},
    kinetics={"lag_h": 0.1},
)


def _states() -> list[ProcessState]:
    """The windows of a dense batch (its own cascade runs: DO sits in the controller's band)."""
    batch = simulate_batch(DENSE_BATCH, seed=3, hours=6.0)
    config = FeatureConfig(initial_biomass_g_per_l=6.0, glycerol_g_per_l=22.0)
    return states_from_frame(batch.sensors, config, reactor="R1")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    array = np.asarray(samples) * 1e6
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def bench_control_recommendation_latency() -> list[dict[str, object]]:
    states = _states()
    timings: list[float] = []
    advice = 0
    for _ in range(5):
        controller = AdvisoryController()
        for state in states:
            started = time.perf_counter()
            advice += len(controller.update(state))
            timings.append(time.perf_counter() - started)
    p50, p99 = _percentiles(timings)
    note = f"{len(states)} windows of a 6 h dense batch × 5; {advice // 5} pieces of advice per run"
    return [
        {"benchmark": "control advice per window p50", "value": p50, "unit": "µs", "note": note},
        {"benchmark": "control advice per window p99", "value": p99, "unit": "µs", "note": note},
    ]


def _recommendation(index: int) -> Recommendation:
    return Recommendation(
        timestamp=1_790_000_000.0 + 30 * index,
        reactor="R1",
        parameter="stirrer_speed",
        current=600.0,
        recommended=650.0,
        unit="rpm",
        reason="DO 24.0 %, below the 30 % cascade level: raise the stirrer 600 → 650 rpm",
        rule="do_low_stirrer_up",
        confidence=0.9,
    )


def bench_control_actuation_and_audit() -> list[dict[str, object]]:
    from bptwin.database.migrate import upgrade
    from bptwin.eln import control_service
    from bptwin.eln.models import OperatorRole
    from bptwin.eln.services import NotebookService

    bus = LocalBus()
    bus.start()
    settings = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=True)
    actuator = Actuator(bus, "R1", settings, key=ControlKey.generate())
    actuator.authorise(ControlAuthorisation.for_minutes("sam", "R1", 60))
    publish: list[float] = []
    for index in range(2000):
        rec = _recommendation(index)
        started = time.perf_counter()
        result = actuator.actuate(rec)
        publish.append(time.perf_counter() - started)
        assert result.sent
    bus.stop()

    writes: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'notebook.sqlite'}"
        upgrade(url)
        notebook = NotebookService.from_url(url)
        notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
        for index in range(200):
            rec = _recommendation(index)
            started = time.perf_counter()
            control_service.record_recommendation(notebook, **rec.to_dict())
            writes.append(time.perf_counter() - started)
        notebook.engine.dispose()
    pub50, pub99 = _percentiles(publish)
    db50, db99 = _percentiles(writes)
    return [
        {
            "benchmark": "setpoint actuation (LocalBus) p50/p99",
            "value": pub50,
            "unit": "µs",
            "note": f"p99 {pub99:,.0f} µs; checks + JSON + publish, 2000 setpoints",
        },
        {
            "benchmark": "audited ControlAction write (SQLite) p50/p99",
            "value": db50 / 1000,
            "unit": "ms",
            "note": f"p99 {db99 / 1000:,.1f} ms; one transaction with its audit entry, 200 rows",
        },
    ]
