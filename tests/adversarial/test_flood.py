"""A flood of readings for a reactor the station does not have (docs/security.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.tui.runtime.station import Station
from tests.adversarial.harness import (
    Outsider,
    discarded,
    running,
    series,
    station_settings,
    stored_values,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.mqtt


@pytest.fixture
def station(mqtt_broker: tuple[str, int], tmp_path: Path) -> Iterator[Station]:
    with running(station_settings(tmp_path, mqtt_broker, unique_prefix())) as started:
        yield started


def test_a_flood_for_an_unknown_reactor_does_not_slow_the_real_one(
    station: Station, mqtt_broker: tuple[str, int]
) -> None:
    """20 000 snapshots for R99 around 200 real readings: every real one stored, no series.

    The station subscribes to its own reactors only, so the broker does not even send it the
    flood; a second, best-effort connection counts what arrives for other reactors. The time
    the real readings take with and without a flood is in benchmarks/bench_admission.py.
    """
    outsider = Outsider(mqtt_broker, station.settings.bus.prefix)
    try:
        now = time.time()
        flood = {name: 1.0 for name in ("ph", "do", "temp_broth", "offgas_o2", "offgas_co2")}
        real = [round(now - 200 + i, 3) for i in range(200)]
        for i in range(20_000):
            outsider.snapshot("R99", now, flood)
            if i % 100 == 0:
                outsider.reading("R1", "temp_broth", real[i // 100], 30.0)
        outsider.flush()
    finally:
        outsider.close()
    assert wait_for(lambda: len(stored_values(station, "R1", "temp_broth")) == 200, timeout=120)
    assert [t for t, _ in stored_values(station, "R1", "temp_broth")] == real
    assert {r for r, _ in series(station)} == {"R1"}
    assert station.bus is not None and station.bus.stats.dropped == 0
    # Counted where they arrive (best effort: the broker may drop QoS 0 for a slow watcher).
    assert wait_for(lambda: discarded(station, "unknown_reactor") > 0)
    assert "bus unknown_reactor" in " ".join(station.snapshot().problems)
