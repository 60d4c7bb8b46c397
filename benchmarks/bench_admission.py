"""Admission: the cost of checking a reading, and a flood for an unknown reactor.

- ``admission.admit``: one good reading through every check (database/admission.py).
- ``admission.flood``: a gateway process sends 200 real readings of R1 (one every 10 ms),
  alone and then while another process floods 20 000 snapshots for R99 as fast as it can,
  over loopback Mosquitto with the broker's default queue; the station's path (MqttBus ->
  ReadingIntake -> handler) notes how long each real reading took from publish to admission.
  The station subscribes to its own reactors only, so the flood reaches only the best-effort
  counting connection (which competes for the CPU, not for the broker's queue).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_bus import _broker  # noqa: E402
from bptwin.database.admission import BUS_ORIGIN, Admission  # noqa: E402
from bptwin.database.bus import MqttBus  # noqa: E402
from bptwin.database.reading import Reading  # noqa: E402
from bptwin.drivers.intake import ReadingIntake  # noqa: E402
from bptwin.drivers.sources import plan_sources  # noqa: E402

REAL = 200
FLOOD = 20_000
# The real gateway and the flood are two clients, as they would be: each its own process.
GATEWAY = """
import json, sys, time
from bptwin.database.bus import MqttBus
host, port, prefix, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
bus = MqttBus(host, port)
bus.start()
next_real = time.monotonic()
for i in range(count):
    while time.monotonic() < next_real:
        time.sleep(0.0005)
    next_real += 0.01
    payload = json.dumps({"ts": time.time(), "value": 30.0}).encode()
    bus.publish(f"{prefix}/v1/R1/sensors/temp_broth", payload, qos=1)
bus.flush(120)
bus.stop()
"""
FLOODER = """
import json, sys, time
from bptwin.database.bus import MqttBus
host, port, prefix, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
bus = MqttBus(host, port)
bus.start()
snapshot = json.dumps({"ts": time.time(), "values": {"ph": 5.0, "do": 40.0, "temp_broth": 30.0,
                       "offgas_o2": 20.5, "offgas_co2": 1.0}}).encode()
for i in range(count):
    bus.publish(f"{prefix}/v1/R99/sensors", snapshot, qos=1)
bus.flush(120)
bus.stop()
"""


def bench_admit_one_reading() -> list[dict[str, object]]:
    plan = plan_sources([{"name": "gw", "kind": "bptwin"}], reactors=["R1"], bus_is_mqtt=True)
    admission = Admission(
        plan.policy(max_clock_skew_s=5, history_horizon_s=7200, clock_fault_after_s=30)
    )
    reading = Reading(time.time(), "R1", "ph", 5.0, "pH")
    gate = admission.topic_gate("bptwin")
    rounds = 200_000
    started = time.perf_counter()
    for _ in range(rounds):
        admission.admit(reading, BUS_ORIGIN)
    admit_us = (time.perf_counter() - started) / rounds * 1e6
    started = time.perf_counter()
    for _ in range(rounds):
        gate("bptwin/v1/R99/sensors")
    gate_us = (time.perf_counter() - started) / rounds * 1e6
    return [
        {"benchmark": "admission.admit one reading", "value": admit_us, "unit": "µs",
         "note": "every check: reactor, channel, unit, owner, clock skew, horizon"},
        {"benchmark": "admission.topic gate (unknown reactor)", "value": gate_us, "unit": "µs",
         "note": "refused by topic before decode or queue"},
    ]  # fmt: skip


def _latencies(host: str, port: int, flood: int) -> tuple[list[float], int]:
    prefix = f"adm{flood}"
    plan = plan_sources([{"name": "gw", "kind": "bptwin"}], reactors=["R1"], bus_is_mqtt=True)
    intake = ReadingIntake(plan, max_clock_skew_s=5, history_horizon_s=7200, clock_fault_after_s=30)
    latencies: list[float] = []
    done = threading.Event()

    def record(reading: Reading) -> None:
        latencies.append(time.time() - reading.timestamp)
        if len(latencies) >= REAL:
            done.set()

    bus = MqttBus(host, port)
    intake.connect_bus(bus, record, prefix=prefix, bus_is_mqtt=True)
    bus.start()
    try:
        started = [
            subprocess.Popen(
                [sys.executable, "-c", script, host, str(port), prefix, str(count)], cwd=ROOT
            )
            for script, count in ((FLOODER, flood), (GATEWAY, REAL))
            if count
        ]
        done.wait(180)
        for process in started:
            process.wait(180)
        counted = intake.admission.stats().discarded.get((BUS_ORIGIN, "unknown_reactor"), 0)
    finally:
        intake.disconnect_bus()
        bus.stop()
    return latencies, counted


def bench_flood_for_an_unknown_reactor() -> list[dict[str, object]]:
    with _broker(extra_config="") as address:  # Mosquitto's default queue (1000 QoS 1)
        if address is None:
            return [{"benchmark": "admission.flood", "value": "skipped", "unit": "",
                     "note": "mosquitto not installed"}]  # fmt: skip
        quiet, _ = _latencies(*address, flood=0)
        flooded, counted = _latencies(*address, flood=FLOOD)
    rows = []
    for label, values in (("alone", quiet), (f"amid {FLOOD} R99 snapshots", flooded)):
        values = sorted(values) or [float("nan")]
        rows.append(
            {
                "benchmark": f"admission.flood real reading latency p50, {label}",
                "value": statistics.median(values) * 1000,
                "unit": "ms",
                "note": f"{len(values)}/{REAL} real readings arrived; "
                f"p99 {values[int(0.99 * (len(values) - 1))] * 1000:.1f} ms",
            }
        )
    rows.append(
        {
            "benchmark": "admission.flood R99 messages counted",
            "value": counted,
            "unit": "messages",
            "note": f"of {FLOOD}, on the best-effort counting connection (QoS 0)",
        }
    )
    return rows
