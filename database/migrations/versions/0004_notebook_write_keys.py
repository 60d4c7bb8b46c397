"""Keys of spooled notebook writes, so a write replayed after an outage is made only once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Written out in full (no create_all); a test checks it against eln.models.NotebookWriteKey.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
TABLE = "notebook_write_key"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("key", sa.String(NAME), nullable=False),
        sa.Column("method", sa.String(NAME), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=f"pk_{TABLE}"),
    )


def downgrade() -> None:
    op.drop_table(TABLE)
