"""The audit trail: every notebook insert, update and delete, in the same transaction.

How it works

* ``before_flush`` (any SQLAlchemy session): if the flush touches an audited table, the
  session must carry ``session.info["actor"]`` (else AuditActorMissingError). The single
  ``audit_head`` row is locked by a no-op UPDATE, which on Postgres takes a row lock held to
  commit and on SQLite takes the database write lock: concurrent writers queue here, so the
  chain stays linear (the same UPDATE returns the head's last id and hash). The stored
  "before" image of each updated/deleted row is read now.
* ``after_flush``: one AuditEntry per changed row is inserted through the session's own
  connection (same transaction: a rollback removes the row and its entry together), and the
  head row moves to the new last id and hash.
* Tamper evidence: ``hash = sha256(prev_hash + canonical JSON of the entry)``; ids have no
  gaps. ``verify_chain`` recomputes everything and names the first broken entry.
* Keyed and anchored: when the station's audit key is attached to the database
  (eln.audit_seal), each entry also carries ``seal = HMAC(key, hash)``, and after commit the
  anchor file outside the database moves to the newest entry; ``verify_trail``
  (eln.audit_verify) checks both and compares every audited row with its last after-image.
* Nothing here updates or deletes an AuditEntry, and the ORM refuses to (the migrations add
  database triggers that refuse it too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import event, insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, UOWTransaction
from sqlmodel import col

from bptwin.eln.audit_seal import Anchor, AuditKeyError, seal_for
from bptwin.eln.columns import as_utc, utc_now
from bptwin.eln.errors import AuditActorMissingError, AuditImmutableError
from bptwin.eln.models import AuditedTable, AuditEntry, AuditHead, NotebookBase

GENESIS_HASH = "0" * 64
HEAD_ID = 1
# Columns whose value must not be copied into the trail; a fingerprint still shows a change.
REDACTED_COLUMNS = frozenset({"pin_hash"})
_PENDING_KEY = "_bptwin_audit_pending"
_HEAD_KEY = "_bptwin_audit_head"
_ANCHOR_KEY = "_bptwin_audit_anchor"
_VERIFY_PAGE = 1000

_log = logging.getLogger(__name__)
_audit_table = AuditEntry.__table__  # type: ignore[attr-defined]
_head_table = AuditHead.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ChainBreak:
    """The first entry where the chain does not hold, and why."""

    entry_id: int
    reason: str


# ---------------------------------------------------------------- canonical form and hash


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, the same way every time (datetimes as UTC ISO text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return as_utc(value).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return str(value)


def canonical_json(data: Any) -> str:
    return json.dumps(
        jsonable(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """sha256 over the previous hash and the entry's canonical JSON (without the hashes)."""
    body = {key: entry[key] for key in _HASHED_FIELDS}
    return hashlib.sha256((prev_hash + canonical_json(body)).encode("utf-8")).hexdigest()


_HASHED_FIELDS = ("id", "at", "actor", "action", "table_name", "record_id", "before", "after")


# ---------------------------------------------------------------- session events


def _is_audited(obj: Any) -> bool:
    return isinstance(obj, AuditedTable)


def _is_trail(obj: Any) -> bool:
    return isinstance(obj, AuditEntry | AuditHead)


def _row_image(obj: Any) -> dict[str, Any]:
    mapper = inspect(type(obj))
    image = {attr.columns[0].name: getattr(obj, attr.key) for attr in mapper.column_attrs}
    return _redact(image)


