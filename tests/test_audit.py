"""The audit trail on SQLite and Postgres: same transaction, before/after, actor, hash chain."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import pairwise

import pytest
from sqlalchemy import exc, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bptwin.database.relational import make_engine, session_scope
from bptwin.eln.audit import GENESIS_HASH, entries_for, entry_hash, find_chain_break, verify_chain
from bptwin.eln.errors import AuditActorMissingError, AuditImmutableError
from bptwin.eln.models import AuditEntry, AuditHead, Batch, CampaignPhase, Note, Operator


@pytest.fixture
def engine(notebook_url: str) -> Iterator[Engine]:
    engine = make_engine(notebook_url)
    with session_scope(engine, "setup") as session:
        session.add(Operator(name="alice", display_name="Alice", pin_hash="x"))
    yield engine
    engine.dispose()


def all_entries(engine: Engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def add_batch(engine: Engine, number: int, actor: str = "alice") -> Batch:
    with session_scope(engine, actor) as session:
        batch = Batch(number=number, phase=CampaignPhase.B, operator="alice")
        session.add(batch)
    return batch


def test_insert_writes_one_entry_with_actor_and_after_image(engine: Engine) -> None:
    batch = add_batch(engine, 7)
    entries = all_entries(engine)
    assert [(e.table_name, e.action.value, e.actor) for e in entries] == [
        ("operator", "insert", "setup"),
        ("batch", "insert", "alice"),
    ]
    last = entries[-1]
    assert last.record_id == str(batch.id)
    assert last.before is None
    assert last.after is not None and last.after["number"] == 7
    assert last.after["phase"] == "B"
    assert last.at.tzinfo is not None


def test_rolled_back_transaction_leaves_neither_row_nor_entry(engine: Engine) -> None:
    before = len(all_entries(engine))
    with pytest.raises(RuntimeError), session_scope(engine, "alice") as session:
        session.add(Batch(number=8, phase=CampaignPhase.A, operator="alice"))
        session.flush()  # the row and its audit entry are written, not yet committed
        assert (
            session.scalar(select(AuditEntry).order_by(AuditEntry.id.desc())).table_name == "batch"
        )
        raise RuntimeError("operator cancelled")
    with Session(engine) as session:
        assert session.scalars(select(Batch)).all() == []
    assert len(all_entries(engine)) == before
    with Session(engine) as session:
        assert verify_chain(session) is None


def test_failed_write_rolls_back_its_entry_too(engine: Engine) -> None:
    before = len(all_entries(engine))
    with pytest.raises(exc.IntegrityError), session_scope(engine, "alice") as session:
        session.add(Batch(number=9, phase=CampaignPhase.A, operator="nobody"))  # FK fails
    assert len(all_entries(engine)) == before


def test_update_records_before_and_after(engine: Engine) -> None:
    batch = add_batch(engine, 10)
    with session_scope(engine, "alice") as session:
        stored = session.get(Batch, batch.id)
        stored.notes = "foam at 14 h"
        stored.vessel = "V2"
    with session_scope(engine, "alice") as session:
        history = entries_for(session, "batch", batch.id)
    assert [e.action.value for e in history] == ["insert", "update"]
    change = history[-1]
    assert change.before["notes"] == "" and change.after["notes"] == "foam at 14 h"
    assert change.before["vessel"] == "" and change.after["vessel"] == "V2"


def test_update_without_real_change_writes_nothing(engine: Engine) -> None:
    batch = add_batch(engine, 11)
    count = len(all_entries(engine))
    with session_scope(engine, "alice") as session:
        stored = session.get(Batch, batch.id)
        stored.notes = stored.notes  # same value
    assert len(all_entries(engine)) == count


def test_delete_records_the_before_image(engine: Engine) -> None:
    batch = add_batch(engine, 12)
    with session_scope(engine, "alice") as session:
        session.add(Note(batch_id=batch.id, author="alice", text="typo"))
    with session_scope(engine, "alice") as session:
        session.delete(session.scalars(select(Note)).one())
    last = all_entries(engine)[-1]
    assert (last.table_name, last.action.value) == ("note", "delete")
    assert last.before["text"] == "typo" and last.after is None


def test_pin_hash_is_redacted_in_the_trail(engine: Engine) -> None:
    first = all_entries(engine)[0]
    assert first.after["pin_hash"].startswith("redacted:")


def test_notebook_writes_without_actor_are_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Batch(number=13, phase=CampaignPhase.A, operator="alice"))
        with pytest.raises(AuditActorMissingError, match="without an actor"):
            session.commit()
    with Session(engine) as session:
        assert session.scalars(select(Batch)).all() == []


def test_audit_entries_cannot_be_changed_or_deleted_through_the_orm(engine: Engine) -> None:
    with session_scope(engine, "alice") as session:
        entry = session.get(AuditEntry, 1)
    with pytest.raises(AuditImmutableError), session_scope(engine, "mallory") as session:
        stored = session.get(AuditEntry, 1)
        stored.actor = "bob"
    with pytest.raises(AuditImmutableError), session_scope(engine, "mallory") as session:
        session.delete(session.get(AuditEntry, 1))
    with pytest.raises(AuditImmutableError), session_scope(engine, "mallory") as session:
        session.add(AuditHead(id=2, last_id=0, last_hash="f" * 64))
    with pytest.raises(AuditImmutableError), session_scope(engine, "mallory") as session:
        session.execute(update(AuditEntry).values(actor="bob"))
    with pytest.raises(AuditImmutableError), session_scope(engine, "mallory") as session:
        session.execute(update(Batch).values(notes="bulk"))  # would skip the trail
    assert all_entries(engine)[0].actor == entry.actor == "setup"


def test_database_itself_refuses_raw_changes_to_entries(engine: Engine) -> None:
    for statement in ("UPDATE audit_entry SET actor = 'bob'", "DELETE FROM audit_entry"):
        with pytest.raises(exc.DatabaseError, match="append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    assert all_entries(engine)[0].actor == "setup"


def test_chain_links_every_entry_to_the_previous_one(engine: Engine) -> None:
    for number in range(20, 25):
        add_batch(engine, number)
    entries = all_entries(engine)
    assert [e.id for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    for previous, current in pairwise(entries):
        assert current.prev_hash == previous.hash
    with Session(engine) as session:
        assert verify_chain(session) is None
        head = session.get(AuditHead, 1)
    assert (head.last_id, head.last_hash) == (entries[-1].id, entries[-1].hash)


def _unprotect(engine: Engine) -> None:
    """What a tamperer with owner rights would do first: switch off the row triggers."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER audit_entry_no_update"))
            connection.execute(text("DROP TRIGGER audit_entry_no_delete"))


