"""Alarm engine throughput with the SOP default rules (issue 6: cheap per reading)."""

from __future__ import annotations

import time

import numpy as np

from bptwin.database.channels import CHANNELS
from bptwin.database.reading import Reading
from bptwin.twin.alarm_rules import DEFAULT_RULES
from bptwin.twin.alarms import AlarmEngine

T0 = 1_790_000_000.0


def _batch(seconds: int, reactors: int = 1) -> list[Reading]:
    """Every catalogue channel at 1 Hz; DO dips below 20 % and 15 % so limit alarms fire."""
    rng = np.random.default_rng(7)
    centre = {"do": 40.0, "ph": 5.0, "temp_broth": 30.0}
    readings = []
    for second in range(seconds):
        for channel in CHANNELS:
            value = centre.get(channel.name, (channel.physical_min + channel.physical_max) / 2)
            if channel.name == "do" and (second // 900) % 4 == 3:
                value = 12.0  # a 15 min dip in every hour
            value += float(rng.normal(0, 0.05))
            for index in range(reactors):
                readings.append(Reading(T0 + second, f"R{index + 1}", channel.name, value))
    return readings


def _throughput(readings: list[Reading], evaluate_every_s: float = 1.0) -> tuple[float, int]:
    engine = AlarmEngine(DEFAULT_RULES)
    transitions = 0
    next_evaluate = readings[0].timestamp
    started = time.perf_counter()
    for reading in readings:
        transitions += len(engine.feed(reading))
        if reading.timestamp >= next_evaluate:
            transitions += len(engine.evaluate(reading.timestamp))
            next_evaluate += evaluate_every_s
    elapsed = time.perf_counter() - started
    return len(readings) / elapsed, transitions


def bench_alarm_engine_throughput() -> list[dict[str, object]]:
    readings = _batch(3 * 3600)  # 3 h of 19 channels at 1 Hz: 205 200 readings
    rate, transitions = _throughput(readings)
    realtime = rate / len(CHANNELS)
    watched = [r for r in readings if r.channel in ("do", "ph", "temp_broth")]
    watched_rate, _ = _throughput(watched)
    return [
        {
            "benchmark": "alarm engine, default rules",
            "value": rate,
            "unit": "readings/s",
            "note": f"19 channels at 1 Hz + evaluate() each second; {transitions} transitions; "
            f"{realtime:,.0f} reactors' worth of real time",
        },
        {
            "benchmark": "alarm engine, cost per reading",
            "value": 1e6 / rate,
            "unit": "µs",
            "note": "feed() incl. lock, limit/rate/stale/frozen rules",
        },
        {
            "benchmark": "alarm engine, watched channels only",
            "value": watched_rate,
            "unit": "readings/s",
            "note": "do, ph, temp_broth: limit + stale + frozen (+ rate on temp_broth)",
        },
    ]
