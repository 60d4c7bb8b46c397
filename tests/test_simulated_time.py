"""Simulated time never pollutes a real record: one clock per reactor for a simulated or replayed
run (readings, alarms, acknowledgements, notebook entries, dashboard ages), and such a run
acquires reactors of its own (sim-R1), said on screen."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from bptwin.database.bus import LocalBus
from bptwin.database.reading import Reading
from bptwin.tui.runtime.alarm_actions import StationAlarms
from bptwin.tui.runtime.clock import StationClock
from bptwin.tui.runtime.shadow_worker import ShadowWorker
from bptwin.tui.settings import Settings
from bptwin.twin.alarm_rules import rules_from_config
from bptwin.twin.live import LatestValues
from bptwin.twin.shadow import Shadow
from tests.test_alarms_batch import EventNotebook, NullRecorder

BACKDATED_S = 8.5 * 3600  # how far `bptwin run --speed 120` re-based its batch


def test_a_real_acquisition_lives_on_the_wall_clock() -> None:
    clock = StationClock()
    clock.observe("R1", time.time() - BACKDATED_S)
    assert abs(clock.now("R1") - time.time()) < 5


def test_a_simulated_run_has_one_clock_per_reactor_following_its_stream() -> None:
    clock = StationClock(follow_stream=True)
    stamp = time.time() - BACKDATED_S
    clock.observe("R1", stamp)
    clock.observe("R1", stamp - 60)  # an older reading never moves the clock back
    now = clock.now("R1")
    assert stamp <= now < stamp + 5  # the age of its newest reading is seconds, not 8.5 h
    assert clock.now_utc("R1").timestamp() == pytest.approx(now, abs=5)
    assert abs(clock.now("R2") - time.time()) < 5  # no stream yet: the wall clock
    assert clock.now() == pytest.approx(now, abs=5)


def test_an_acknowledgement_is_stamped_on_the_run_s_clock_not_the_wall_clock() -> None:
    """Raised on the simulated time line 8.5 h behind the wall; acknowledged at once: the
    record says seconds after the raise, not hours."""
    rules = rules_from_config(
        {"do_low": {"type": "limit", "source": "do", "lo": {"limit": 20.0, "on_delay_s": 0}}},
        include_defaults=False,
    )
    clock = StationClock(follow_stream=True)
    notebook = EventNotebook()
    worker = ShadowWorker(
        Shadow(["R1"], alarm_rules=rules),
        latest=LatestValues(),
        recorder=NullRecorder(),  # type: ignore[arg-type]
        bus=LocalBus(),
        prefix="bptwin",
        notebook=notebook,  # type: ignore[arg-type]
        clock=clock,
    ).start()
    try:
        stamp = time.time() - BACKDATED_S
        for second in range(3):
            worker.submit(Reading(stamp + second, "R1", "do", 12.0, "%sat"))
        deadline = time.monotonic() + 60
        while not notebook.events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert notebook.events, "the low DO was never raised"
        raised_at = notebook.events[0]["occurred_at"]
        alarm = StationAlarms(worker)
        [view] = alarm.active_alarms()
        acknowledged = alarm.acknowledge(view.alarm_id, "ana")
    finally:
        worker.stop()
    assert acknowledged
    raised, acked = _seconds(raised_at), _seconds(acknowledged[-1].occurred_at)
    assert 0 <= acked - raised < 60  # seconds after the raise, on the same time line
    assert time.time() - acked > BACKDATED_S - 60  # not the wall clock


def _seconds(moment: object) -> float:
    if isinstance(moment, datetime):
        return moment.timestamp()
    assert isinstance(moment, float)
    return moment


def test_a_simulated_run_acquires_reactors_of_its_own() -> None:
    simulated = Settings()
    simulated.station.reactors = ["R1", "R2"]
    assert simulated.simulated_run
    apart = simulated.simulation_kept_apart()
    assert apart.station.reactors == ["sim-R1", "sim-R2"]
    assert simulated.station.reactors == ["R1", "R2"]  # the given settings are left alone
    assert apart.simulation_kept_apart().station.reactors == ["sim-R1", "sim-R2"]

    replay = Settings()
    replay.acquisition.source = "replay"
    assert replay.simulation_kept_apart().station.reactors == ["sim-R1"]

    real = Settings()
    real.acquisition.source = "mqtt"
    assert real.simulation_kept_apart().station.reactors == ["R1"]

    same = Settings()
    same.acquisition.simulated_reactor_prefix = ""
    assert same.simulation_kept_apart().station.reactors == ["R1"]


def test_an_accelerated_station_writes_on_its_own_reactor_and_clock(tmp_path: Path) -> None:
    """The default (simulated) source at speed 120, kept apart as `bptwin run` / `serve` do:
    it acquires sim-R1, ages on its clock are seconds, its notebook writes on that clock, and
    the status strip says SIMULATED."""
    from bptwin.tui.runtime.station import Station

    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.bus.backend = "local"
    settings.acquisition.speed = 120.0
    apart = settings.simulation_kept_apart()
    station = Station(apart)
    station.start()
    try:
        deadline = time.monotonic() + 120
        while station.snapshot().readings_total < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        snapshot = station.snapshot()
        assert {reading.reactor for reading in snapshot.for_reactor("sim-R1")} == {"sim-R1"}
        assert any("SIMULATED" in problem for problem in snapshot.problems)
        assert station.simulated and station.clock.follow_stream
        newest = max(reading.timestamp for reading in snapshot.for_reactor("sim-R1"))
        run_now = station.clock.now("sim-R1")
        assert 0 <= run_now - newest < 30  # ages on the dashboard: seconds
        assert station.notebook is not None
        notebook_now = station.notebook.service.clock().timestamp()
        assert abs(notebook_now - run_now) < 30  # the notebook writes on the run's clock
    finally:
        station.stop()


def test_a_deviation_prefilled_from_a_simulated_alarm_is_not_in_the_future(
    notebook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose stamps lie ahead of the wall clock (a replay re-based forward, a fast run):
    on the wall clock its alarm's time is "in the future"; on the run's clock it is not."""
    from datetime import timedelta, timezone

    from bptwin.eln.errors import NotebookValidationError
    from bptwin.eln.models import OperatorRole
    from bptwin.eln.services import NotebookService

    monkeypatch.setattr("bptwin.eln.pins.SCRYPT_N", 2**10)
    notebook = NotebookService.from_url(notebook_url)
    try:
        notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
        notebook.batches.create_batch("sam", 3, "A", reactor_id="sim-R1")
        notebook.batches.start_batch("sam", 3, override_reason="simulated run")
        ahead = time.time() + 2 * 3600
        alarm_at = datetime.fromtimestamp(ahead - 600, tz=timezone.utc)
        with pytest.raises(NotebookValidationError, match="future"):
            notebook.deviations.log_deviation(
                "sam", 3, level=1, category="process", title="DO low", started_at=alarm_at
            )
        clock = StationClock(follow_stream=True)
        clock.observe("sim-R1", ahead)
        notebook.clock = lambda: clock.now_utc("sim-R1")
        logged = notebook.deviations.log_deviation(
            "sam", 3, level=1, category="process", title="DO low", started_at=alarm_at
        )
        assert logged.started_at == alarm_at
        assert notebook.clock() - alarm_at < timedelta(minutes=15)
    finally:
        notebook.engine.dispose()
