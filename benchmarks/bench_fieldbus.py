"""Field-bus sources into the store: 64 reactors × 20 points at 1 Hz over OPC UA and Modbus.

The server (asyncua, or pymodbus over TCP) runs in a process of its own and changes every
point once per second; this process runs the driver, admission and the Recorder into an
:class:`~bptwin.database.timeseries.embedded.EmbeddedStore`, as a station does. Each row says
how many readings per second reached the store, against the 1 280 offered, and the CPU this
process used for it (a share of one core, from ``time.process_time``).

The catalogue has 19 channels, so each reactor ``Rn`` gives its 19 and a second pH probe is
read as reactor ``Sn``: 64 × 20 = 1 280 points. ``modbus.max`` polls the same registers every
50 ms to find how many readings per second the Modbus path can store at most.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bptwin.database.admission import Admission, AdmissionPolicy  # noqa: E402
from bptwin.database.channels import CHANNELS  # noqa: E402
from bptwin.database.reading import Reading  # noqa: E402
from bptwin.database.recorder import Recorder  # noqa: E402
from bptwin.database.timeseries.embedded import EmbeddedStore  # noqa: E402
from bptwin.drivers.base import Driver, DriverThread  # noqa: E402
from bptwin.drivers.modbus_source import ModbusOptions, ModbusSourceDriver  # noqa: E402
from bptwin.drivers.opcua_source import OpcUaOptions, OpcUaSourceDriver  # noqa: E402
from bptwin.drivers.sources import SOURCE_KINDS, SourceOptions  # noqa: E402

REACTORS = 64
POINTS = 20
OFFERED = REACTORS * POINTS  # readings per second at 1 Hz
MEASURE_S = 20.0
CHANNEL_NAMES = [c.name for c in CHANNELS]  # 19

OPCUA_SERVER = """
import sys, time
from tests.fixtures.opcua_server import BioreactorServer
reactors, port = int(sys.argv[1]), int(sys.argv[2])
names = [f"R{i}" for i in range(1, reactors + 1)]
server = BioreactorServer(names, port=port, extra_doubles=13).start()
doubles = ["pH", "DO", "TempBroth", "TempExhaust", "StirrerSpeed", "AirFlow", "O2Flow"]
doubles += [f"Extra{i:02d}" for i in range(13)]
print("ready", flush=True)
tick = 0
next_at = time.monotonic()
while True:
    tick += 1
    server.write_many({f"{r}.{d}": 1.0 + (tick % 50) / 100 for r in names for d in doubles})
    next_at += 1.0
    time.sleep(max(0.0, next_at - time.monotonic()))
"""

MODBUS_SERVER = """
import sys, time
from tests.fixtures.modbus_server import ModbusDevices
devices, port, points = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server = ModbusDevices(tuple(range(1, devices + 1))).serve_tcp(port)
print("ready", flush=True)
tick = 0
while True:
    tick += 1
    for device in range(1, devices + 1):
        for point in range(points):
            server.set_value(device, "input", 2 * point, 1.0 + (tick % 50) / 100)
    time.sleep(1.0)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(script: str, *args: object) -> Iterator[None]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # waits for the server to be up
        if "ready" not in line:
            raise RuntimeError("the benchmark's server did not start")
        yield
    finally:
        process.terminate()
        process.wait(30)


def _points() -> list[tuple[str, str, int]]:
    """(reactor, channel, index of the point on its reactor) for the 1 280 points."""
    points = []
    for n in range(1, REACTORS + 1):
        for index in range(POINTS):
            if index < len(CHANNEL_NAMES):
                points.append((f"R{n}", CHANNEL_NAMES[index], index))
            else:
                points.append((f"S{n}", "ph", index))  # a second pH probe on reactor n
    return points


def _points_of(options: SourceOptions) -> list[Any]:
    return list(getattr(options, "nodes", None) or getattr(options, "registers", []))


def _station_reactors() -> list[str]:
    return [f"R{n}" for n in range(1, REACTORS + 1)] + [f"S{n}" for n in range(1, REACTORS + 1)]


