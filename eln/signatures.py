"""Electronic signatures in the manner of 21 CFR Part 11 §11.50 and §11.200 (no UI code here).

A signature is given at the moment of signing by the signer's login name and PIN (checked
again then, whoever is logged in), and stores its manifestation: the printed name, the date
and time in UTC and at the station (with the UTC offset) and the meaning ("reviewed",
"approved", "closed", "accepted", "rejected"). It is linked to the exact content signed: the
SHA-256 of a canonical JSON image of the signed row (:func:`content_of`), stored with it.

A signed record is immutable: a session that changes or deletes a row carrying a signature in
force is refused (eln.signature_guard, switched on by importing the models), unless it is the
signing transaction of a new signature for that row (:func:`sign_row` with
``supersede=True``): then the old signature is marked superseded (never deleted) and both
are kept. ``verify_signatures`` checks, for ``bptwin audit verify``, that each signature still
matches its content, that its signer existed with the role the meaning needs, and that the
signature row is the one the audit trail recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlmodel import col, select

from bptwin.eln.audit import canonical_json, entries_for, jsonable
from bptwin.eln.errors import NotebookPermissionError, NotebookValidationError
from bptwin.eln.models import (
    AuditAction,
    AuditedTable,
    AuditEntry,
    BatchAcceptance,
    BatchClosure,
    CalibrationRecord,
    Deviation,
    Operator,
    OperatorRole,
    ProcessChange,
    Signature,
    SignatureMeaning,
)
from bptwin.eln.signature_guard import allow_resigning as allow_resigning
from bptwin.eln.unit_of_work import AggregateService, find_batch, where

if TYPE_CHECKING:
    from bptwin.eln.operators import OperatorService

# The records that are signed, by table name.
SIGNED_TABLES: dict[str, type[AuditedTable]] = {
    "batch_closure": BatchClosure,
    "deviation": Deviation,
    "calibration_record": CalibrationRecord,
    "process_change": ProcessChange,
    "batch_acceptance": BatchAcceptance,
}
# Meanings only a supervisor may sign (a level-1 deviation review may be an operator's).
SUPERVISOR_MEANINGS = frozenset(
    {
        SignatureMeaning.APPROVED,
        SignatureMeaning.CLOSED,
        SignatureMeaning.ACCEPTED,
        SignatureMeaning.REJECTED,
    }
)


def needs_supervisor(table_name: str, meaning: SignatureMeaning, fields: dict[str, Any]) -> bool:
    """Whether a signature of this meaning on this record must be a supervisor's: reviewing
    or closing a level-1 deviation is any operator's, every other signature a supervisor's."""
    if table_name == "deviation":
        return int(fields.get("level") or 0) >= 2
    return meaning in SUPERVISOR_MEANINGS


@dataclass(frozen=True, slots=True)
class SignatureProblem:
    """A signature that does not hold, and why (for ``bptwin audit verify``)."""

    signature_id: int
    table_name: str
    record_id: int
    reason: str

    def __str__(self) -> str:
        return f"signature {self.signature_id} on {self.table_name} {self.record_id}: {self.reason}"


# ---------------------------------------------------------------- content and manifestation


def content_of(row: AuditedTable) -> dict[str, Any]:
    """The canonical image of a signed row: its table, id and every column, as plain JSON."""
    mapper = inspect(type(row))
    fields = {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}
    return {
        "table": type(row).__tablename__,
        "id": fields.pop("id"),
        "fields": jsonable(fields),
    }


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of ``content``."""
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def local_time(signature: Signature) -> datetime:
    """The station's local time at signing (the offset stored with the signature)."""
    offset = timezone(timedelta(minutes=signature.utc_offset_minutes))
    return signature.signed_at.astimezone(offset)


def manifestation(signature: Signature) -> str:
    """The signature as printed: name, meaning, UTC and local time (§11.50)."""
    utc = signature.signed_at.astimezone(timezone.utc)
    local = local_time(signature)
    zone = f" {signature.time_zone}" if signature.time_zone else ""
    text = (
        f"{signature.printed_name} ({signature.signer}, {signature.signer_role.value}) "
        f"{signature.meaning.value} on {utc:%Y-%m-%d %H:%M:%S} UTC "
        f"({local:%Y-%m-%d %H:%M:%S %z}{zone} local)"
    )
    if signature.superseded_at is not None:
        text += f" · superseded {signature.superseded_at:%Y-%m-%d %H:%M} UTC"
    return text


