"""``bptwin audit verify`` in full: the chain, its seals and anchor, and the data it protects.

Three questions, each answered with names:

1. Does the chain hold? Ids without gaps, every hash recomputed (eln.audit), and with the
   station's audit key every seal (eln.audit_seal): a chain recomputed without the key, or
   entries appended without it after sealed ones, fail here.
2. Is it the chain this station wrote? The anchor outside the database names the newest entry
   the station wrote; a chain that no longer reaches it was truncated, one that has another
   entry there was rewritten.
3. Do the audited tables hold what the chain says? Each row of every audited table is compared
   with its last after-image: a column changed by SQL, a row deleted or inserted behind the
   trail's back is named (table, row id, column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bptwin.eln.audit import (
    GENESIS_HASH,
    HEAD_ID,
    ChainBreak,
    _hash_view,
    _redact,
    entry_hash,
    jsonable,
)
from bptwin.eln.audit_seal import AuditKeyError, AuditSeal
from bptwin.eln.models import AUDITED_TABLES, AuditEntry, AuditHead

_PAGE = 1000
_audit_table = AuditEntry.__table__  # type: ignore[attr-defined]
_head_table = AuditHead.__table__  # type: ignore[attr-defined]

# Columns added to audited tables after rows may already have been audited without them:
# an after-image that lacks the column stands for this value (else the column's own default).
ADDED_COLUMN_DEFAULTS: dict[tuple[str, str], Any] = {
    ("operator", "failed_pins"): 0,
    ("operator", "locked_until"): None,
}


def _expected(after: dict[str, Any], table: Any, column: str) -> Any:
    """What the trail says ``column`` holds: the after-image's value, or for a column added by a
    later migration (absent from older images) its declared default."""
    if column in after:
        return after[column]
    name = str(table.name)
    if (name, column) in ADDED_COLUMN_DEFAULTS:
        return ADDED_COLUMN_DEFAULTS[(name, column)]
    default = table.c[column].default
    if default is not None and getattr(default, "is_scalar", False):
        return jsonable(default.arg)
    return None


@dataclass(frozen=True)
class RowMismatch:
    """One audited row that does not hold what its last audit entry says."""

    table: str
    record_id: str
    kind: str  # "changed", "deleted" (row gone, no delete entry), "unaudited" (no entry)
    columns: tuple[str, ...] = ()
    entry_id: int | None = None

    def describe(self) -> str:
        where = f"{self.table} {self.record_id}"
        if self.kind == "changed":
            return (
                f"{where}: {', '.join(self.columns)} differ(s) from audit entry {self.entry_id} "
                "(changed outside the notebook)"
            )
        if self.kind == "deleted":
            return (
                f"{where}: row is missing but audit entry {self.entry_id} has no delete "
                "(deleted outside the notebook)"
            )
        if self.entry_id is not None:
            return (
                f"{where}: row is present although audit entry {self.entry_id} deleted it "
                "(put back outside the notebook)"
            )
        return f"{where}: row has no audit entry (inserted outside the notebook)"


@dataclass
class TrailReport:
    """What ``verify_trail`` found; ``ok`` when nothing is wrong."""

    entries: int = 0
    head_hash: str = GENESIS_HASH
    sealed: int = 0
    unsealed: int = 0
    keyed: bool = False
    anchor: tuple[int, str] | None = None
    chain_break: ChainBreak | None = None
    anchor_problem: str | None = None
    mismatches: list[RowMismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain_break is None and self.anchor_problem is None and not self.mismatches

    def problems(self) -> list[str]:
        lines = []
        if self.chain_break is not None:
            lines.append(
                f"audit chain BROKEN at entry {self.chain_break.entry_id}: "
                f"{self.chain_break.reason}"
            )
        if self.anchor_problem is not None:
            lines.append(f"audit anchor: {self.anchor_problem}")
        lines += [f"row mismatch: {mismatch.describe()}" for mismatch in self.mismatches]
        return lines


def verify_trail(
    session: Session,
    seal: AuditSeal | None = None,
    anchors: dict[str, tuple[int, str]] | None = None,
) -> TrailReport:
    """Check chain, seals, anchor and every audited row (read-only).

    ``anchors``: more (entry id, hash) pairs recorded elsewhere, by where they were found
    (e.g. an export manifest); each must still be in the chain.
    """
    connection = session.connection()
    report = TrailReport(keyed=seal is not None)
    images: dict[tuple[str, str], tuple[int, dict[str, Any] | None]] = {}
    hashes_at_anchor: dict[int, str] = {}
    anchor = None
    if seal is not None:
        try:
            anchor = seal.read_anchor()
        except AuditKeyError as exc:
            report.anchor_problem = str(exc)
    if anchor is not None:
        report.anchor = (anchor.last_id, anchor.last_hash)
    wanted = {entry_id for entry_id, _ in (anchors or {}).values()}
    if anchor is not None:
        wanted.add(anchor.last_id)
    report.chain_break = _walk_chain(connection, seal, report, images, hashes_at_anchor, wanted)
    if anchor is not None and report.anchor_problem is None:
        report.anchor_problem = _anchor_problem(anchor.last_id, anchor.last_hash, hashes_at_anchor)
    for source, (entry_id, entry_hash_) in (anchors or {}).items():
        problem = _anchor_problem(entry_id, entry_hash_, hashes_at_anchor)
        if problem is not None:
            report.anchor_problem = "; ".join(
                filter(None, (report.anchor_problem, f"{source}: {problem}"))
            )
    report.mismatches = _row_mismatches(connection, images)
    return report


def _walk_chain(
    connection: Any,
    seal: AuditSeal | None,
    report: TrailReport,
    images: dict[tuple[str, str], tuple[int, dict[str, Any] | None]],
    hashes_at_anchor: dict[int, str],
    wanted: set[int],
) -> ChainBreak | None:
    expected_id, prev_hash = 1, GENESIS_HASH
    first_sealed: int | None = None
    broken: ChainBreak | None = None
    while True:
        rows = (
            connection.execute(
                select(_audit_table)
                .where(_audit_table.c.id >= expected_id)
                .order_by(_audit_table.c.id)
                .limit(_PAGE)
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
            if entry["seal"] is not None:
                report.sealed += 1
                first_sealed = first_sealed or entry_id
            else:
                report.unsealed += 1
            if seal is not None and broken is None:
                if entry["seal"] is not None and not seal.holds(entry["hash"], entry["seal"]):
                    broken = ChainBreak(
                        entry_id,
                        "its seal does not match the station's audit key (the chain was "
                        "rewritten or recomputed without the key, or a process with another "
                        "notebook.audit_key_file wrote it)",
                    )
                elif entry["seal"] is None and first_sealed is not None:
                    broken = ChainBreak(
                        entry_id,
                        f"it has no seal although entry {first_sealed} before it has "
                        "(appended or recomputed without the audit key)",
                    )
            if entry_id in wanted:
                hashes_at_anchor[entry_id] = entry["hash"]
            key = (str(entry["table_name"]), str(entry["record_id"]))
            images[key] = (entry_id, entry["after"])
            expected_id, prev_hash = entry_id + 1, entry["hash"]
        if len(rows) < _PAGE:
            break
    report.entries, report.head_hash = expected_id - 1, prev_hash
    head = connection.execute(
        select(_head_table.c.last_id, _head_table.c.last_hash).where(_head_table.c.id == HEAD_ID)
    ).first()
    if head is not None and (head.last_id, head.last_hash) != (expected_id - 1, prev_hash):
        if head.last_id >= expected_id:
            return ChainBreak(
                expected_id, f"entry {expected_id} is missing (head is at {head.last_id})"
            )
        return ChainBreak(int(head.last_id), "the chain head does not match the last entry")
    return broken


def _anchor_problem(anchor_id: int, anchor_hash: str, seen: dict[int, str]) -> str | None:
    if anchor_id not in seen:
        return (
            f"the chain ends before entry {anchor_id}, which this station wrote "
            "(entries were cut off the end)"
        )
    if seen[anchor_id] != anchor_hash:
        return (
            f"entry {anchor_id} is not the one this station wrote "
            "(the chain was rewritten from there or before)"
        )
    return None


def _row_mismatches(
    connection: Any, images: dict[tuple[str, str], tuple[int, dict[str, Any] | None]]
) -> list[RowMismatch]:
    found: list[RowMismatch] = []
    for model in AUDITED_TABLES:
        table = model.__table__  # type: ignore[attr-defined]
        name = str(table.name)
        (key_column,) = table.primary_key.columns
        present: set[str] = set()
        for row in connection.execute(select(table).order_by(key_column)).mappings():
            record_id = str(row[key_column.name])
            present.add(record_id)
            entry_id, after = images.get((name, record_id), (None, None))
            if after is None:
                found.append(RowMismatch(name, record_id, "unaudited", entry_id=entry_id))
                continue
            current = _redact(dict(row))
            differing = tuple(
                column
                for column, value in current.items()
                if value != _expected(after, table, column)
            )
            if differing:
                found.append(RowMismatch(name, record_id, "changed", differing, entry_id))
        for (table_name, record_id), (entry_id, after) in images.items():
            if table_name == name and after is not None and record_id not in present:
                found.append(RowMismatch(name, record_id, "deleted", entry_id=entry_id))
    return found


def operator_trail_problem(session: Session, operator: Any, seal: AuditSeal | None) -> str | None:
    """Why ``operator``'s stored row cannot be trusted, or None when it is exactly what the
    audit trail last recorded (role, active, PIN fingerprint, lockout...).

    Every permission check goes through this: a role granted, a PIN replaced or a lockout
    lifted by SQL is not in the trail, so it grants nothing.
    """
    name = operator.name
    entry = (
        session.execute(
            select(_audit_table)
            .where(
                _audit_table.c.table_name == "operator",
                _audit_table.c.record_id == str(operator.id),
            )
            .order_by(_audit_table.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if entry is None or entry["after"] is None:
        return f"operator {name!r} is not in the audit trail (added outside the notebook)"
    record = dict(entry)
    record["action"] = jsonable(record["action"])
    if entry_hash(record["prev_hash"], _hash_view(record)) != record["hash"]:
        return f"the audit entry of operator {name!r} does not match its hash"
    if seal is not None and not seal.holds(record["hash"], record["seal"]):
        first_sealed = _first_sealed_id(session)
        # Entries older than the first sealed one were written before the key (legacy).
        if record["seal"] is not None or (first_sealed is not None and record["id"] > first_sealed):
            return f"the audit entry of operator {name!r} is not sealed with the station's key"
    current = _redact(_image_of(operator))
    after = record["after"]
    differing = [
        column
        for column, value in current.items()
        if value != _expected(after, type(operator).__table__, column)
    ]
    if differing:
        return (
            f"operator {name!r} has {', '.join(differing)} different from the audit trail "
            "(changed outside the notebook; run 'bptwin audit verify')"
        )
    return None


_FIRST_SEALED: dict[str, int] = {}


def _first_sealed_id(session: Session) -> int | None:
    """The id of the first sealed entry (fixed once it exists: the trail is append-only)."""
    bind = session.get_bind()
    url = str(getattr(bind, "url", ""))
    cached = _FIRST_SEALED.get(url)
    if cached is not None:
        still = session.execute(
            select(_audit_table.c.seal).where(_audit_table.c.id == cached)
        ).scalar()
        if still is not None:  # a database emptied and refilled (tests) is looked at again
            return cached
    found = session.execute(
        select(_audit_table.c.id)
        .where(_audit_table.c.seal.is_not(None))
        .order_by(_audit_table.c.id)
        .limit(1)
    ).scalar()
    if found is not None:
        _FIRST_SEALED[url] = int(found)
    return None if found is None else int(found)


def _image_of(row: Any) -> dict[str, Any]:
    table = type(row).__table__
    return {column.name: getattr(row, column.key) for column in table.columns}
