"""Reading the audit trail: entries of a table or record, and the check that the chain holds
(the trail itself is written by eln.audit inside every notebook transaction)."""

from __future__ import annotations

from sqlmodel import col, select

from bptwin.eln.audit import GENESIS_HASH, HEAD_ID, find_chain_break
from bptwin.eln.audit_seal import AuditSeal, seal_for
from bptwin.eln.audit_verify import TrailReport, verify_trail
from bptwin.eln.models import AuditEntry, AuditHead
from bptwin.eln.unit_of_work import AggregateService, where


class AuditTrailService(AggregateService):
    """What ``bptwin audit`` and the batch report read of the audit trail."""

    def audit_trail(
        self, *, table_name: str | None = None, record_id: int | str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """Audit entries, newest first, optionally of one table or one record."""
        statement = select(AuditEntry)
        if table_name is not None:
            statement = where(statement, col(AuditEntry.table_name) == table_name)
        if record_id is not None:
            statement = where(statement, col(AuditEntry.record_id) == str(record_id))
        with self.unit.read() as session:
            return list(session.exec(statement.order_by(col(AuditEntry.id).desc()).limit(limit)))

    def verify_audit_chain(self) -> tuple[int, str] | None:
        """(first broken entry id, reason) or None when the audit chain holds."""
        with self.unit.read() as session:
            broken = find_chain_break(session)
        return None if broken is None else (broken.entry_id, broken.reason)

    def head(self) -> tuple[int, str]:
        """(number of entries, hash of the newest): what an export manifest anchors."""
        with self.unit.read() as session:
            row = session.get(AuditHead, HEAD_ID)
        return (0, GENESIS_HASH) if row is None else (row.last_id, row.last_hash)

    def verify_trail(
        self, seal: AuditSeal | None = None, anchors: dict[str, tuple[int, str]] | None = None
    ) -> TrailReport:
        """The full check: chain, seals and anchor (with the key), and every audited row
        against its last after-image. ``seal`` defaults to the one attached to this database."""
        seal = seal or seal_for(self.unit.engine)
        with self.unit.read() as session:
            return verify_trail(session, seal, anchors)
