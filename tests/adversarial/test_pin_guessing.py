"""Guessing a PIN, and acting above one's role. On SQLite and Postgres (``notebook_url``).

A 4-digit PIN falls to 10 000 guesses; before the lockout 300 wrong supervisor PINs in a row
were accepted for checking. Now the 5th wrong PIN in a row locks the operator, for a delay that
doubles with each further wrong PIN; while locked no PIN is even tried. The count lives in the
operator's audited row: a restart does not reset it, an UPDATE by SQL does not either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bptwin.database.relational import make_engine
from bptwin.eln.errors import NotebookPermissionError, OperatorLockedError
from bptwin.eln.operators import FIRST_LOCKOUT_S, MAX_LOCKOUT_S, MAX_PIN_FAILURES
from bptwin.eln.services import NotebookService

SUPERVISOR, DEPUTY, OPERATOR = "sue", "dan", "olga"
PIN = "4321"
BATCH = 52


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_notebook(notebook_url: str, clock: Clock) -> Iterator[Callable[[], NotebookService]]:
    """Opens the notebook as a fresh process would (its own engine), on the test's clock."""
    opened: list[NotebookService] = []

    def open_one() -> NotebookService:
        service = NotebookService(make_engine(notebook_url), clock=clock)
        opened.append(service)
        return service

    first = open_one()
    first.operators.create_operator("setup", SUPERVISOR, "supervisor", PIN)
    first.operators.create_operator(SUPERVISOR, DEPUTY, "supervisor", "8765")
    first.operators.create_operator(SUPERVISOR, OPERATOR, "operator", "1234")
    first.batches.create_batch(OPERATOR, BATCH, "B", reactor_id="R1")
    yield open_one
    for service in opened:
        service.engine.dispose()


def guess(service: NotebookService, name: str, pin: str) -> str:
    """What a login attempt came to: "ok", "wrong" or "locked"."""
    try:
        service.operators.authenticate(name, pin)
    except OperatorLockedError:
        return "locked"
    except NotebookPermissionError:
        return "wrong"
    return "ok"


def test_300_wrong_supervisor_pins_in_a_row_try_only_five(
    open_notebook: Callable[[], NotebookService],
) -> None:
    notebook = open_notebook()
    outcomes = [guess(notebook, SUPERVISOR, f"{n:04d}") for n in range(300) if f"{n:04d}" != PIN]
    assert outcomes[: MAX_PIN_FAILURES - 1] == ["wrong"] * (MAX_PIN_FAILURES - 1)
    assert outcomes[MAX_PIN_FAILURES - 1 :] == ["locked"] * (len(outcomes) - MAX_PIN_FAILURES + 1)
    # The right PIN does not get in while locked either: guessing learns nothing.
    assert guess(notebook, SUPERVISOR, PIN) == "locked"
    sue = notebook.operators.get_operator(SUPERVISOR)
    assert sue is not None and sue.failed_pins == MAX_PIN_FAILURES
    assert not notebook.operators.check_pin(SUPERVISOR, PIN)


def test_the_lockout_doubles_with_every_further_wrong_pin(
    open_notebook: Callable[[], NotebookService], clock: Clock
) -> None:
    notebook = open_notebook()
    for _ in range(MAX_PIN_FAILURES):
        guess(notebook, OPERATOR, "0000")
    delays = []
    for _ in range(9):
        locked = notebook.operators.get_operator(OPERATOR)
        assert locked is not None and locked.locked_until is not None
        delays.append((locked.locked_until - clock()).total_seconds())
        clock.advance(delays[-1] - 1)
        assert guess(notebook, OPERATOR, "1234") == "locked"  # a second early
        clock.advance(1)
        assert guess(notebook, OPERATOR, "0000") == "locked"  # wrong again: locked longer
    assert delays[:4] == [FIRST_LOCKOUT_S, 2 * FIRST_LOCKOUT_S, 4 * FIRST_LOCKOUT_S, 240.0]
    assert delays[-1] == MAX_LOCKOUT_S
    # 10 000 four-digit PINs at one per hour after this: over a year, not 39 minutes.


def test_a_lockout_survives_a_restart(
    open_notebook: Callable[[], NotebookService], clock: Clock
) -> None:
    for _ in range(MAX_PIN_FAILURES):
        guess(open_notebook(), SUPERVISOR, "0000")  # every guess from a "new process"
    assert guess(open_notebook(), SUPERVISOR, PIN) == "locked"
    clock.advance(FIRST_LOCKOUT_S)
    assert guess(open_notebook(), SUPERVISOR, PIN) == "ok"
    after = open_notebook().operators.get_operator(SUPERVISOR)
    assert after is not None and (after.failed_pins, after.locked_until) == (0, None)


def test_wrong_pins_and_the_lockout_are_audited(
    open_notebook: Callable[[], NotebookService],
) -> None:
    notebook = open_notebook()
    for _ in range(MAX_PIN_FAILURES):
        guess(notebook, OPERATOR, "0000")
    notebook.operators.unlock_operator(DEPUTY, OPERATOR)
    olga = notebook.operators.get_operator(OPERATOR)
    assert olga is not None
    history = notebook.audit.audit_trail(table_name="operator", record_id=olga.id or 0)
    counts = [(entry.actor, entry.after["failed_pins"]) for entry in reversed(history[:6])]
    assert counts == [("system", n) for n in range(1, MAX_PIN_FAILURES + 1)] + [(DEPUTY, 0)]
    assert history[1].after["locked_until"] is not None and history[0].after["locked_until"] is None
    assert notebook.audit.verify_trail().ok