def _redact(image: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = jsonable(image)
    for column in REDACTED_COLUMNS & clean.keys():
        if clean[column] is not None:
            digest = hashlib.sha256(str(clean[column]).encode()).hexdigest()[:16]
            clean[column] = f"redacted:{digest}"
    return clean


def _stored_image(connection: Connection, obj: Any) -> dict[str, Any] | None:
    """The row as the database holds it now (the true "before" of an update or delete)."""
    state = inspect(obj)
    if state.identity is None:
        return None
    table = type(obj).__table__
    condition = [
        column == value for column, value in zip(table.primary_key, state.identity, strict=True)
    ]
    row = connection.execute(select(table).where(*condition)).mappings().first()
    return None if row is None else _redact(dict(row))


def _record_id(obj: Any) -> str:
    # Read from the object: just after an insert its identity key is not assigned yet.
    key = inspect(type(obj)).primary_key_from_instance(obj)
    return str(key[0]) if len(key) == 1 else ",".join(map(str, key))


def _lock_head(connection: Connection) -> tuple[int, str]:
    """Serialise writers on the chain: a no-op write to the head row holds its lock to commit.

    Returns the head (last id, last hash), valid for as long as the lock is held.
    """
    row = connection.execute(
        update(_head_table)
        .where(_head_table.c.id == HEAD_ID)
        .values(last_id=_head_table.c.last_id)
        .returning(_head_table.c.last_id, _head_table.c.last_hash)
    ).first()
    if row is None:
        # Normally inserted by migration 0001; a database built another way gets it now.
        connection.execute(
            insert(_head_table).values(id=HEAD_ID, last_id=0, last_hash=GENESIS_HASH)
        )
        return 0, GENESIS_HASH
    return int(row.last_id), str(row.last_hash)


def _read_head(connection: Connection) -> tuple[int, str]:
    row = connection.execute(
        select(_head_table.c.last_id, _head_table.c.last_hash).where(_head_table.c.id == HEAD_ID)
    ).one()
    return int(row.last_id), str(row.last_hash)


def _before_flush(session: Session, _flush_context: UOWTransaction, _instances: Any) -> None:
    session.info.pop(_PENDING_KEY, None)
    session.info.pop(_HEAD_KEY, None)
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _is_trail(obj):
            raise AuditImmutableError(
                f"the audit trail is append-only: {type(obj).__name__} rows are written only "
                "by eln.audit and never changed or deleted"
            )
    new = [obj for obj in session.new if _is_audited(obj)]
    dirty = [
        obj
        for obj in session.dirty
        if _is_audited(obj) and session.is_modified(obj, include_collections=False)
    ]
    deleted = [obj for obj in session.deleted if _is_audited(obj)]
    if not (new or dirty or deleted):
        return
    actor = session.info.get("actor")
    if not isinstance(actor, str) or not actor.strip():
        tables = sorted({type(obj).__tablename__ for obj in (*new, *dirty, *deleted)})
        raise AuditActorMissingError(
            f"refusing to write notebook data ({', '.join(tables)}) without an actor: "
            "open the session with database.relational.session_scope(engine, actor)"
        )
    connection = session.connection()
    session.info[_HEAD_KEY] = _lock_head(connection)
    pending: list[tuple[Any, str, dict[str, Any] | None]] = [(obj, "insert", None) for obj in new]
    pending += [(obj, "update", _stored_image(connection, obj)) for obj in dirty]
    pending += [(obj, "delete", _stored_image(connection, obj)) for obj in deleted]
    session.info[_PENDING_KEY] = pending


def _after_flush(session: Session, _flush_context: UOWTransaction) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    head = session.info.pop(_HEAD_KEY, None)
    if not pending:
        return
    actor = str(session.info["actor"]).strip()
    at = utc_now()
    entries: list[dict[str, Any]] = []
    for obj, action, before in pending:
        after = None if action == "delete" else _row_image(obj)
        if action == "update" and before == after:
            continue  # a flush that wrote the same values changed nothing worth recording
        entries.append(
            {
                "at": at,
                "actor": actor,
                "action": action,
                "table_name": type(obj).__tablename__,
                "record_id": _record_id(obj),
                "before": before,
                "after": after,
            }
        )
    if entries:
        connection = session.connection()
        append_entries(connection, entries, head=head)
        session.info[_ANCHOR_KEY] = _read_head(connection)


def _after_commit(session: Session) -> None:
    """Move the anchor outside the database to the newest entry this commit wrote."""
    head = session.info.pop(_ANCHOR_KEY, None)
    if head is None:
        return
    seal = seal_for(session.get_bind())
    if seal is None:
        return
    try:
        seal.advance_anchor(Anchor(*head))
    except (OSError, AuditKeyError) as exc:
        # The data is committed; a missed anchor only weakens the truncation check.
        _log.warning("audit anchor not advanced to entry %s: %s", head[0], exc)


def _after_rollback(session: Session) -> None:
    session.info.pop(_ANCHOR_KEY, None)


def append_entries(
    connection: Connection, entries: list[dict[str, Any]], head: tuple[int, str] | None = None
) -> list[int]:
    """Chain and insert audit entries; the caller must hold the head lock (see _lock_head).

    ``head`` is the (last id, last hash) read under that lock; None reads it now.
    """
    last_id, last_hash = head if head is not None else _read_head(connection)
    seal = seal_for(connection)
    rows = []
    for entry in entries:
        last_id += 1
        row = {**entry, "id": last_id, "at": as_utc(entry["at"]), "prev_hash": last_hash}
        row["hash"] = entry_hash(last_hash, _hash_view(row))
        row["seal"] = None if seal is None else seal.seal(row["hash"])
        last_hash = row["hash"]
        rows.append(row)
    connection.execute(insert(_audit_table), rows)
    connection.execute(
        update(_head_table)
        .where(_head_table.c.id == HEAD_ID)
        .values(last_id=last_id, last_hash=last_hash)
    )
    return [row["id"] for row in rows]


def _hash_view(row: dict[str, Any]) -> dict[str, Any]:
    """The hashed fields in the form they come back from the database."""
    view = {key: row[key] for key in _HASHED_FIELDS}
    view["at"] = as_utc(view["at"]).isoformat()
    return view


def _refuse_bulk_writes(orm_execute_state: Any) -> None:
    """Bulk ORM statements skip flush events, so on notebook tables they are refused."""
    if not (
        orm_execute_state.is_insert or orm_execute_state.is_update or orm_execute_state.is_delete
    ):
        return
    for mapper in orm_execute_state.all_mappers:
        if issubclass(mapper.class_, NotebookBase):
            raise AuditImmutableError(
                f"bulk {'insert' if orm_execute_state.is_insert else 'update/delete'} on "
                f"{mapper.class_.__tablename__} would bypass the audit trail; "
                "change notebook rows through session objects"
            )


def install() -> None:
    """Attach the audit events to every SQLAlchemy session (idempotent)."""
    for name, listener in (
        ("before_flush", _before_flush),
        ("after_flush", _after_flush),
        ("do_orm_execute", _refuse_bulk_writes),
        ("after_commit", _after_commit),
        ("after_rollback", _after_rollback),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


install()


# ---------------------------------------------------------------- verification


def find_chain_break(session: Session) -> ChainBreak | None:
    """Recompute the chain from the first entry; the first entry that does not hold, or None."""
    connection = session.connection()
    expected_id, prev_hash = 1, GENESIS_HASH
    while True:
        rows = (
            connection.execute(
                select(_audit_table)
                .where(_audit_table.c.id >= expected_id)
                .order_by(_audit_table.c.id)
                .limit(_VERIFY_PAGE)
            )
            .mappings()
            .all()
        )
        for row in rows:
            entry = dict(row)
            entry_id = int(entry["id"])
            if entry_id != expected_id:
                return ChainBreak(expected_id, f"entry {expected_id} is missing")
            if entry["prev_hash"] != prev_hash:
                return ChainBreak(entry_id, "its previous-hash does not match the entry before")
            entry["action"] = jsonable(entry["action"])
            if entry_hash(prev_hash, _hash_view(entry)) != entry["hash"]:
                return ChainBreak(entry_id, "its content does not match its hash")
            expected_id, prev_hash = entry_id + 1, entry["hash"]
        if len(rows) < _VERIFY_PAGE:
            break
    head = connection.execute(
        select(_head_table.c.last_id, _head_table.c.last_hash).where(_head_table.c.id == HEAD_ID)
    ).first()
    if head is not None and (head.last_id, head.last_hash) != (expected_id - 1, prev_hash):
        if head.last_id >= expected_id:
            return ChainBreak(
                expected_id, f"entry {expected_id} is missing (head is at {head.last_id})"
            )
        return ChainBreak(int(head.last_id), "the chain head does not match the last entry")
    return None


def verify_chain(session: Session) -> int | None:
    """The id of the first broken audit entry, or None when the whole chain holds."""
    broken = find_chain_break(session)
    return None if broken is None else broken.entry_id


def entries_for(session: Session, table_name: str, record_id: int | str) -> list[AuditEntry]:
    """The audit history of one record, oldest first."""
    statement = (
        select(AuditEntry)
        .where(
            col(AuditEntry.table_name) == table_name, col(AuditEntry.record_id) == str(record_id)
        )
        .order_by(col(AuditEntry.id))
    )
    return list(session.scalars(statement))
