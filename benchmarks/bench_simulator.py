"""Simulator speed: a 24 h batch at 1 Hz, real-time stepping, writing the whole campaign."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptwin.twin.campaign import generate_campaign
from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.simulator import ReactorSimulator, simulate_batch


def bench_simulate_24h_batch() -> list[dict]:
    config = SimulationConfig(max_hours=24.0)
    started = time.perf_counter()
    result = simulate_batch(config, seed=1, hours=24.0)
    elapsed = time.perf_counter() - started
    steps = len(result.sensors)
    return [
        {
            "benchmark": "simulator: 24 h batch at 1 Hz (vectorised sensors)",
            "value": round(elapsed, 2),
            "unit": "s",
            "note": f"{steps} steps x 19 channels, {steps / elapsed / 1000:.0f}k steps/s",
        }
    ]


def bench_step_rate() -> list[dict]:
    sim = ReactorSimulator(SimulationConfig(max_hours=2.0), seed=1)
    count = 3600
    started = time.perf_counter()
    for _ in range(count):
        sim.step()
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "simulator: step() rate (real-time driver path)",
            "value": round(count / elapsed),
            "unit": "steps/s",
            "note": f"{count / elapsed:.0f}x real time at 1 Hz",
        }
    ]


def bench_write_campaign() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate_campaign(folder, seed=1)
        elapsed = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
    return [
        {
            "benchmark": "simulator: write the 18-batch campaign (Parquet + manifest)",
            "value": round(elapsed, 1),
            "unit": "s",
            "note": f"{size / 1e6:.0f} MB on disk",
        }
    ]


if __name__ == "__main__":
    for bench in (bench_simulate_24h_batch, bench_step_rate, bench_write_campaign):
        for row in bench():
            print(row)
