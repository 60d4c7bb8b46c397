"""Control path records: recommendations, actuations and supervisor authorisations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Written out in full (no create_all), like 0001; a test checks it against eln.control_records.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
LABEL = 128
TABLE = "control_action"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reactor", sa.String(NAME), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("parameter", sa.String(NAME), nullable=True),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("current_value", sa.Float(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("rule", sa.String(LABEL), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("mode", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=True),
        sa.Column("refusal", sa.String(1000), nullable=True),
        sa.Column("topic", sa.String(1024), nullable=True),
        sa.Column("supervisor", sa.String(NAME), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=f"fk_{TABLE}_batch_id_batch"),
        sa.ForeignKeyConstraint(
            ["supervisor"], ["operator.name"], name=f"fk_{TABLE}_supervisor_operator"
        ),
    )
    for column in ("kind", "reactor", "batch_id", "supervisor"):
        op.create_index(f"ix_{TABLE}_{column}", TABLE, [column])


def downgrade() -> None:
    op.drop_table(TABLE)
