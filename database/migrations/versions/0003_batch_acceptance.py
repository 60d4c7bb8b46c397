"""Batch acceptance for training: the supervisor's decision and the evaluation behind it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Written out in full (no create_all), like 0001 and 0002; a test checks it against
eln.models.BatchAcceptance.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
TABLE = "batch_acceptance"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(NAME), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=f"fk_{TABLE}_batch_id_batch"),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["operator.name"], name=f"fk_{TABLE}_decided_by_operator"
        ),
    )
    for column in ("batch_id", "decided_by"):
        op.create_index(f"ix_{TABLE}_{column}", TABLE, [column])


def downgrade() -> None:
    op.drop_table(TABLE)
