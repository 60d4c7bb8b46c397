"""Store-and-forward for the notebook: writes queue while Postgres is away, replay once, in order.

Outage tests run on a Postgres cluster of this module's own (stopped and started here); the
write-key logic is also checked on SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from bptwin.database.migrate import upgrade
from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.services import NotebookService
from bptwin.eln.write_queue import NotebookWriteQueued, SpooledNotebook, decode_call, encode_call
from tests.fixtures.private_postgres import PostgresCluster, private_postgres  # noqa: F401
from tests.test_bus import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def prepared(url: str) -> NotebookService:
    service = NotebookService.from_url(url)
    service.operators.create_operator("setup", "olga", "supervisor", "4711")
    service.batches.create_batch("olga", 7, "A")
    return service


def event_fields(index: int) -> dict:
    return {
        "reactor": "R1",
        "rule": "do_low",
        "priority": "high",
        "state": "active_unack" if index % 2 == 0 else "cleared",
        "channel": "do",
        "value": 15.0 + index,
        "occurred_at": T0 + timedelta(seconds=index),
    }


def count_rows(service: NotebookService, table: str) -> int:
    with service.engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def spooled(tmp_path: Path) -> Iterator[list[SpooledNotebook]]:
    made: list[SpooledNotebook] = []
    yield made
    for notebook in made:
        notebook.close()


def test_live_writes_pass_through_and_a_replayed_known_key_is_skipped(
    tmp_path: Path, spooled: list[SpooledNotebook]
) -> None:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = SpooledNotebook(prepared(url), tmp_path / "notebook-spool.sqlite")
    spooled.append(notebook)
    note = notebook.add_note("olga", 7, "stirrer noisy")
    assert note.text == "stirrer noisy"
    assert count_rows(notebook.service, "notebook_write_key") == 1
    with notebook.service.engine.connect() as connection:
        key = connection.execute(text("SELECT key FROM notebook_write_key")).scalar_one()
    # The database took the note but the answer was lost: the same call is queued again.
    arguments = {"actor": "olga", "number": 7, "text": "stirrer noisy"}
    notebook.spool.push(encode_call("add_note", key, T0, arguments))
    assert notebook.flush(timeout=30)
    assert len(notebook.list_notes(7)) == 1  # not written twice
    assert notebook.status().rejected == 0


def test_one_process_owns_a_queue_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    service = NotebookService.from_url(url)
    first = SpooledNotebook.open_exclusive(service, tmp_path / "app.sqlite")
    assert first is not None
    assert SpooledNotebook.open_exclusive(service, tmp_path / "app.sqlite") is None
    first.close()
    again = SpooledNotebook.open_exclusive(service, tmp_path / "app.sqlite")
    assert again is not None
    again.close()


def test_postgres_outage_queues_writes_and_replays_them_once_in_order(
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
    spooled: list[SpooledNotebook],
) -> None:
    url = private_postgres.create_database("notebook_outage")
    upgrade(url)
    notebook = SpooledNotebook(
        prepared(url), tmp_path / "spool.sqlite", retry_initial=0.05, retry_max=0.5
    )
    spooled.append(notebook)
    for index in range(3):
        notebook.record_alarm_event(None, **event_fields(index))
    assert notebook.status().up

    private_postgres.stop()
    try:
        for index in range(3, 13):
            with pytest.raises(NotebookWriteQueued, match="saved locally"):
                notebook.record_alarm_event(None, **event_fields(index))
        with pytest.raises(NotebookWriteQueued):
            notebook.add_note("olga", 7, "written while the database was away")
        # Bad input is refused at once, database or not: nothing invalid is queued.
        with pytest.raises(NotebookValidationError, match="note"):
            notebook.add_note("olga", 7, "   ")
        status = notebook.status()
        assert not status.up
        assert status.waiting == 11
        assert status.last_error
    finally:
        private_postgres.start()

    assert notebook.flush(timeout=60)
    assert wait_for(lambda: notebook.status().up)
    events = sorted(notebook.list_alarm_events(), key=lambda event: event.id)  # write order
    assert [event.value for event in events] == [15.0 + i for i in range(13)]
    assert [event.occurred_at for event in events] == [T0 + timedelta(seconds=i) for i in range(13)]
    notes = notebook.list_notes(7)
    assert [n.text for n in notes] == ["written while the database was away"]
    assert count_rows(notebook.service, "alarm_event") == 13  # no duplicates
    assert notebook.status().rejected == 0
    assert notebook.service.audit.verify_audit_chain() is None


def test_a_queued_write_the_database_refuses_is_kept_aside_with_its_reason(
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
    spooled: list[SpooledNotebook],
) -> None:
    url = private_postgres.create_database("notebook_refused")
    upgrade(url)
    notebook = SpooledNotebook(prepared(url), tmp_path / "spool.sqlite", retry_initial=0.05)
    spooled.append(notebook)
    private_postgres.stop()
    try:
        with pytest.raises(NotebookWriteQueued):
            notebook.add_note("olga", 99, "batch 99 does not exist")  # needs the database
        with pytest.raises(NotebookWriteQueued):
            notebook.add_note("olga", 7, "this one is fine")
    finally:
        private_postgres.start()
    assert notebook.flush(timeout=60)
    assert [n.text for n in notebook.list_notes(7)] == ["this one is fine"]
    assert notebook.status().rejected == 1


def test_a_signed_calibration_override_is_never_queued_and_its_pin_never_on_disk(
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
    spooled: list[SpooledNotebook],
) -> None:
    """A signature is given at the moment of signing: with the database away it is refused,
    not queued (the PIN would sit in the queue file and be "signed" later)."""
    url = private_postgres.create_database("notebook_signed")
    upgrade(url)
    spool = tmp_path / "spool.sqlite"
    notebook = SpooledNotebook(prepared(url), spool, retry_initial=0.05)
    spooled.append(notebook)
    failed = dict(channel="do", kind="zero_span", measured={}, results={}, passed=False)
    private_postgres.stop()
    try:
        with pytest.raises(NotebookError, match="never queued") as refused:
            notebook.record_calibration(
                "olga", **failed, override_reason="slow but linear", override_pin="4711"
            )
        assert not isinstance(refused.value, NotebookWriteQueued)
        assert notebook.status().waiting == 0
        with pytest.raises(NotebookWriteQueued):  # an unsigned result waits as before
            notebook.record_calibration("olga", **failed)
    finally:
        private_postgres.start()
    assert notebook.flush(timeout=60)
    assert b"4711" not in spool.read_bytes()
    record = notebook.record_calibration(
        "olga", **failed, override_reason="slow but linear", override_pin="4711"
    )
    [signature] = notebook.list_signatures(table_name="calibration_record")
    assert signature.record_id == record.id and signature.meaning.value == "approved"


QUEUER = """
import sys, time
from bptwin.database.relational import make_engine
from bptwin.eln.services import NotebookService
from bptwin.eln.write_queue import NotebookWriteQueued, SpooledNotebook

