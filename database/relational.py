"""Engines and sessions for the relational store: SQLite (embedded default) or Postgres.

The notebook's tables and audit trail live in ``eln``; this module only knows how to reach a
database and how to scope a unit of work to one acting person.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import URL, Engine, make_url

if TYPE_CHECKING:
    from sqlmodel import Session

SQLITE_FILE_NAME = "notebook.sqlite"
# A writer waits this long for another writer's lock before SQLite gives up.
SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 5


class RelationalStoreError(Exception):
    """The relational store cannot be used; the message says why in plain words."""


class DatabaseURLError(RelationalStoreError):
    """The database URL is malformed or names a database kind bptwin does not support."""


class DatabaseUnavailableError(RelationalStoreError):
    """The database server cannot be reached (down, wrong host/port, wrong credentials)."""


# What callers catch around start-up and migrations: any reason the store cannot be used
# (malformed URL, unreachable server, unknown schema revision); the message says which.
DatabaseUnavailable = RelationalStoreError


class MissingActorError(RelationalStoreError, ValueError):
    """A unit of work was started without naming the person who acts."""


def default_sqlite_url(data_dir: Path) -> str:
    """The embedded notebook database: one SQLite file in the user's data folder."""
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / SQLITE_FILE_NAME}"


def parse_url(url: str | URL) -> URL:
    """Parse and check a database URL; only SQLite and Postgres (psycopg2) are supported."""
    if isinstance(url, URL):
        parsed = url
    else:
        if not isinstance(url, str) or not url.strip():
            raise DatabaseURLError("the database URL is empty")
        try:
            parsed = make_url(url.strip())
        except (exc.ArgumentError, ValueError) as error:
            raise DatabaseURLError(f"malformed database URL {url!r}: {error}") from None
    backend = parsed.get_backend_name()
    # A bare "postgresql://" or "postgres://" means psycopg2 here (SQLAlchemy 2.1 would pick
    # psycopg 3 for the first and knows no dialect "postgres").
    driver = parsed.drivername.partition("+")[2] or "psycopg2"
    if backend in ("postgresql", "postgres"):
        if driver != "psycopg2":
            raise DatabaseURLError(
                f"database URL {describe_url(parsed)!r} asks for driver {driver!r}; "
                "bptwin talks to Postgres through psycopg2 (postgresql+psycopg2://...)"
            )
        return parsed.set(drivername="postgresql+psycopg2")
    if backend == "sqlite":
        return parsed
    raise DatabaseURLError(
        f"database URL {describe_url(parsed)!r} is for {backend!r}; "
        "bptwin supports sqlite:///path/file.sqlite and postgresql://user@host:port/dbname"
    )


def normalise_url(url: str) -> str:
    """The URL as bptwin connects to it, as a string (password kept): the one place where
    ``postgresql://`` and ``postgres://`` are bound to psycopg2, for the notebook's engine
    and for the Optuna study storage alike (SQLAlchemy 2.1 alone would pick psycopg 3,
    which bptwin does not install, and does not know ``postgres://`` at all)."""
    return parse_url(url).render_as_string(hide_password=False)


def describe_url(url: str | URL) -> str:
    """The URL with any password hidden, safe to print or log."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (exc.ArgumentError, ValueError):
        return "<malformed URL>"


def make_engine(url: str | URL, *, check: bool = True, echo: bool = False) -> Engine:
    """An engine for ``url`` (SQLite: WAL, foreign keys, busy timeout; Postgres: pre-ping).

    With ``check`` (the default) one connection is opened at once, so an unreachable server
    or a wrong password is reported here as DatabaseUnavailableError rather than later.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _make_sqlite_engine(parsed, echo)
    else:
        engine = create_engine(
            parsed,
            echo=echo,
            pool_pre_ping=True,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
        )
    if check:
        check_connection(engine)
    return engine


def _make_sqlite_engine(url: URL, echo: bool) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseUnavailableError(
                f"cannot create the folder {folder} for the SQLite database: {error.strerror}"
            ) from None
    engine = create_engine(
        url,
        echo=echo,
        # Worker threads and the UI thread share the engine's pool.
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                # WAL lets readers (the UI) run while a worker writes.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def check_connection(engine: Engine) -> None:
    """Open and close one connection; raise DatabaseUnavailableError with a plain reason."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except exc.DBAPIError as error:
        raise unavailable_error(engine, error) from None


def unavailable_error(engine: Engine, error: exc.DBAPIError) -> DatabaseUnavailableError:
    """Turn a driver error into one plain sentence naming the database."""
    detail = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    return DatabaseUnavailableError(
        f"cannot reach the database {describe_url(engine.url)}: {detail}"
    )


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` means the server went away (as opposed to bad data)."""
    if isinstance(error, DatabaseUnavailableError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    # SQLite reports schema mistakes as OperationalError too; those are not outages.
    message = str(error.orig).lower()
    return not any(word in message for word in _SCHEMA_ERROR_WORDS)


_SCHEMA_ERROR_WORDS = ("no such table", "no such column", "syntax error", "has no column")


@contextmanager
def session_scope(engine: Engine, actor: str) -> Iterator[Session]:
    """One unit of work by ``actor``: committed on success, rolled back on any error.

    The actor is kept in ``session.info["actor"]``, where the audit trail reads it. Objects
    stay readable after the block (no expiry on commit) so services can return them.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise MissingActorError("a notebook change needs the name of the acting person (actor)")
    # Imported here: sqlmodel (pydantic) is slow to import and migrations do not need it.
    from sqlmodel import Session

    session = Session(engine, expire_on_commit=False)
    session.info["actor"] = actor.strip()
    try:
        yield session
        session.commit()
    except exc.DBAPIError as error:
        session.rollback()
        if is_unavailable(error):
            raise unavailable_error(engine, error) from error
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