def test_tampered_content_is_found(engine: Engine) -> None:
    for number in range(30, 34):
        add_batch(engine, number)
    _unprotect(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_entry SET actor = 'bob' WHERE id = 3"))
    with Session(engine) as session:
        assert verify_chain(session) == 3
        assert "content" in find_chain_break(session).reason


def test_rehashed_forgery_breaks_the_next_link(engine: Engine) -> None:
    for number in range(35, 39):
        add_batch(engine, number)
    _unprotect(engine)
    with Session(engine) as session:
        entry = session.get(AuditEntry, 2)
        forged = {
            "id": 2,
            "at": entry.at.isoformat(),
            "actor": "bob",
            "action": entry.action.value,
            "table_name": entry.table_name,
            "record_id": entry.record_id,
            "before": entry.before,
            "after": entry.after,
        }
        new_hash = entry_hash(entry.prev_hash, forged)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_entry SET actor = 'bob', hash = :h WHERE id = 2"), {"h": new_hash}
        )
    with Session(engine) as session:
        assert verify_chain(session) == 3  # entry 2 now hashes fine, but 3 no longer links


def test_removed_entries_are_found(engine: Engine) -> None:
    for number in range(40, 44):
        add_batch(engine, number)
    _unprotect(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE id = 4"))
    with Session(engine) as session:
        assert verify_chain(session) == 4
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entry WHERE id >= 4"))
    with Session(engine) as session:
        assert verify_chain(session) == 4  # the head still knows the tail existed


def test_concurrent_writers_keep_one_linear_chain(engine: Engine) -> None:
    writers, per_writer = 4, 12
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(offset: int) -> None:
        try:
            start.wait()
            for index in range(per_writer):
                with session_scope(engine, "alice") as session:
                    session.add(
                        Batch(number=1000 + offset * 100 + index, phase="C", operator="alice")
                    )
                    session.flush()
                    session.add(
                        Note(
                            batch_id=session.scalars(
                                select(Batch.id).where(Batch.number == 1000 + offset * 100 + index)
                            ).one(),
                            author="alice",
                            text="x",
                        )
                    )
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(offset,)) for offset in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = all_entries(engine)
    assert len(entries) == 1 + 2 * writers * per_writer
    assert [e.id for e in entries] == list(range(1, len(entries) + 1))
    assert len({e.prev_hash for e in entries}) == len(entries)  # no fork: every parent used once
    with Session(engine) as session:
        assert verify_chain(session) is None


