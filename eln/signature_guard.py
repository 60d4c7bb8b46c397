"""The guard that keeps signed notebook rows unchanged (see eln.signatures).

A session that updates or deletes a row carrying an electronic signature in force is refused
at flush, unless the same transaction signs that row anew (:func:`allow_resigning`, called by
eln.signatures.sign_row with ``supersede``). Importing eln.models switches it on for every
session, as it does the audit trail; it imports only the models so that this can happen while
they load.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction
from sqlmodel import col, select

from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import Signature

# The kinds of record that are signed (eln.signatures.SIGNED_TABLES maps them to their models).
SIGNED_TABLE_NAMES = frozenset(
    {"batch_closure", "deviation", "calibration_record", "process_change", "batch_acceptance"}
)
# session.info key: (table, id) of the rows this transaction signs anew (may change them).
_RESIGNING_KEY = "_bptwin_resigning"


def allow_resigning(session: Session, row: Any) -> None:
    """Let this transaction change ``row`` although it is signed: it signs it anew."""
    table = type(row).__tablename__
    session.info.setdefault(_RESIGNING_KEY, set()).add((table, row.id))


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_signed_rows(
    session: Session, _flush_context: UOWTransaction, _instances: Any
) -> None:
    """A signed row changes only in the transaction that signs it anew."""
    allowed: set[tuple[str, int]] = session.info.get(_RESIGNING_KEY, set())
    changed = [obj for obj in session.dirty if session.is_modified(obj, include_collections=False)]
    for obj in [*changed, *session.deleted]:
        table = getattr(type(obj), "__tablename__", None)
        if table not in SIGNED_TABLE_NAMES or getattr(obj, "id", None) is None:
            continue
        if (table, obj.id) in allowed:
            continue
        in_force = session.execute(
            select(Signature.signer, Signature.meaning).where(
                col(Signature.table_name) == table,
                col(Signature.record_id) == obj.id,
                col(Signature.superseded_at).is_(None),
            )
        ).first()
        if in_force is not None:
            signer, meaning = in_force
            raise NotebookValidationError(
                "signature",
                f"{table.replace('_', ' ')} {obj.id} is signed ({meaning.value} by {signer}) and "
                "cannot be changed; a change needs a new signature with a reason",
            )