def _station_zone(at: datetime) -> tuple[int, str]:
    """UTC offset (minutes) and zone name of the station's local time at ``at``."""
    local = at.astimezone()
    offset = local.utcoffset() or timedelta(0)
    return int(offset.total_seconds() // 60), local.tzname() or ""


# ---------------------------------------------------------------- signing


def authenticate_signer(
    unit_operators: OperatorService, signer: str, pin: str, *, supervisor: bool
) -> Operator:
    """The signer, after their name and PIN were checked now (one message for every failure)."""
    if not isinstance(pin, str) or not pin:
        raise NotebookPermissionError("signing needs the signer's PIN")
    operator = unit_operators.authenticate(signer, pin)
    if supervisor and operator.role != OperatorRole.SUPERVISOR:
        raise NotebookPermissionError(f"this signature needs a supervisor; {signer!r} is not one")
    return operator


def signatures_in_force(session: Session, table_name: str, record_id: int) -> list[Signature]:
    """The signatures of one row that are not superseded, oldest first."""
    statement = (
        select(Signature)
        .where(
            col(Signature.table_name) == table_name,
            col(Signature.record_id) == record_id,
            col(Signature.superseded_at).is_(None),
        )
        .order_by(col(Signature.id))
    )
    return list(session.scalars(statement))


def sign_row(
    session: Session,
    row: AuditedTable,
    signer: Operator,
    meaning: SignatureMeaning,
    now: datetime,
    *,
    batch_id: int | None = None,
    reason: str = "",
    supersede: bool = False,
) -> Signature:
    """Sign ``row`` (already changed as wanted) in the session's transaction.

    Refused when the row carries a signature in force, unless ``supersede`` (a change under a
    new signature, which then needs ``reason``): the old signatures are marked superseded.
    """
    table = type(row).__tablename__
    if table not in SIGNED_TABLES:
        raise ValueError(f"{table} records are not signed")
    if supersede:
        allow_resigning(session, row)
    session.flush()
    record_id = int(row.id)  # type: ignore[attr-defined]
    earlier = signatures_in_force(session, table, record_id)
    if earlier and not supersede:
        first = earlier[0]
        raise NotebookValidationError(
            "signature",
            f"{table.replace('_', ' ')} {record_id} is already signed ({first.meaning.value} by "
            f"{first.signer} on {first.signed_at:%Y-%m-%d %H:%M} UTC); a change needs a new "
            "signature with a reason",
        )
    if earlier and not reason.strip():
        raise NotebookValidationError(
            "reason", "a new signature over a changed record needs a reason"
        )
    session.refresh(row)  # the content as stored, so it hashes the same when read back
    content = content_of(row)
    if (
        needs_supervisor(table, meaning, content["fields"])
        and signer.role != OperatorRole.SUPERVISOR
    ):
        raise NotebookPermissionError(
            f"signing this as {meaning.value!r} needs a supervisor; {signer.name!r} is not one"
        )
    offset, zone = _station_zone(now)
    signature = Signature(
        table_name=table,
        record_id=record_id,
        batch_id=batch_id,
        meaning=meaning,
        signer=signer.name,
        printed_name=signer.display_name or signer.name,
        signer_role=signer.role,
        signed_at=now,
        utc_offset_minutes=offset,
        time_zone=zone,
        content_hash=content_hash(content),
        content=content,
        reason=reason.strip(),
    )
    session.add(signature)
    session.flush()
    for old in earlier:
        old.superseded_at = now
        old.superseded_by = signature.id
    return signature


# ---------------------------------------------------------------- reading and checking


class SignatureService(AggregateService):
    """Signatures of the notebook's records: listing them and checking they still hold."""

    def list_signatures(
        self,
        *,
        batch_number: int | None = None,
        table_name: str | None = None,
        record_id: int | None = None,
    ) -> list[Signature]:
        """Signatures (superseded ones too), oldest first."""
        statement = select(Signature)
        with self.unit.read() as session:
            if batch_number is not None:
                batch = find_batch(session, batch_number)
                statement = where(statement, col(Signature.batch_id) == batch.id)
            if table_name is not None:
                statement = where(statement, col(Signature.table_name) == table_name)
            if record_id is not None:
                statement = where(statement, col(Signature.record_id) == record_id)
            return list(session.exec(statement.order_by(col(Signature.id))))

    def verify_signatures(self) -> list[SignatureProblem]:
        """Every signature that does not hold (empty when all do)."""
        with self.unit.read() as session:
            signatures = list(session.scalars(select(Signature).order_by(col(Signature.id))))
            problems = [
                problem for signature in signatures for problem in _problems(session, signature)
            ]
            problems.extend(_removed(session, {int(s.id or 0) for s in signatures}))
            return problems


def _problems(session: Session, signature: Signature) -> Iterable[SignatureProblem]:
    def problem(reason: str) -> SignatureProblem:
        return SignatureProblem(
            int(signature.id or 0), signature.table_name, signature.record_id, reason
        )

    if content_hash(signature.content) != signature.content_hash:
        yield problem("the stored content no longer hashes to the signed hash")
    table = SIGNED_TABLES.get(signature.table_name)
    if table is None:
        yield problem(f"{signature.table_name!r} is not a signed kind of record")
        return
    row = session.get(table, signature.record_id)
    if row is None:
        yield problem("the signed record is gone")
    elif (
        signature.superseded_at is None and content_hash(content_of(row)) != signature.content_hash
    ):
        changed = _changed_fields(signature.content, content_of(row))
        yield problem(
            "the record was changed after signing ("
            + (", ".join(changed) or "content")
            + ") without a new signature"
        )
    yield from (problem(reason) for reason in _signer_problems(session, signature))
    entries = entries_for(session, "signature", int(signature.id or 0))
    if not entries or entries[0].action != AuditAction.INSERT:
        yield problem("the signature is not in the audit trail")
    elif entries[-1].after != jsonable(_image(signature)):
        yield problem("the signature row differs from its audited image")


def _removed(session: Session, present: set[int]) -> Iterable[SignatureProblem]:
    """Signatures the audit trail recorded that are no longer in the table."""
    inserted = session.scalars(
        select(AuditEntry).where(
            col(AuditEntry.table_name) == "signature",
            col(AuditEntry.action) == AuditAction.INSERT,
        )
    )
    for entry in inserted:
        if int(entry.record_id) not in present:
            after = entry.after or {}
            yield SignatureProblem(
                int(entry.record_id),
                str(after.get("table_name", "?")),
                int(after.get("record_id") or 0),
                f"the signature ({after.get('meaning')} by {after.get('signer')}) was removed",
            )


def _changed_fields(signed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    before, after = signed.get("fields", {}), current.get("fields", {})
    names = before.keys() | after.keys()
    return sorted(name for name in names if before.get(name) != after.get(name))


def _image(row: Signature) -> dict[str, Any]:
    mapper = inspect(type(row))
    return {attr.columns[0].name: getattr(row, attr.key) for attr in mapper.column_attrs}


def _signer_problems(session: Session, signature: Signature) -> Iterable[str]:
    """The signer must have existed, active, with the role the meaning needs, when signing."""
    operator = session.scalars(
        select(Operator).where(col(Operator.name) == signature.signer)
    ).first()
    if operator is None:
        yield f"the signer {signature.signer!r} is not a registered operator"
        return
    if operator.created_at > signature.signed_at:
        yield f"the signer {signature.signer!r} was registered only after signing"
        return
    # The operator as the audit trail knew them at the moment of signing.
    image: dict[str, Any] = {"role": operator.role.value, "active": operator.active}
    for entry in entries_for(session, "operator", int(operator.id or 0)):
        if entry.at <= signature.signed_at and entry.after is not None:
            image = entry.after
    if not image.get("active", True):
        yield f"the signer {signature.signer!r} was deactivated when signing"
    supervisor = needs_supervisor(
        signature.table_name, signature.meaning, signature.content.get("fields", {})
    )
    if supervisor and image.get("role") != OperatorRole.SUPERVISOR:
        yield f"the signer {signature.signer!r} was not a supervisor when signing"
    if signature.signer_role.value != image.get("role"):
        yield (
            f"the signature says role {signature.signer_role.value}, "
            f"the signer had {image.get('role')}"
        )