def test_timestamps_come_back_timezone_aware_utc(engine: Engine) -> None:
    batch = add_batch(engine, 50)
    with Session(engine) as session:
        stored = session.get(Batch, batch.id)
    assert stored.created_at.utcoffset().total_seconds() == 0
    assert stored.created_at == batch.created_at


@pytest.mark.postgres
def test_app_role_with_documented_grants_works_and_cannot_rewrite_history(
    empty_postgres_url: str,
) -> None:
    """docs/data-model.md's grants: a role without superuser rights runs the notebook."""
    import secrets

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from bptwin.database.migrate import upgrade
    from bptwin.eln.services import NotebookService

    upgrade(empty_postgres_url)
    role = f"bptwin_app_{secrets.token_hex(3)}"
    owner = create_engine(empty_postgres_url, isolation_level="AUTOCOMMIT")
    database = make_url(empty_postgres_url).database
    with owner.connect() as connection:
        for statement in (
            f"CREATE ROLE {role} LOGIN NOSUPERUSER",
            f'GRANT CONNECT ON DATABASE "{database}" TO {role}',
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_entry FROM {role}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
        ):
            connection.execute(text(statement))
    app_url = make_url(empty_postgres_url).set(username=role, password=None)
    app_engine = make_engine(app_url)
    try:
        service = NotebookService(app_engine)
        service.operators.create_operator("setup", "sam", "supervisor", "4321")
        service.batches.create_batch("sam", 1, "A")
        assert service.audit.verify_audit_chain() is None
        for statement in (
            "ALTER TABLE audit_entry DISABLE TRIGGER USER",
            "TRUNCATE audit_entry",
            "UPDATE audit_entry SET actor = 'bob'",
        ):
            with (
                pytest.raises(exc.ProgrammingError, match=r"must be owner|permission denied"),
                app_engine.begin() as connection,
            ):
                connection.execute(text(statement))
    finally:
        app_engine.dispose()
        with owner.connect() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
        owner.dispose()
        # The role outlives this database; drop it once the fixture has dropped the database.
        _roles_to_drop.append(role)


_roles_to_drop: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _drop_test_roles() -> Iterator[None]:
    yield
    if not _roles_to_drop:
        return
    from sqlalchemy import create_engine

    from tests.fixtures.postgres import admin_url

    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for role in _roles_to_drop:
            connection.execute(text(f"DROP ROLE IF EXISTS {role}"))
    admin.dispose()


def test_every_notebook_table_is_audited() -> None:
    from bptwin.eln.models import AUDITED_TABLES, AuditedTable, NotebookBase

    audited = {model.__tablename__ for model in AUDITED_TABLES}
    mapped = {
        mapper.class_.__tablename__
        for mapper in NotebookBase._sa_registry.mappers  # type: ignore[attr-defined]
        if issubclass(mapper.class_, AuditedTable)
    }
    # The audit trail itself, and the spool's write keys (bookkeeping of a replay, no data).
    bookkeeping = {"audit_entry", "audit_head", "notebook_write_key"}
    assert set(NotebookBase.metadata.tables) - bookkeeping == audited == mapped
