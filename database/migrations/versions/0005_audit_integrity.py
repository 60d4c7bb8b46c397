"""Audit integrity: a keyed seal on every audit entry, and the PIN lockout of each operator.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

* ``audit_entry.seal``: HMAC-SHA256 of the entry's hash with the station's audit key (a file
  outside the database, see eln.audit_seal); NULL on entries written before this revision or
  by a process without the key.
* ``operator.failed_pins`` and ``operator.locked_until``: consecutive wrong PINs and the end
  of the lockout they caused (eln.operators); stored, so a restart does not reset them, and
  audited like every operator change.

Written out in full (no create_all); a test checks it against eln.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH = 64


def upgrade() -> None:
    op.add_column("audit_entry", sa.Column("seal", sa.String(HASH), nullable=True))
    op.add_column(
        "operator",
        sa.Column("failed_pins", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("operator", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of audit_entry would
    # insert and delete rows that its append-only triggers refuse.
    for table, column in (
        ("operator", "locked_until"),
        ("operator", "failed_pins"),
        ("audit_entry", "seal"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
