"""Operators' commands from a viewer: what checking one costs the engine, and the round trip.

``verify``: the engine's checks of one signed alarm command, and of a forged one (what a flood
of forgeries costs it). ``round_trip``: a viewer's shelve or unshelve through a real Mosquitto to
an engine (a station with an SQLite notebook) and back with the signed answer, transition stored.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bench_bus import _broker
from bptwin.twin.commands import ACKNOWLEDGE, AlarmCommand, CommandRefused, CommandVerifier
from bptwin.twin.setpoints import ControlKey

PREFIX = "bench-commands"


def _micros(samples: list[float]) -> tuple[float, float]:
    array = np.asarray(samples) * 1e6
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def bench_verify() -> list[dict[str, object]]:
    key = ControlKey.generate()
    verifier = CommandVerifier(key, ["R1"], prefix=PREFIX)
    valid, forged = [], []
    for _ in range(2000):
        command = AlarmCommand.new("R1", ACKNOWLEDGE, "R1/ph/hi", "vera", lifetime_s=10)
        topic, payload = command.message(PREFIX, key)
        started = time.perf_counter()
        verifier.verify(topic, payload)
        verifier.claim(command.command_id)
        valid.append(time.perf_counter() - started)
        _, other = command.message(PREFIX, ControlKey.generate())
        started = time.perf_counter()
        with contextlib.suppress(CommandRefused):
            verifier.verify(topic, other)
        forged.append(time.perf_counter() - started)
    notes = {
        "valid": "signature, fields, clock, once-only memory",
        "forged": "signed with another key: refused at the signature",
    }
    rows = []
    for name, samples in (("valid", valid), ("forged", forged)):
        p50, p99 = _micros(samples)
        rows.append(
            {
                "benchmark": f"commands.verify_{name}",
                "value": p50,
                "unit": "µs",
                "note": f"p99 {p99:.0f} µs; {notes[name]}",
            }
        )
    return rows


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def bench_round_trip() -> list[dict[str, object]]:
    from bptwin.database.bus import MqttBus
    from bptwin.tui.runtime.acquisition_lock import acquisition_owner
    from bptwin.tui.runtime.station import Station
    from bptwin.tui.runtime.viewer import ViewerStation
    from bptwin.tui.settings import Settings

    with _broker() as address, tempfile.TemporaryDirectory() as folder:
        if address is None:
            return [{"benchmark": "commands.round_trip", "value": "skipped", "unit": "",
                     "note": "mosquitto not installed"}]  # fmt: skip
        ControlKey.generate().write(Path(folder) / "commands.key")
        settings = Settings()
        settings.station.data_dir = Path(folder) / "station"
        settings.bus.backend = "mqtt"
        settings.bus.host, settings.bus.port = address
        settings.bus.prefix = PREFIX
        settings.acquisition.sources = [{"name": "gateway", "kind": "bptwin"}]
        settings.commands.key_file = Path(folder) / "commands.key"
        station = Station(settings)
        station.start()
        viewer = None
        gateway = MqttBus(*address)
        gateway.start()
        try:
            assert station.notebook is not None
            station.notebook.service.operators.create_operator(
                "setup", "vera", "supervisor", "2468"
            )
            now = time.time()
            for second in range(46):  # 45 s of pH 5.5: the engine raises 'ph' high
                payload = json.dumps({"ts": now - 45 + second, "value": 5.5}).encode()
                gateway.publish(f"{PREFIX}/v1/R1/sensors/ph", payload, qos=1)
            gateway.flush(30)
            assert wait_for(lambda: any(a.rule == "ph" for a in station.snapshot().alarms))
            owner = acquisition_owner(settings, "R1")
            assert owner is not None
            viewer = ViewerStation(settings, owner)
            viewer.start()
            assert wait_for(lambda: viewer.bus is not None and viewer.bus.connected)
            actions = viewer.alarm_actions
            alarm = next(a.alarm_id for a in station.snapshot().alarms if a.rule == "ph")
            actions.acknowledge(alarm, "vera")
            times = []
            for _ in range(30):
                started = time.perf_counter()
                actions.shelve(alarm, "vera", "bench", time.time() + 600)
                times.append(time.perf_counter() - started)
                started = time.perf_counter()
                actions.unshelve(alarm, "vera")
                times.append(time.perf_counter() - started)
        finally:
            gateway.stop()
            if viewer is not None:
                viewer.stop()
            station.stop()
    p50, p99 = (value / 1000 for value in _micros(times))
    return [
        {
            "benchmark": "commands.round_trip",
            "value": p50,
            "unit": "ms",
            "note": f"p99 {p99:.1f} ms over {len(times)}: viewer → Mosquitto → engine "
            "(verify, operator check, transition stored and published) → signed answer",
        }
    ]