def _measure(
    source: dict[str, Any], settle: Callable[[Driver], bool], measure_s: float = MEASURE_S
) -> dict[str, float]:
    """Run the source into an embedded store; readings/s stored and this process's CPU share.

    The points are admitted as a station admits them; the policy is made by hand because a
    station's plan would want every reactor to have the same channels (the Sn reactors have
    one).
    """
    options = SOURCE_KINDS[source["kind"]].options_model.model_validate(source)
    owners = {(p.reactor or "", p.channel): source["name"] for p in _points_of(options)}
    admission = Admission(
        AdmissionPolicy(
            reactors=frozenset(_station_reactors()),
            owners=owners,
            bus_sources=frozenset(),
            station_clock_sources=frozenset(),
            max_clock_skew_s=5.0,
            history_horizon_s=7200.0,
            clock_fault_after_s=30.0,
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "ts.sqlite")
        recorder = Recorder(store)
        received = [0]
        lock = threading.Lock()

        def record(reading: Reading) -> None:
            if admission.admit(reading, source["name"]) is None:
                recorder.add(reading)
            with lock:
                received[0] += 1

        driver: Driver
        if isinstance(options, OpcUaOptions):
            driver = OpcUaSourceDriver(record, options, name=source["name"])
        else:
            assert isinstance(options, ModbusOptions)
            driver = ModbusSourceDriver(record, options, name=source["name"])
        with DriverThread(driver):
            deadline = time.monotonic() + 120
            while not settle(driver) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2.0)  # past the start-up burst (initial values, first polls)
            recorder.flush(60)
            written_before = recorder.stats().written
            cpu, wall = time.process_time(), time.perf_counter()
            time.sleep(measure_s)
            recorder.flush(60)
            written = recorder.stats().written - written_before
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        recorder.close()
        store.close()
    discarded = admission.stats().discarded_total
    return {
        "rate": written / wall,
        "cpu": cpu / wall,
        "rejected": float(driver.stats.rejected + discarded),
        "missed": float(getattr(driver, "missed_polls", 0)),
    }


def bench_opcua_64_reactors() -> list[dict[str, object]]:
    port = _free_port()
    nodes_of = ["pH", "DO", "TempBroth", "TempExhaust", "StirrerSpeed", "AirFlow", "O2Flow"]
    nodes_of += [f"Extra{i:02d}" for i in range(13)]
    with _server(OPCUA_SERVER, REACTORS, port):
        source = {
            "name": "dcu",
            "kind": "opcua",
            "url": f"opc.tcp://127.0.0.1:{port}/bptwin/",
            "namespace": "urn:bptwin:test:bioreactor",
            "interval_s": 0.5,
            "timeout_s": 10.0,
            "nodes": [
                {"channel": channel, "reactor": reactor, "node": f"s=R{reactor[1:]}.{nodes_of[i]}"}
                for reactor, channel, i in _points()
            ],
        }
        result = _measure(source, lambda d: d.stats.connected and d.stats.emitted >= OFFERED)
    return [
        {
            "benchmark": "fieldbus.opcua 64 reactors x 20 nodes at 1 Hz, stored",
            "value": result["rate"],
            "unit": "readings/s",
            "note": f"of {OFFERED} offered (subscription); driver+store CPU "
            f"{result['cpu'] * 100:.0f} % of one core; {result['rejected']:.0f} refused",
        }
    ]


def _modbus_source(port: int, interval_s: float, timeout_s: float) -> dict[str, Any]:
    return {
        "name": "probes",
        "kind": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "interval_s": interval_s,
        "timeout_s": timeout_s,
        "registers": [
            {
                "channel": channel,
                "reactor": reactor,
                "device_id": int(reactor[1:]),
                "table": "input",
                "address": 2 * index,
            }
            for reactor, channel, index in _points()
        ],
    }


def bench_modbus_64_reactors() -> list[dict[str, object]]:
    port = _free_port()
    with _server(MODBUS_SERVER, REACTORS, port, POINTS):
        held = _measure(_modbus_source(port, 1.0, 0.5), lambda d: d.stats.emitted >= OFFERED)
        most = _measure(
            _modbus_source(port, 0.05, 0.04), lambda d: d.stats.emitted >= OFFERED, 10.0
        )
    return [
        {
            "benchmark": "fieldbus.modbus 64 devices x 20 registers at 1 Hz, stored",
            "value": held["rate"],
            "unit": "readings/s",
            "note": f"of {OFFERED} offered (64 requests/s, TCP); CPU {held['cpu'] * 100:.0f} % "
            f"of one core; {held['missed']:.0f} polls missed, {held['rejected']:.0f} refused",
        },
        {
            "benchmark": "fieldbus.modbus same registers polled every 50 ms, stored",
            "value": most["rate"],
            "unit": "readings/s",
            "note": f"the path's ceiling; CPU {most['cpu'] * 100:.0f} % of one core; "
            f"{most['missed']:.0f} polls missed",
        },
    ]
