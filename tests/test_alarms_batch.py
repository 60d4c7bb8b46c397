"""Alarm transitions belong to the batch that ran on their reactor at their time (SQLite and
Postgres), and quitting the station raises no alarm into the record."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from bptwin.database.bus import LocalBus
from bptwin.database.reading import Reading
from bptwin.eln.services import NotebookService
from bptwin.tui.runtime.shadow_worker import ShadowWorker
from bptwin.twin.alarm_rules import rules_from_config
from bptwin.twin.alarms import AlarmEngine
from bptwin.twin.live import LatestValues
from bptwin.twin.shadow import Shadow
from tests.fixtures.notebook import SettableClock, staffed_notebook

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def notebook(engine: Engine, clock: SettableClock) -> NotebookService:
    return staffed_notebook(engine, None, clock=clock)


def run_batch(
    notebook: NotebookService, clock: SettableClock, number: int, reactor: str, start_h: float
) -> None:
    """Batch ``number`` on ``reactor``, inoculated ``start_h`` after T0 (started by override)."""
    notebook.batches.create_batch("sam", number, "B", reactor_id=reactor)
    clock.now = T0 + timedelta(hours=start_h)
    notebook.batches.start_batch("sam", number, override_reason="alarm attribution test")


def raise_alarm(notebook: NotebookService, reactor: str, hours: float, rule: str) -> int | None:
    event = notebook.alarms.record_alarm_event(
        None,
        reactor=reactor,
        rule=rule,
        priority="warning",
        state="active_unacknowledged",
        channel="do",
        value=12.0,
        occurred_at=T0 + timedelta(hours=hours),
    )
    return event.batch_id


def test_each_transition_is_stored_with_the_batch_running_on_its_reactor(
    notebook: NotebookService, clock: SettableClock
) -> None:
    run_batch(notebook, clock, 7, "R1", start_h=1.0)
    run_batch(notebook, clock, 8, "R2", start_h=1.5)
    clock.now = T0 + timedelta(hours=20)
    notebook.batches.end_batch("sam", 7, ended_at=T0 + timedelta(hours=19))
    seven, eight = notebook.batches.get_batch(7).id, notebook.batches.get_batch(8).id

    assert raise_alarm(notebook, "R1", 0.5, "before_inoculation") is None
    assert raise_alarm(notebook, "R1", 3.0, "during_7") == seven
    assert raise_alarm(notebook, "R2", 3.0, "during_8") == eight
    assert raise_alarm(notebook, "R1", 19.5, "after_the_end") is None  # the batch had ended
    assert raise_alarm(notebook, "R2", 30.0, "still_running_8") == eight
    assert raise_alarm(notebook, "R3", 3.0, "no_batch_there") is None

    assert [e.rule for e in notebook.alarms.list_alarm_events(batch_number=7)] == ["during_7"]
    assert {e.rule for e in notebook.alarms.list_alarm_events(batch_number=8)} == {
        "during_8",
        "still_running_8",
    }


def test_an_explicit_batch_number_still_wins(
    notebook: NotebookService, clock: SettableClock
) -> None:
    run_batch(notebook, clock, 7, "R1", start_h=1.0)
    run_batch(notebook, clock, 9, "R9", start_h=1.0)
    event = notebook.alarms.record_alarm_event(
        None,
        reactor="R1",
        rule="given",
        priority="warning",
        state="active_unacknowledged",
        occurred_at=T0 + timedelta(hours=2),
        batch_number=9,
    )
    assert event.batch_id == notebook.batches.get_batch(9).id


class NullRecorder:
    """A recorder that keeps nothing (the worker's readings are not under test)."""

    def add(self, reading: Reading) -> None:
        pass


class EventNotebook:
    """Records the alarm events the worker would store."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def record_alarm_event(self, actor: str | None, **fields: object) -> None:
        self.events.append({"actor": actor, **fields})


STALE_AFTER_S = 2.0


def _worker(notebook: EventNotebook) -> ShadowWorker:
    rules = rules_from_config(
        {"sensor_stale": {"type": "stale", "channels": ["do"], "max_age_s": STALE_AFTER_S}},
        include_defaults=False,
    )
    shadow = Shadow(["R1"], alarm_rules=rules)
    assert isinstance(shadow.alarms, AlarmEngine)
    return ShadowWorker(
        shadow,
        latest=LatestValues(),
        recorder=NullRecorder(),  # type: ignore[arg-type]
        bus=LocalBus(),
        prefix="bptwin",
        notebook=notebook,  # type: ignore[arg-type]
    )


def test_quitting_the_station_raises_no_stale_alarm_into_the_record() -> None:
    """Two workers see the same readings, then silence; only the one told that acquisition
    ended on purpose (the station quitting) stays quiet."""
    quitting_book, silent_book = EventNotebook(), EventNotebook()
    quitting, silent = _worker(quitting_book).start(), _worker(silent_book).start()
    try:
        now = time.time()
        for worker in (quitting, silent):
            for second in range(5):
                worker.submit(Reading(now - 5 + second, "R1", "do", 40.0, "%sat"))
        quitting.end_acquisition()
        deadline = time.monotonic() + 60.0
        while not silent_book.events and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [e["rule"] for e in silent_book.events] == ["sensor_stale/do"]
        time.sleep(1.5)  # a tick more, for the quitting worker
    finally:
        quitting.stop()
        silent.stop()
    assert quitting.acquisition_ended
    assert quitting_book.events == []
