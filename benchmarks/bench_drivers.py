"""Driver throughput: serial line parser, serial driver over a pty, replay, simulated reactor."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptwin.drivers.base import DriverThread
from bptwin.drivers.serial_protocol import (
    GasSentence,
    SerialParseError,
    Status,
    format_sentence,
    frame,
    parse_line,
)


def _lines(count: int) -> list[bytes]:
    good = [
        format_sentence(
            GasSentence(i % 65536, 20.9 - i % 100 / 100, 0.04 + i % 50 / 100, Status.OK)
        )
        for i in range(count)
    ]
    # One line in ten is broken, as a noisy cable might deliver them.
    for index in range(0, count, 10):
        good[index] = good[index][:8] + b"#" + good[index][9:]
    return good


def bench_serial_parser() -> list[dict]:
    lines = _lines(200_000)
    started = time.perf_counter()
    rejected = 0
    for line in lines:
        try:
            parse_line(line)
        except SerialParseError:
            rejected += 1
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "serial parser",
            "value": len(lines) / elapsed,
            "unit": "lines/s",
            "note": f"{len(lines)} $OGA lines, {rejected} garbled (10 %); the analyser sends 1-2/s",
        }
    ]


def bench_serial_driver_over_pty() -> list[dict]:
    from bptwin.drivers.serial_analyser import SerialAnalyserDriver
    from bptwin.drivers.serial_emulator import PtyAnalyser

    count = 20_000
    payload = b"".join(
        frame(f"OGA,{i % 65536},20.900,0.{i % 1000:03d},OK".encode()) for i in range(count)
    )
    received = 0
    done = threading.Event()

    def sink(_reading: object) -> None:
        nonlocal received
        received += 1
        if received == 2 * count:
            done.set()

    with PtyAnalyser() as analyser:
        driver = SerialAnalyserDriver(sink, port=analyser.port, read_timeout_s=0.05)
        with DriverThread(driver):
            while not driver.stats.connected:
                time.sleep(0.01)
            started = time.perf_counter()
            view = memoryview(payload)
            while view:
                written = analyser.write(bytes(view[:4096]))
                view = view[written:]
                if not written:
                    time.sleep(0.0005)  # the pty buffer is full: let the driver read
            done.wait(60)
            elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "serial driver over a pty",
            "value": count / elapsed,
            "unit": "lines/s",
            "note": f"{count} lines written as fast as the pty takes them, {received} readings",
        }
    ]


def bench_replay() -> list[dict]:
    import numpy as np
    import pandas as pd

    from bptwin.database.channels import CHANNELS_BY_NAME
    from bptwin.drivers.replay import ReplayDriver

    rows = 86_400  # a 24 h batch at 1 Hz
    frame_ = pd.DataFrame(
        {name: np.random.default_rng(0).normal(size=rows) for name in CHANNELS_BY_NAME}
    )
    frame_.insert(0, "timestamp", 1.78e9 + np.arange(rows, dtype=float))
    count = 0

    def sink(_reading: object) -> None:
        nonlocal count
        count += 1

    driver = ReplayDriver(sink, frame_, speed=0)
    started = time.perf_counter()
    driver.run(threading.Event())
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "replay at max speed",
            "value": count / elapsed,
            "unit": "readings/s",
            "note": f"24 h x {len(CHANNELS_BY_NAME)} channels: {count} readings, {elapsed:.1f} s",
        }
    ]


def bench_simulated_driver() -> list[dict]:
    import bptwin.twin.simulator  # noqa: F401  (import time is not stepping time)
    from bptwin.drivers.simulated import SimulatedReactorDriver

    count = 0

    def sink(_reading: object) -> None:
        nonlocal count
        count += 1

    driver = SimulatedReactorDriver(sink, seed=1, speed=0, start_time=1.78e9, duration_s=3600)
    started = time.perf_counter()
    driver.run(threading.Event())
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "simulated driver at max speed",
            "value": 3600 / elapsed,
            "unit": "sim s/s",
            "note": f"1 h batch: {count / elapsed:,.0f} readings/s, 24 h in ~{24 * elapsed:.0f} s",
        }
    ]


def bench_topic_map_decode() -> list[dict]:
    import json

    from bptwin.drivers.topic_map import TopicMap

    lab = TopicMap.from_settings(
        [
            {"topic": "bioprocess/pichia/{reactor}/sensors/offgas/co2", "channel": "offgas_co2"},
            {"topic": "bioprocess/pichia/{reactor}/sensors/ph", "channel": "ph"},
        ],
        include_default=True,
    )
    now = time.time()
    messages = [
        ("bioprocess/pichia/vessel1/sensors/offgas/co2", b"1.234"),
        ("bioprocess/pichia/vessel1/sensors/ph", json.dumps({"value": 5.01, "ts": now}).encode()),
        (
            "bptwin/v1/R1/sensors/do",
            json.dumps({"ts": "2026-11-23T10:00:00.000Z", "value": 88.2, "unit": "%sat"}).encode(),
        ),
    ] * 20_000
    started = time.perf_counter()
    for topic, payload in messages:
        lab.decode(topic, payload, arrived_at=now, default_reactor="R1")
    elapsed = time.perf_counter() - started
    return [
        {
            "benchmark": "MQTT topic map decode",
            "value": len(messages) / elapsed,
            "unit": "msg/s",
            "note": "match + decode, mixed plain / JSON / bptwin contract; paho QoS 1 floor ~3700",
        }
    ]


def bench_driver_stop_latency() -> list[dict]:
    from bptwin.drivers.simulated import SimulatedReactorDriver

    latencies = []
    for _ in range(10):
        driver = SimulatedReactorDriver(lambda _r: None, seed=1, speed=1.0)
        thread = DriverThread(driver).start()
        while driver.last_step is None:
            time.sleep(0.005)
        time.sleep(0.2)  # inside the one-second wait between simulated seconds
        started = time.perf_counter()
        thread.stop()
        latencies.append(time.perf_counter() - started)
    return [
        {
            "benchmark": "driver stop latency (real time)",
            "value": statistics.median(latencies) * 1000,
            "unit": "ms",
            "note": f"median of 10, max {max(latencies) * 1000:.1f} ms; stop.wait() not sleep",
        }
    ]


if __name__ == "__main__":
    for bench in (
        bench_serial_parser,
        bench_serial_driver_over_pty,
        bench_replay,
        bench_simulated_driver,
        bench_topic_map_decode,
        bench_driver_stop_latency,
    ):
        for row in bench():
            print(row)
