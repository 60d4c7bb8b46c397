"""Engines, sessions and versioned migrations of the relational store (SQLite and Postgres)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from bptwin.database import migrate
from bptwin.database.relational import (
    DatabaseUnavailableError,
    DatabaseURLError,
    MissingActorError,
    default_sqlite_url,
    make_engine,
    session_scope,
)
from bptwin.eln.models import NotebookBase
from tests.fixtures.servers import free_port

NOTEBOOK_TABLES = set(NotebookBase.metadata.tables)


def schema_differences(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, NotebookBase.metadata)
    finally:
        engine.dispose()


# ------------------------------------------------------------------ engines


def test_default_sqlite_url_points_into_the_data_folder(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "data")
    assert url == f"sqlite:///{tmp_path / 'data' / 'notebook.sqlite'}"


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(default_sqlite_url(tmp_path / "new" / "folder"))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert (tmp_path / "new" / "folder" / "notebook.sqlite").exists()
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "empty"),
        ("not a url at all", "malformed"),
        ("mysql://root@localhost/db", "supports sqlite"),
        ("postgresql+asyncpg://u@localhost/db", "psycopg2"),
    ],
)
def test_bad_urls_get_a_plain_message(url: str, words: str) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        make_engine(url)
    assert words in str(caught.value)


def test_unreachable_postgres_is_reported_without_traceback() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(DatabaseUnavailableError) as caught:
        make_engine(f"postgresql://bptwin:secret@127.0.0.1:{port}/nothing")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "secret" not in message  # the password is never shown
    assert caught.value.__cause__ is None


def test_bare_postgresql_url_uses_psycopg2(postgres_url: str) -> None:
    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    engine = make_engine(bare)
    assert engine.dialect.driver == "psycopg2"
    assert engine.pool._pre_ping  # type: ignore[attr-defined]
    engine.dispose()


def test_session_scope_commits_rolls_back_and_carries_the_actor(tmp_path: Path) -> None:
    engine = make_engine(default_sqlite_url(tmp_path))
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with session_scope(engine, " alice ") as session:
        assert session.info["actor"] == "alice"
        session.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(RuntimeError), session_scope(engine, "alice") as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("boom")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t")).scalars().all() == [1]
    with pytest.raises(MissingActorError), session_scope(engine, "  "):
        pass
    engine.dispose()


# ------------------------------------------------------------------ migrations


def test_head_revision_is_the_last_known_one() -> None:
    assert migrate.head_revision() == migrate.all_revisions()[-1]
    assert migrate.all_revisions()[0] == "0001"


def test_sqlite_migrations_apply_once_and_match_the_models(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path)
    assert migrate.current_revision(url) is None
    assert migrate.upgrade(url) == migrate.all_revisions()
    assert migrate.current_revision(url) == migrate.head_revision()
    assert migrate.upgrade(url) == []  # already at head: nothing to do
    assert schema_differences(url) == []


def test_postgres_migrations_apply_once_and_match_the_models(empty_postgres_url: str) -> None:
    url = empty_postgres_url
    assert migrate.current_revision(url) is None
    assert migrate.upgrade(url) == migrate.all_revisions()
    assert migrate.upgrade(url) == []
    assert migrate.current_revision(url) == migrate.head_revision()
    assert schema_differences(url) == []


def test_schema_comparison_notices_a_drifted_schema(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_sample_batch_id"))
        connection.execute(text("ALTER TABLE note ADD COLUMN mood VARCHAR(10)"))
    engine.dispose()
    kinds = {difference[0] for difference in schema_differences(url)}
    assert {"add_index", "remove_column"} <= kinds


def test_migration_creates_every_notebook_table_and_downgrade_removes_them(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) >= NOTEBOOK_TABLES
    assert migrate.downgrade(url) == list(reversed(migrate.all_revisions()))
    assert not NOTEBOOK_TABLES & set(inspect(engine).get_table_names())
    assert migrate.current_revision(url) is None
    engine.dispose()


def test_unknown_schema_revision_is_refused_clearly(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(migrate.MigrationError) as caught:
        migrate.upgrade(url)
    assert "'9999'" in str(caught.value)
    assert "newer bptwin" in str(caught.value)


def test_upgrade_of_an_unreachable_server_is_a_plain_error() -> None:
    with pytest.raises(DatabaseUnavailableError):
        migrate.upgrade(f"postgresql://postgres@127.0.0.1:{free_port()}/x")


def _terminate_backends(url: str) -> int:
    """Kill every server connection to the database of ``url`` (as a restart would)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from tests.fixtures.postgres import admin_url

    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": make_url(url).database},
                ).all()
            )
    finally:
        admin.dispose()


