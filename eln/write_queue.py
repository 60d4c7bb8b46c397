"""Store-and-forward for the notebook: writes made while the database is away are queued on disk.

:class:`SpooledNotebook` is the Notebook of eln.notebook on a NotebookService, like
eln.direct_notebook.DirectNotebook, except for the writes that may wait (``DEFERRABLE_WRITES``:
alarm events, samples, notes, deviations, calibrations, media). Those go straight to the
database while it answers. When it does not (``DatabaseUnavailableError``), the call is written
to a local durable queue (database/spool.py: it survives SIGKILL) with its arguments, the moment
it was made and a write key, and :class:`NotebookWriteQueued` is raised so the caller can say
so; a background thread replays the queue in order, with back-off, once the database is back.
Reads, logins and batch starts need an answer now: they pass through unchanged.

No duplicates: every deferrable write stores its key in ``notebook_write_key`` inside the
write's own transaction. A write whose commit outcome was lost with the connection is queued
with the same key, and replay skips a key the database already holds.

Input is still checked when the database is away: the call first runs against an offline
twin of the service (same validation, no database), so a bad form value is refused at once
instead of being queued. A queued write the database refuses on replay (e.g. the batch does
not exist) is moved to the spool's ``rejected`` table with the reason, never dropped.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import create_engine, event, exc, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, UOWTransaction

from bptwin.database.backoff import Backoff
from bptwin.database.relational import DatabaseUnavailableError, check_connection, is_unavailable
from bptwin.database.spool import Spool, SpoolError, SpoolItem
from bptwin.eln.columns import utc_now
from bptwin.eln.direct_notebook import DEFERRABLE_WRITES, DirectNotebook
from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.models import AuditedTable, NotebookWriteKey
from bptwin.eln.services import NotebookService

log = logging.getLogger(__name__)

IDLE_PING_S = 15.0  # how often an idle replayer checks the database (for the link state)

_key_table = NotebookWriteKey.__table__  # type: ignore[attr-defined]


class NotebookWriteQueued(NotebookError):
    """The database is unreachable: the write was queued on disk and will be made later."""

    def __init__(self, method: str, waiting: int, reason: str) -> None:
        self.method = method
        self.waiting = waiting
        super().__init__(
            f"the notebook database is unreachable ({reason}); the entry is saved locally "
            f"({waiting} waiting) and written when the database is back"
        )


@dataclass(frozen=True, slots=True)
class NotebookLinkStatus:
    """What the status strip shows for the notebook link."""

    up: bool
    waiting: int
    rejected: int
    written: int
    last_error: str | None


# -- the write key, stored by a session event inside the write's transaction -------------------


@dataclass(slots=True)
class _PendingKey:
    key: str
    method: str
    stored: bool = False


_pending_key: contextvars.ContextVar[_PendingKey | None] = contextvars.ContextVar(
    "bptwin_notebook_write_key", default=None
)


def _store_write_key(session: Session, _flush_context: UOWTransaction) -> None:
    pending = _pending_key.get()
    if pending is None or pending.stored:
        return
    touched = (*session.new, *session.dirty, *session.deleted)
    if not any(isinstance(obj, AuditedTable) for obj in touched):
        return
    session.connection().execute(
        insert(_key_table).values(key=pending.key, method=pending.method, applied_at=utc_now())
    )
    pending.stored = True


def _install_key_event() -> None:
    if not event.contains(Session, "after_flush", _store_write_key):
        event.listen(Session, "after_flush", _store_write_key)


_install_key_event()


# -- arguments to and from JSON ----------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, date):
        return {"__date__": value.isoformat()}
    if isinstance(value, Enum):
        return _to_json(value.value)
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "items"):  # other mappings
        return {str(k): _to_json(v) for k, v in value.items()}
    raise TypeError(f"cannot queue a notebook argument of type {type(value).__name__}")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__datetime__"}:
            return datetime.fromisoformat(value["__datetime__"])
        if set(value) == {"__date__"}:
            return date.fromisoformat(value["__date__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def encode_call(method: str, key: str, made_at: datetime, arguments: dict[str, Any]) -> str:
    return json.dumps(
        {
            "method": method,
            "key": key,
            "made_at": made_at.isoformat(),
            "arguments": _to_json(arguments),
        }
    )


def decode_call(payload: str | bytes) -> tuple[str, str, datetime, dict[str, Any]]:
    data = json.loads(payload)
    return (
        str(data["method"]),
        str(data["key"]),
        datetime.fromisoformat(data["made_at"]),
        _from_json(data["arguments"]),
    )


def _offline_engine() -> Engine:
    """An engine that can never connect: runs a service method up to its first query."""
    # Read-only in a folder that does not exist: opening it fails before any statement runs.
    return create_engine("sqlite:///file:/nonexistent-bptwin-offline/notebook?mode=ro&uri=true")


class SpooledNotebook(DirectNotebook):
    """The Notebook whose deferrable writes outlive a database outage (module docstring).

    ``close()`` stops the replayer; what is queued stays on disk.
    """

    def __init__(
        self,
        service: NotebookService,
        spool_path: str | Path,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        on_change: Callable[[NotebookLinkStatus], None] | None = None,
    ) -> None:
        super().__init__(service)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.on_change = on_change
        self._spool = Spool(spool_path)
        self._offline = service.rebound(engine=_offline_engine())
        self._lock = threading.RLock()  # one write at a time: keeps the order of writes
        self._up = True
        self._last_error: str | None = None
        self._written = 0
        self._rejected = self._spool.rejected_count()
        # Writes refused for their input (a form value out of range, a bad name): counted.
        self.refused_inputs = 0
        self.last_refusal: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notebook-replay", daemon=True)
        self._thread.start()
        self._owner_lock: FileLock | None = None

    @classmethod
    def open_exclusive(
        cls, service: NotebookService, spool_path: str | Path, **options: Any
    ) -> SpooledNotebook | None:
        """A SpooledNotebook owning ``spool_path`` (a lock file beside it), or None if another
        process owns it.

        One process replays a queue file; a second control room on the same data folder gets
        None and uses the plain service (its writes then fail plainly while the database is
        away instead of being queued). The lock is the operating system's (``filelock``), so a
        killed owner leaves nothing to clean up.
        """
        path = Path(spool_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not thread-local: the app takes the lock in a worker and releases it on quitting.
        lock = FileLock(f"{path}.lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        notebook = cls(service, path, **options)
        notebook._owner_lock = lock
        return notebook

    def _write(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return self._call_checked(name, arguments)
        except NotebookValidationError as error:
            with self._lock:
                self.refused_inputs += 1
                self.last_refusal = f"{name}: {error}"
            raise

    @property
    def spool(self) -> Spool:
        return self._spool

    def status(self) -> NotebookLinkStatus:
        with self._lock:
            return NotebookLinkStatus(
                up=self._up,
                waiting=self._spool.depth(),
                rejected=self._rejected,
                written=self._written,
                last_error=self._last_error,
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (every queued write made or rejected); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._spool.depth() > 0:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10.0)
        self._spool.close()
        lock, self._owner_lock = self._owner_lock, None
        if lock is not None:
            lock.release()
        super().close()

    # -- writing -------------------------------------------------------------------------------

    def _call_checked(self, name: str, arguments: dict[str, Any]) -> Any:
        method = DEFERRABLE_WRITES[name](self.service)
        if arguments.get("override_pin"):
            return self._signed_now(name, method, arguments)
        with self._lock:
            made_at = self.service.clock()
            key = uuid.uuid4().hex
            if self._spool.depth() == 0:
                try:
                    result = self._apply(method, name, key)(**arguments)
                except DatabaseUnavailableError as error:
                    # The commit may or may not have happened: queued with the same key.
                    self._note_down(str(error))
                    return self._queue(name, key, made_at, arguments, str(error))
                self._written += 1
                return result
            # Writes queued earlier go first. Check the input now, without the database.
            with contextlib.suppress(DatabaseUnavailableError):  # reached the database: valid
                DEFERRABLE_WRITES[name](self._offline)(**arguments)
            return self._queue(name, key, made_at, arguments, self._last_error or "replaying")

    def _signed_now(self, name: str, method: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        """A signed write (it carries a PIN) is made now or refused: a PIN never goes to disk,
        and a signature is given at the moment of signing, not replayed later."""
        with self._lock:
            if self._spool.depth() > 0:
                raise NotebookError(
                    "the notebook is catching up with queued writes; sign again in a moment"
                )
            try:
                result = self._apply(method, name, uuid.uuid4().hex)(**arguments)
            except DatabaseUnavailableError as error:
                self._note_down(str(error))
                raise NotebookError(
                    f"not signed: the notebook database is unreachable ({error}); a signature "
                    "is never queued"
                ) from None
            self._written += 1
            return result

    def _apply(self, method: Callable[..., Any], name: str, key: str) -> Callable[..., Any]:
        def run(**arguments: Any) -> Any:
            token = _pending_key.set(_PendingKey(key, name))
            try:
                return method(**arguments)
            finally:
                _pending_key.reset(token)

        return run

    def _queue(
        self, name: str, key: str, made_at: datetime, arguments: dict[str, Any], reason: str
    ) -> Any:
        try:
            self._spool.push(encode_call(name, key, made_at, arguments))
        except (SpoolError, TypeError) as error:
            raise NotebookError(f"the notebook write could not be saved locally: {error}") from None
        self._wake.set()
        self._changed()
        raise NotebookWriteQueued(name, self._spool.depth(), reason)

    # -- replay --------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.retry_initial, self.retry_max)
        last_ping = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.retry_initial if self._spool.depth() else IDLE_PING_S / 3)
            self._wake.clear()
            try:
                while self._spool.depth() and not self._stop.is_set():
                    if not self._replay_one():
                        if self._stop.wait(backoff.next_delay()):
                            return
                    else:
                        backoff.reset()
                if time.monotonic() - last_ping >= IDLE_PING_S:
                    last_ping = time.monotonic()
                    self._ping()
            except Exception as error:  # the replayer must outlive surprises; data stays queued
                log.exception("notebook replay error")
                self._note_down(f"replay error: {error}")
                self._stop.wait(1.0)

    def _ping(self) -> None:
        try:
            check_connection(self.service.engine)
        except DatabaseUnavailableError as error:
            self._note_down(str(error))
            return
        self._note_up()

    def _replay_one(self) -> bool:
        """Make the oldest queued write; True when it left the queue (made, known or refused)."""
        with self._lock:
            items = self._spool.peek(max_items=1)
            if not items:
                return True
            item = items[0]
            try:
                name, key, made_at, arguments = decode_call(item.payload)
            except (ValueError, KeyError, TypeError) as error:
                return self._refuse(item, f"unreadable queued write: {error}")
            try:
                if self._key_known(key):
                    self._spool.ack([item])
                    self._note_up()
                    return True
                replaying = self.service.rebound(clock=lambda: made_at)
                self._apply(DEFERRABLE_WRITES[name](replaying), name, key)(**arguments)
            except DatabaseUnavailableError as error:
                self._note_down(str(error))
                return False
            except exc.IntegrityError as error:
                if self._key_known(key):  # made meanwhile by an earlier attempt
                    self._spool.ack([item])
                    return True
                return self._refuse(item, f"{name}: {error.orig}")
            except (NotebookError, ValueError, TypeError, KeyError) as error:
                return self._refuse(item, f"{name}: {error}")
            self._spool.ack([item])
            self._written += 1
            self._note_up()
            return True

    def _key_known(self, key: str) -> bool:
        try:
            with self.service.engine.connect() as connection:
                found = connection.execute(
                    select(_key_table.c.key).where(_key_table.c.key == key)
                ).first()
        except exc.DBAPIError as error:
            if is_unavailable(error):
                raise DatabaseUnavailableError(str(error.orig).strip()) from error
            raise
        return found is not None

    def _refuse(self, item: SpoolItem, reason: str) -> bool:
        log.error(
            "notebook refused a queued write for good (kept in %s): %s", self._spool.path, reason
        )
        self._spool.reject([item], reason)
        self._rejected += 1
        self._changed()
        return True

    # -- link state ----------------------------------------------------------------------------

    def _note_down(self, reason: str) -> None:
        with self._lock:
            if self._up:
                log.warning("notebook database unreachable, queueing writes: %s", reason)
            self._up = False
            self._last_error = reason
        self._changed()

    def _note_up(self) -> None:
        with self._lock:
            if not self._up:
                log.info("notebook database back, %d queued writes to replay", self._spool.depth())
            self._up = True
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.status())
            except Exception:
                log.exception("notebook link callback failed")
