"""Alarm transitions stored in the real notebook (SQLite, Postgres) and taken up after a restart."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from bptwin.database.reading import Reading
from bptwin.eln.services import NotebookService
from bptwin.twin.alarm_rules import DEFAULT_RULES
from bptwin.twin.alarms import AlarmEngine, AlarmState, transitions_from_events
from tests.fixtures.notebook import staffed_notebook

T0 = 1_790_000_000.0


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def notebook(engine: Engine) -> NotebookService:
    service = staffed_notebook(engine)
    return service


def test_stored_transitions_restore_the_alarms_after_a_restart(notebook: NotebookService):
    alarms = AlarmEngine(DEFAULT_RULES)
    transitions = []
    for second in range(400):
        transitions += alarms.feed(Reading(T0 + second, "R1", "do", 14.0, "%sat"))
    transitions += alarms.acknowledge("R1/do_low/lo_lo", "ana", at=T0 + 401)
    transitions += alarms.shelve("R1/do_low/lo", "ana", "probe check", T0 + 3600, at=T0 + 402)
    transitions += alarms.feed_sample("R1", T0 + 403, measured=10.0, predicted=15.0)
    for transition in transitions:
        notebook.alarms.record_alarm_event(**transition.event_fields())

    rows = notebook.alarms.list_alarm_events(reactor="R1")
    assert len(rows) == len(transitions) == 5
    assert {row.actor for row in rows} == {None, "ana"}

    restarted = AlarmEngine(DEFAULT_RULES)
    assert restarted.restore(transitions_from_events(rows)) == 3
    assert [(v.alarm_id, v.state) for v in restarted.active_alarms()] == [
        (v.alarm_id, v.state) for v in alarms.active_alarms()
    ]
    # the shelve's expiry is not in the table: the alarm comes back at the next evaluate
    back = restarted.evaluate(T0 + 404)
    assert [(t.alarm_id, t.to_state) for t in back] == [("R1/do_low/lo", AlarmState.ACTIVE_UNACK)]
    # and the acknowledged critical one returns to normal when DO recovers
    recovered = restarted.feed(Reading(T0 + 405, "R1", "do", 40.0, "%sat"))
    assert ("R1/do_low/lo_lo", AlarmState.NORMAL) in [(t.alarm_id, t.to_state) for t in recovered]
