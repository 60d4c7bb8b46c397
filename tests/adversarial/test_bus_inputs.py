"""Threats from anyone who can publish on the (anonymous) broker, against a running station.

One station (real Mosquitto, embedded stores) serves this module: R1 is read from bptwin's
own topics (a gateway), R2's off-gas from a serial analyser on a pseudo-terminal and its
other channels from the gateway. Every test plays one attack with an outsider's client and
checks that nothing wrong is stored, that the refusal is counted under its reason, and that
the operator sees it (docs/security.md lists each threat with the test that proves it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.drivers.serial_emulator import PtyAnalyser
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
from tests.test_metrics_endpoint import parse_exposition

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def analyser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PtyAnalyser]:
    with PtyAnalyser(tmp_path_factory.mktemp("pty") / "analyser") as pty:
        yield pty


@pytest.fixture(scope="module")
def station(
    mqtt_broker: tuple[str, int],
    analyser: PtyAnalyser,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Station]:
    settings = station_settings(
        tmp_path_factory.mktemp("station"),
        mqtt_broker,
        unique_prefix(),
        reactors=["R1", "R2"],
        sources=[
            {"name": "offgas", "kind": "serial", "reactors": ["R2"], "port": analyser.path},
            {"name": "gateway", "kind": "bptwin"},
        ],
        clock_fault_after_s=1.0,
    )
    with running(settings) as started:
        started.watch_metrics(started.metrics)  # as 'bptwin serve' does for /metrics
        yield started


@pytest.fixture
def outsider(station: Station, mqtt_broker: tuple[str, int]) -> Iterator[Outsider]:
    client = Outsider(mqtt_broker, station.settings.bus.prefix)
    yield client
    client.close()


def problems(station: Station) -> str:
    return " | ".join(station.snapshot().problems)


# -- time ----------------------------------------------------------------------------------------


def test_a_reading_stamped_in_the_future_is_refused_as_a_clock_fault(
    station: Station, outsider: Outsider
) -> None:
    before = discarded(station, "clock_ahead")
    outsider.reading("R1", "temp_ph_probe", time.time() + 23 * 3600, 30.0)
    outsider.flush()
    assert wait_for(lambda: discarded(station, "clock_ahead") == before + 1)
    assert stored_values(station, "R1", "temp_ph_probe") == []
    assert "clock fault" in problems(station)
    assert "bus clock_ahead" in problems(station)  # on the status strip's rejected input
    metrics = parse_exposition(station.metrics.render())
    assert metrics['bptwin_readings_discarded_total{origin="bus",reason="clock_ahead"}'] >= 1


def test_a_clock_fault_that_persists_is_raised_as_persistent(
    station: Station, outsider: Outsider
) -> None:
    assert station.intake is not None
    started = time.monotonic()
    # A gateway whose clock runs an hour fast keeps sending (clock_fault_after_s = 1 s here).
    while not any(f.persistent for f in station.intake.admission.clock_faults()):
        outsider.reading("R1", "temp_exhaust", time.time() + 3600, 25.0)
        outsider.flush()
        time.sleep(0.2)
        assert time.monotonic() - started < 60, "the clock fault never became persistent"
    metrics = parse_exposition(station.metrics.render())
    assert metrics['bptwin_clock_fault{origin="bus",reactor="R1"}'] == 1
    assert stored_values(station, "R1", "temp_exhaust") == []


# -- history -------------------------------------------------------------------------------------


def test_a_second_value_for_a_stored_reading_is_refused_not_written_over(
    station: Station, outsider: Outsider
) -> None:
    moment = round(time.time() - 60, 3)
    outsider.reading("R1", "pressure", moment, 0.25)
    outsider.flush()
    assert wait_for(lambda: stored_values(station, "R1", "pressure") == [(moment, 0.25)])
    outsider.reading("R1", "pressure", moment, 1.75)  # rewrite history
    outsider.reading("R1", "pressure", moment, 0.25)  # an identical repeat is harmless
    outsider.flush()
    assert station.store is not None
    assert wait_for(lambda: station.store.status().conflicts == 1)  # type: ignore[union-attr]
    assert wait_for(lambda: station.store.status().duplicates >= 1)  # type: ignore[union-attr]
    assert stored_values(station, "R1", "pressure") == [(moment, 0.25)]
    assert "store conflict 1" in problems(station)
    assert station.store.status().kept_aside >= 1


@pytest.mark.parametrize(
    "stamp",
    ["2000-01-01T00:00:00Z", time.time() - 3 * 3600],
    ids=["year-2000", "three-hours-ago"],
)
def test_a_reading_older_than_the_horizon_cannot_be_inserted(
    station: Station, outsider: Outsider, stamp: float | str
) -> None:
    before = discarded(station, "too_old")
    outsider.reading("R1", "od_probe", stamp, 0.5)
    outsider.flush()
    assert wait_for(lambda: discarded(station, "too_old") == before + 1)
    assert stored_values(station, "R1", "od_probe") == []


# -- unknown reactors, channels, units, topics ---------------------------------------------------


@pytest.mark.parametrize("reactor", ["R99", "Ｒ1", "r1"], ids=["R99", "full-width", "lower-case"])
def test_readings_for_unconfigured_reactors_create_no_series(
    station: Station, outsider: Outsider, reactor: str
) -> None:
    before = discarded(station, "unknown_reactor")
    outsider.reading(reactor, "ph", time.time(), 5.0)
    outsider.snapshot(reactor, time.time(), {"ph": 5.0, "do": 40.0})
    outsider.flush()
    assert wait_for(lambda: discarded(station, "unknown_reactor") == before + 2)
    assert not {r for r, _ in series(station)} - {"R1", "R2"}


def test_look_alike_channel_names_create_no_series(station: Station, outsider: Outsider) -> None:
    before = discarded(station, "unknown_channel")
    lookalike = "рh"  # Cyrillic er, then Latin h
    outsider.reading("R1", lookalike, time.time(), 5.0)
    outsider.snapshot("R1", time.time(), {lookalike: 5.0, "phh": 5.0})
    outsider.flush()
    assert wait_for(lambda: discarded(station, "unknown_channel") == before + 3)
    assert not {c for _, c in series(station)} & {lookalike, "phh"}


def test_units_with_control_characters_are_refused(station: Station, outsider: Outsider) -> None:
    before = discarded(station, "bad_unit")
    outsider.reading("R1", "heater_output", time.time(), 40.0, unit="%\x1b[2J\x1b[31m")
    outsider.reading("R1", "heater_output", time.time(), 41.0, unit="%\u202e")
    outsider.flush()
    assert wait_for(lambda: discarded(station, "bad_unit") == before + 2)
    assert stored_values(station, "R1", "heater_output") == []


@pytest.mark.parametrize(
    "levels",
    ["sensors/ph/extra", "sensors/a/v1/R1/sensors/ph", "sensors/ph/"],
    ids=["extra-level", "nested-contract", "trailing-slash"],
)
def test_topics_with_extra_levels_are_refused_and_counted(
    station: Station, outsider: Outsider, levels: str
) -> None:
    before = discarded(station, "bad_topic")
    outsider.raw(f"{outsider.prefix}/v1/R1/{levels}", b'{"ts": %d, "value": 5.0}' % time.time())
    outsider.flush()
    assert wait_for(lambda: discarded(station, "bad_topic") == before + 1)
    assert not {c for _, c in series(station)} - {
        "ph", "do", "pressure", "offgas_o2", "offgas_co2", "offgas_flow", "temp_broth",
    }  # fmt: skip


# -- several sources per reactor -----------------------------------------------------------------


def test_a_bus_reading_for_a_locally_acquired_channel_is_dropped_and_counted(
    station: Station, outsider: Outsider, analyser: PtyAnalyser
) -> None:
    threads = {thread.driver.name: thread for thread in station.driver_threads}
    assert wait_for(lambda: threads["offgas"].driver.stats.connected)
    before = discarded(station, "acquired_locally")
    analyser.send_gas(20.5, 1.5)  # the analyser owns R2's off-gas ...
    assert wait_for(lambda: len(stored_values(station, "R2", "offgas_co2")) == 1)
    outsider.reading("R2", "offgas_co2", time.time(), 9.9)  # ... a forged value is dropped
    outsider.reading("R2", "ph", time.time(), 5.0)  # the gateway owns R2's pH
    outsider.flush()
    assert wait_for(lambda: discarded(station, "acquired_locally") == before + 1)
    assert wait_for(lambda: len(stored_values(station, "R2", "ph")) == 1)
    assert [v for _, v in stored_values(station, "R2", "offgas_co2")] == [1.5]
    # The station's own readings come back from the broker to nobody (MQTT No Local).
    assert discarded(station, "acquired_locally") == before + 1


def test_values_of_a_snapshot_are_checked_one_by_one(station: Station, outsider: Outsider) -> None:
    """A snapshot mixing a good channel with a locally owned one stores only the good one."""
    before = discarded(station, "acquired_locally")
    moment = round(time.time() - 5, 3)
    outsider.snapshot("R2", moment, {"do": 41.0, "offgas_o2": 0.0})
    outsider.flush()
    assert wait_for(lambda: (moment, 41.0) in stored_values(station, "R2", "do"))
    assert wait_for(lambda: discarded(station, "acquired_locally") == before + 1)
    assert all(not math.isclose(v, 0.0) for _, v in stored_values(station, "R2", "offgas_o2"))


def test_a_channel_claimed_by_two_sources_stops_the_station_naming_both(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    from bptwin.tui.settings import SettingsError

    settings = station_settings(
        tmp_path,
        mqtt_broker,
        unique_prefix(),
        sources=[
            {"name": "probes", "kind": "bptwin", "channels": ["ph", "do"]},
            {"name": "plc", "kind": "bptwin", "channels": ["do", "temp_broth"]},
        ],
    )
    station = Station(settings)
    with pytest.raises(SettingsError) as refused:
        station.start()
    station.stop()
    assert "'do' of reactor 'R1'" in str(refused.value)
    assert "('probes')" in str(refused.value) and "('plc')" in str(refused.value)
