"""Versioned schema migrations (Alembic, configured in code: no alembic.ini at run time).

``bptwin db upgrade`` calls :func:`upgrade`. Migration scripts live in the package folder
``database/migrations/versions``; to write a new one see docs/data-model.md.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock
from sqlalchemy import exc, text
from sqlalchemy.engine import URL, Connection

from bptwin.database.relational import (
    RelationalStoreError,
    describe_url,
    is_unavailable,
    make_engine,
    unavailable_error,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Two processes upgrading one Postgres database at once take turns on this lock.
_PG_MIGRATION_LOCK = zlib.crc32(b"bptwin-migrations")


class MigrationError(RelationalStoreError):
    """The schema could not be brought to the wanted revision; the message says why."""


def alembic_config(url: str | URL | None = None, **attributes: Any) -> Config:
    """An Alembic config pointing at the packaged migrations (for upgrade and autogenerate)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        # ConfigParser treats % as interpolation; escape it in passwords.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    config.attributes.update(attributes)
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of bptwin knows."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise MigrationError(f"no migration scripts found in {MIGRATIONS_DIR}")
    return head


def all_revisions() -> list[str]:
    """Every known revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at, or None for an empty database."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return _current(connection)
    except exc.DBAPIError as error:
        raise unavailable_error(engine, error) from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_migration_lock(url: URL) -> Iterator[None]:
    """Two processes migrating one SQLite file (e.g. ``bptwin serve`` and the TUI starting
    together) take turns, as they do on Postgres with the advisory lock."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in {"", ":memory:"}:
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock = FileLock(lock_path, preserve_lock_file=True, thread_local=False)
    try:
        lock.acquire()
    except OSError:
        yield  # a read-only folder: migrating will say why if it must write
        return
    try:
        yield
    finally:
        lock.release()


def _run(url: str | URL, target: str, upgrade_direction: bool) -> list[str]:
    engine = make_engine(url)
    known = all_revisions()
    try:
        with _sqlite_migration_lock(engine.url), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            before = _current(connection)
            if before is not None and before not in known:
                raise MigrationError(
                    f"the database {describe_url(engine.url)} is at schema revision {before!r}, "
                    "which this version of bptwin does not know (was it made by a newer bptwin?)"
                )
            config = alembic_config(engine.url, connection=connection)
            if upgrade_direction:
                command.upgrade(config, target)
            else:
                command.downgrade(config, target)
            after = _current(connection)
    except CommandError as error:
        raise MigrationError(f"migration of {describe_url(engine.url)} failed: {error}") from None
    except exc.DBAPIError as error:
        if is_unavailable(error):
            raise unavailable_error(engine, error) from None
        raise MigrationError(
            f"migration of {describe_url(engine.url)} failed: {str(error.orig).strip()}"
        ) from error
    finally:
        engine.dispose()
    start = known.index(before) + 1 if before else 0
    end = known.index(after) + 1 if after else 0
    return known[start:end] if upgrade_direction else list(reversed(known[end:start]))


def upgrade(url: str | URL, target: str = "head") -> list[str]:
    """Bring the database at ``url`` up to ``target``; returns the revisions applied, in order."""
    return _run(url, target, upgrade_direction=True)


def downgrade(url: str | URL, target: str = "base") -> list[str]:
    """Step the schema back to ``target``; returns the revisions undone, newest first.

    Downgrading drops tables and the data in them: meant for development and tests.
    """
    return _run(url, target, upgrade_direction=False)
