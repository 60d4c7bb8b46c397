"""Soak: a whole simulated batch (~24 h of 19 channels) through the real station at full speed.

The station (simulated driver -> recorder -> embedded store, the shadow, and every reading
published through the durable MQTT outbox to a real Mosquitto) runs a batch as fast as the
machine allows, with the broker stopped for ``OUTAGE_S`` seconds in the middle. Reported:
readings acquired (in), stored and delivered to the broker (out), the deepest the outbox got,
and the growth of the process's resident memory from after start-up to the end.

``BPTWIN_SOAK_HOURS`` caps the simulated hours (default 24, or the whole batch if shorter).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bptwin.database.channels import CHANNELS_BY_NAME  # noqa: E402
from bptwin.database.timeseries.embedded import EmbeddedStore  # noqa: E402
from bptwin.tui.runtime.station import Station  # noqa: E402
from bptwin.tui.settings import Settings  # noqa: E402

OUTAGE_S = 10.0
DRAIN_LIMIT_S = 1800.0
CHANNELS = 19


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _broker(folder: Path):  # type: ignore[no-untyped-def]
    from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary

    if mosquitto_binary() is None:
        return None
    # Sized as docs/mqtt.md recommends: a subscriber behind a full-speed publisher keeps all.
    server = MosquittoServer(folder / "mosquitto", extra_config="max_queued_messages 0\n")
    server.start()
    return server


def _stored(data_dir: Path) -> int:
    store = EmbeddedStore(data_dir / "timeseries.sqlite")
    try:
        return sum(
            len(store.read_range(reactor, channel, 0, 4e9))
            for reactor, channel in store.list_channels()
            if channel in CHANNELS_BY_NAME
        )
    finally:
        store.close()


def bench_soak_batch_through_broker_and_store() -> list[dict]:
    hours = float(os.environ.get("BPTWIN_SOAK_HOURS", "24"))
    target = int(hours * 3600 * CHANNELS)
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        broker = _broker(data_dir)
        if broker is None:
            return [{"benchmark": "soak", "value": "skipped", "unit": "",
                     "note": "mosquitto not installed"}]  # fmt: skip
        settings = Settings()
        settings.station.data_dir = data_dir
        settings.acquisition.speed = 0.0  # as fast as the machine allows
        settings.bus.backend = "mqtt"
        settings.bus.host, settings.bus.port = broker.address
        settings.bus.prefix = "soak"
        station = Station(settings)
        station.start()
        bus = station.bus
        outbox = getattr(bus, "outbox", None)
        assert outbox is not None
        time.sleep(1.0)
        rss_start = _rss_mib()
        rss_peak = rss_start
        started = time.perf_counter()
        outage_done = False
        last_total, last_change = 0, time.monotonic()
        try:
            while True:
                time.sleep(0.5)
                total = station.snapshot().readings_total
                rss_peak = max(rss_peak, _rss_mib())
                if total != last_total:
                    last_total, last_change = total, time.monotonic()
                if not outage_done and total >= target // 2:
                    broker.stop()  # mid-batch outage: publishes pile up in the outbox
                    time.sleep(OUTAGE_S)
                    broker.start()
                    outage_done = True
                    last_change = time.monotonic()  # the sleep above is not the batch ending
                if total >= target or time.monotonic() - last_change > 3.0:
                    break  # the target hours, or the simulated batch ended
            station.stop_drivers()
            acquired_s = time.perf_counter() - started
            # At full speed acquisition outruns the broker: wait for the outbox to drain.
            deadline = time.monotonic() + DRAIN_LIMIT_S
            while outbox.depth() > 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                rss_peak = max(rss_peak, _rss_mib())
        finally:
            station.stop()  # the recorder writes the rest, the outbox drains to the broker
            drained_s = time.perf_counter() - started
            broker.stop()
        rss_end = _rss_mib()
        readings_in = station.snapshot().readings_total
        stored = _stored(data_dir)
        delivered = outbox.delivered
        left = outbox.depth()
        max_depth = outbox.max_depth
    batch_hours = readings_in / CHANNELS / 3600
    return [
        {
            "benchmark": "soak.readings in (acquired)",
            "value": readings_in,
            "unit": "readings",
            "note": f"{batch_hours:.1f} h of batch in {acquired_s:.0f} s "
            f"({readings_in / acquired_s:.0f}/s), broker down {OUTAGE_S:.0f} s mid-batch",
        },
        {
            "benchmark": "soak.readings out (stored)",
            "value": stored,
            "unit": "readings",
            "note": f"embedded store; lost {readings_in - stored}",
        },
        {
            "benchmark": "soak.readings out (to broker)",
            "value": delivered,
            "unit": "messages",
            "note": f"acknowledged by Mosquitto (readings, predictions, alarm transitions); "
            f"outbox empty after {drained_s:.0f} s"
            if left == 0
            else f"{left} still in the outbox",
        },
        {
            "benchmark": "soak.max outbox depth",
            "value": max_depth,
            "unit": "messages",
            "note": "durable MQTT outbox (SQLite) at its deepest: full-speed acquisition "
            "outruns the broker, and the outage adds to it",
        },
        {
            "benchmark": "soak.memory growth",
            "value": rss_end - rss_start,
            "unit": "MiB",
            "note": f"RSS {rss_start:.0f} -> {rss_end:.0f} MiB (peak {rss_peak:.0f}) "
            "from after start-up to the end",
        },
    ]