url, spool, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
service = NotebookService(make_engine(url, check=False))
notebook = SpooledNotebook(service, spool)
for i in range(count):
    try:
        notebook.add_note("olga", 7, f"note {i}")
    except NotebookWriteQueued:
        pass
    print(i, flush=True)
time.sleep(600)
"""


def test_queued_writes_survive_sigkill_and_are_replayed_by_the_next_process(
    private_postgres: PostgresCluster,  # noqa: F811
    tmp_path: Path,
    spooled: list[SpooledNotebook],
) -> None:
    url = private_postgres.create_database("notebook_kill")
    upgrade(url)
    prepared(url).engine.dispose()
    spool = tmp_path / "spool.sqlite"
    private_postgres.stop()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", QUEUER, url, str(spool), "40"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        last = -1
        for line in process.stdout:
            last = int(line)
            if last == 39:
                break
        process.kill()  # SIGKILL: no clean shutdown of anything
        process.wait(timeout=10)
    finally:
        private_postgres.start()
    assert last == 39
    notebook = SpooledNotebook(NotebookService.from_url(url), spool, retry_initial=0.05)
    spooled.append(notebook)
    assert notebook.flush(timeout=60)
    assert [n.text for n in notebook.list_notes(7)] == [f"note {i}" for i in range(40)]


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)
plain = st.none() | st.booleans() | st.integers() | st.text() | moments
arguments = st.dictionaries(
    st.text(min_size=1, max_size=20),
    plain | st.lists(plain, max_size=4) | st.dictionaries(st.text(max_size=10), plain, max_size=4),
    max_size=8,
)


@given(made_at=moments, arguments=arguments)
def test_queued_calls_round_trip_through_the_spool_encoding(
    made_at: datetime, arguments: dict
) -> None:
    method, key, when, back = decode_call(encode_call("add_note", "k1", made_at, arguments))
    assert (method, key, when) == ("add_note", "k1", made_at)
    assert back == arguments