def test_only_a_supervisor_unlocks(open_notebook: Callable[[], NotebookService]) -> None:
    notebook = open_notebook()
    for _ in range(MAX_PIN_FAILURES):
        guess(notebook, SUPERVISOR, "0000")
    with pytest.raises(NotebookPermissionError, match="needs a supervisor"):
        notebook.operators.unlock_operator(OPERATOR, SUPERVISOR)
    assert guess(notebook, SUPERVISOR, PIN) == "locked"
    notebook.operators.unlock_operator(DEPUTY, SUPERVISOR)
    assert guess(notebook, SUPERVISOR, PIN) == "ok"


def test_a_lockout_lifted_by_sql_stays_in_force(
    open_notebook: Callable[[], NotebookService], notebook_url: str
) -> None:
    notebook = open_notebook()
    for _ in range(MAX_PIN_FAILURES):
        guess(notebook, SUPERVISOR, "0000")
    engine = create_engine(notebook_url)
    with engine.begin() as sql:
        sql.execute(
            text("UPDATE operator SET failed_pins = 0, locked_until = NULL WHERE name = :n"),
            {"n": SUPERVISOR},
        )
    engine.dispose()
    assert guess(notebook, SUPERVISOR, PIN) == "wrong"  # refused: the row is not the audited one
    with pytest.raises(NotebookPermissionError, match="failed_pins, locked_until different"):
        notebook.operators.authenticate(SUPERVISOR, PIN)
    report = notebook.audit.verify_trail()
    assert [(m.table, m.columns) for m in report.mismatches] == [
        ("operator", ("failed_pins", "locked_until"))
    ]


def test_the_command_line_unlocks_with_a_supervisors_pin(
    open_notebook: Callable[[], NotebookService],
    notebook_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from bptwin.tui.commands.operator import handle_unlock
    from bptwin.tui.settings import Settings

    notebook = open_notebook()
    for _ in range(MAX_PIN_FAILURES):
        guess(notebook, OPERATOR, "0000")
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.notebook.url = notebook_url
    args = argparse.Namespace(name=OPERATOR, supervisor=SUPERVISOR)
    monkeypatch.setenv("BPTWIN_SUPERVISOR_PIN", "0000")
    assert handle_unlock(args, settings) == 1
    assert "not unlocked: unknown operator or wrong PIN" in capsys.readouterr().err
    monkeypatch.setenv("BPTWIN_SUPERVISOR_PIN", PIN)
    assert handle_unlock(args, settings) == 0
    assert f"operator {OPERATOR} unlocked by {SUPERVISOR}" in capsys.readouterr().out
    assert guess(notebook, OPERATOR, "1234") == "ok"
    assert os.environ["BPTWIN_SUPERVISOR_PIN"] == PIN


# ------------------------------------------------------------------ authorisation in the service


PINS = {OPERATOR: "1234", SUPERVISOR: PIN}


def _supervisor_only_calls(notebook: NotebookService) -> dict[str, Callable[[str], object]]:
    start = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
    change = notebook.process_changes.plan_process_change(
        OPERATOR,
        BATCH,
        parameter="feed rate",
        old_value="1",
        new_value="2",
        planned_at=start,
        reason="foam",
    )
    deviation = notebook.deviations.log_deviation(
        OPERATOR, BATCH, level=2, category="process", title="pH probe drift"
    )
    return {
        # Signed actions: the actor signs with their own PIN (right, so only the role refuses).
        "approve a process change": lambda actor: notebook.process_changes.approve_process_change(
            actor, change.id or 0, pin=PINS[actor]
        ),
        "review a level-2 deviation": lambda actor: notebook.deviations.review_deviation(
            actor, deviation.id or 0, corrective_action="recalibrated", pin=PINS[actor]
        ),
        "accept a failed calibration": lambda actor: notebook.calibrations.record_calibration(
            actor,
            channel="ph",
            kind="ph",
            measured={},
            results={},
            passed=False,
            override_reason="spare probe unavailable",
            override_pin=PINS[actor],
        ),
        "start a batch despite missing calibrations": lambda actor: notebook.batches.start_batch(
            actor, BATCH, override_reason="no calibrations today"
        ),
        "register an operator": lambda actor: notebook.operators.create_operator(
            actor, "newbie", "operator", "5555"
        ),
        "deactivate an operator": lambda actor: notebook.operators.set_operator_active(
            actor, DEPUTY, False
        ),
        "unlock an operator": lambda actor: notebook.operators.unlock_operator(actor, DEPUTY),
        "change another's PIN": lambda actor: notebook.operators.change_pin(actor, DEPUTY, "1111"),
    }


def test_every_supervisor_action_is_refused_to_an_operator_by_the_service(
    open_notebook: Callable[[], NotebookService],
) -> None:
    """No screen involved: the service itself refuses, whatever a screen forgot to check."""
    notebook = open_notebook()
    calls = _supervisor_only_calls(notebook)
    entries_before = len(notebook.audit.audit_trail(limit=10_000))
    refused = {}
    for what, call in calls.items():
        with pytest.raises(NotebookPermissionError) as caught:
            call(OPERATOR)
        refused[what] = str(caught.value)
    assert len(notebook.audit.audit_trail(limit=10_000)) == entries_before  # nothing written
    assert all("supervisor" in reason for reason in refused.values()), refused
    for what, call in calls.items():
        if what != "deactivate an operator":  # would deactivate the deputy before the unlock
            call(SUPERVISOR)  # the same calls by a supervisor go through
