"""The simulated reactor driver: accelerated runs, every channel, prompt stop, samples."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading
from bptwin.drivers.base import DriverThread
from bptwin.drivers.simulated import SimulatedReactorDriver, simulator_channel_values
from bptwin.twin.sim_sensors import NOT_SIMULATED

pytest.importorskip("bptwin.twin.simulator")

START = 1_780_000_000.0


def test_max_speed_run_emits_every_channel_each_second_with_increasing_timestamps() -> None:
    received: list[Reading] = []
    driver = SimulatedReactorDriver(
        received.append, reactor="SIM1", seed=4, speed=0, start_time=START, duration_s=120
    )
    driver.run(threading.Event())
    assert driver.finished
    by_channel: dict[str, list[float]] = defaultdict(list)
    for reading in received:
        by_channel[reading.channel].append(reading.timestamp)
    assert set(by_channel) == set(CHANNELS_BY_NAME) - NOT_SIMULATED  # a batch has no feed
    for name, stamps in by_channel.items():
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), name
        expected = 12 if name == "vessel_weight" else 120  # the balance reports every 10 s
        assert len(stamps) == expected, name
    assert by_channel["ph"][0] == START and by_channel["ph"][-1] == START + 119
    assert {r.reactor for r in received} == {"SIM1"}
    assert driver.stats.emitted == len(received)


def test_accelerated_run_stops_promptly_and_mid_batch() -> None:
    received: list[Reading] = []
    driver = SimulatedReactorDriver(received.append, seed=1, speed=60)  # a batch takes ~25 min
    thread = DriverThread(driver).start()
    while len(received) < 3 * len(set(CHANNELS_BY_NAME) - NOT_SIMULATED):
        time.sleep(0.01)
    # stop() returning True means the thread ended inside its timeout; the speed of that is
    # measured in benchmarks, here only the fact that it stopped mid-batch.
    assert thread.stop(timeout=2.0)
    assert not driver.finished
    count = len(received)
    time.sleep(0.1)
    assert len(received) == count  # nothing after the stop
    ph = [r.timestamp for r in received if r.channel == "ph"]
    assert ph == sorted(ph)
    assert ph[0] == pytest.approx(driver.default_start(), abs=120)  # anchored on the wall clock


def test_offline_samples_are_kept_and_handed_out_not_emitted() -> None:
    handed: list[object] = []
    received: list[Reading] = []
    driver = SimulatedReactorDriver(
        received.append,
        seed=2,
        speed=0,
        start_time=START,
        duration_s=600,
        on_sample=handed.append,
    )
    driver.run(threading.Event())
    assert driver.samples, "the SOP schedule samples within the first ten minutes"
    assert handed == driver.samples
    assert {r.channel for r in received} <= set(CHANNELS_BY_NAME)


def test_a_failing_sample_callback_is_counted_not_fatal() -> None:
    def refuse(_sample: object) -> None:
        raise RuntimeError("notebook down")

    driver = SimulatedReactorDriver(
        lambda r: None, seed=2, speed=0, start_time=START, duration_s=600, on_sample=refuse
    )
    driver.run(threading.Event())
    assert driver.finished
    assert driver.stats.errors == len(driver.samples) > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        SimulatedReactorDriver(print, speed=-2)
    with pytest.raises(ValueError, match="duration_s"):
        SimulatedReactorDriver(print, duration_s=0)


def test_channel_values_for_the_emulator() -> None:
    values = simulator_channel_values(seed=3)
    first = next(values)
    assert 19 < first["offgas_o2"] < 22 and 0 <= first["offgas_co2"] < 1


def test_default_start_never_stamps_a_reading_ahead_of_the_wall_clock() -> None:
    """Re-based to the station clock: an accelerated batch catches up with it at its end."""
    now = 1_800_000_000.0
    real_time = SimulatedReactorDriver(print, speed=1.0)
    assert real_time.default_start(now) == now  # no lead at all
    slower = SimulatedReactorDriver(print, speed=0.5)
    assert slower.default_start(now) == now
    duration = 32 * 3600  # SimulationConfig.max_hours
    for speed in (1.5, 60.0, 1000.0):
        start = SimulatedReactorDriver(print, speed=speed).default_start(now)
        # Simulated second t is emitted at wall time now + t / speed, stamped start + t.
        for t in (0.0, 3600.0, duration / 2, duration):
            assert start + t <= now + t / speed + 1e-6, (speed, t)
        assert start + duration == pytest.approx(now + duration / speed), speed
    flat_out = SimulatedReactorDriver(print, speed=0.0)
    assert flat_out.default_start(now) == now - duration