def test_pooled_connections_survive_a_server_restart(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with session_scope(engine, "alice") as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    assert _terminate_backends(postgres_url) >= 1  # the pooled connection is now dead
    with session_scope(engine, "alice") as session:  # pre-ping replaces it
        assert session.execute(text("SELECT 2")).scalar() == 2
    engine.dispose()


def test_connection_lost_mid_transaction_is_a_plain_unavailable_error(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with (
        pytest.raises(DatabaseUnavailableError) as caught,
        session_scope(engine, "alice") as session,
    ):
        session.execute(text("SELECT 1"))
        _terminate_backends(postgres_url)
        session.execute(text("SELECT 2"))
    assert "cannot reach the database" in str(caught.value)
    engine.dispose()


def test_sqlite_file_in_an_impossible_folder_is_a_plain_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseUnavailableError, match="cannot create the folder"):
        make_engine(f"sqlite:///{blocker / 'sub' / 'notebook.sqlite'}")


def _upgrade_in_another_process(url: str) -> list[str]:
    from bptwin.database.migrate import upgrade as upgrade_here

    return upgrade_here(url)


def test_processes_migrating_one_sqlite_file_at_once_take_turns(tmp_path: Path) -> None:
    """``bptwin serve`` and a TUI starting together must not both create the tables."""
    import multiprocessing

    from bptwin.database.migrate import all_revisions, current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        applied = pool.map(_upgrade_in_another_process, [url] * 4)
    # Exactly one of them applied every revision; the others found the schema current.
    assert sorted(len(revisions) for revisions in applied) == [0, 0, 0, len(all_revisions())]
    assert current_revision(url) == head_revision()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, SQLite in tmp_path or a throwaway real Postgres one."""
    if request.param == "sqlite":
        return default_sqlite_url(tmp_path)
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def test_0008_keeps_the_samples_and_lets_a_sample_hold_a_dry_weight_alone(
    unmigrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples written before 0008 survive it (SQLite rebuilds the table); after it a sample may
    have a dry weight and no OD600, never neither; going back is refused while such a sample
    exists, and restores OD600 NOT NULL once none does."""
    from sqlalchemy.exc import IntegrityError

    from bptwin.eln.services import NotebookService
    from tests.screens_harness import BATCH, INOCULATED_AT, running_notebook

    monkeypatch.setattr("bptwin.eln.pins.SCRYPT_N", 2**10)
    url = unmigrated_url
    migrate.upgrade(url, "0007")
    notebook = running_notebook(url)
    taken = INOCULATED_AT + timedelta(hours=2)
    before = notebook.samples.add_sample(
        "ana", BATCH, taken_at=taken, sop_timepoint_h=2, od_raw=0.31, dilution=10, dcw_g_per_l=1.1
    )
    notebook.engine.dispose()

    assert migrate.upgrade(url) == ["0008"]
    assert schema_differences(url) == []
    engine = make_engine(url)
    columns = {c["name"]: c for c in inspect(engine).get_columns("sample")}
    assert columns["od600"]["nullable"] and columns["od_raw"]["nullable"]
    checks = {c["name"] for c in inspect(engine).get_check_constraints("sample")}
    assert "ck_sample_od600_or_dry_weight" in checks
    notebook = NotebookService(engine, clock=lambda: INOCULATED_AT + timedelta(hours=5))
    (kept,) = notebook.samples.list_samples(BATCH)
    assert (kept.id, kept.od600, kept.dcw_g_per_l) == (before.id, pytest.approx(3.1), 1.1)
    dry = notebook.samples.add_sample(
        "ana", BATCH, taken_at=taken + timedelta(hours=2), sop_timepoint_h=4, dcw_g_per_l=2.5
    )
    assert dry.od600 is None
    assert notebook.audit.verify_trail().ok
    # The database itself refuses a sample with neither, whoever writes it.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            text("UPDATE sample SET dcw_g_per_l = NULL WHERE id = :id"), {"id": dry.id}
        )

    with pytest.raises(migrate.MigrationError, match=r"1 sample.* dry weight and no OD600"):
        migrate.downgrade(url, "0007")
    assert migrate.current_revision(url) == "0008"
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM sample WHERE id = :id"), {"id": dry.id})
    engine.dispose()
    assert migrate.downgrade(url, "0007") == ["0008"]
    engine = make_engine(url)
    columns = {c["name"]: c for c in inspect(engine).get_columns("sample")}
    assert not columns["od600"]["nullable"] and not columns["od_raw"]["nullable"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT od600 FROM sample")).scalars().all() == [
            pytest.approx(3.1)
        ]
    engine.dispose()
