"""The end of a batch and electronic signatures: who ended a batch and why, the closure's final
dry cell weight, harvest volume and author, and the ``signature`` table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Written out in full (no create_all); a test checks it against eln.models. The new columns of
existing tables are plain nullable columns (no foreign key), which SQLite adds in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
LABEL = 128
HASH = 64
TABLE = "signature"


def upgrade() -> None:
    op.add_column("batch", sa.Column("ended_by", sa.String(NAME), nullable=True))
    op.add_column("batch", sa.Column("end_reason", sa.Text(), nullable=True))
    op.add_column("batch_closure", sa.Column("final_dcw_g_per_l", sa.Float(), nullable=True))
    op.add_column("batch_closure", sa.Column("harvest_volume_ml", sa.Float(), nullable=True))
    op.add_column("batch_closure", sa.Column("recorded_by", sa.String(NAME), nullable=True))
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(NAME), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("meaning", sa.String(16), nullable=False),
        sa.Column("signer", sa.String(NAME), nullable=False),
        sa.Column("printed_name", sa.String(LABEL), nullable=False),
        sa.Column("signer_role", sa.String(16), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("time_zone", sa.String(NAME), nullable=False),
        sa.Column("content_hash", sa.String(HASH), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=f"fk_{TABLE}_batch_id_batch"),
        sa.ForeignKeyConstraint(["signer"], ["operator.name"], name=f"fk_{TABLE}_signer_operator"),
    )
    for column in ("batch_id", "signer"):
        op.create_index(f"ix_{TABLE}_{column}", TABLE, [column])
    op.create_index(f"ix_{TABLE}_table_name_record_id", TABLE, ["table_name", "record_id"])


def downgrade() -> None:
    op.drop_table(TABLE)
    with op.batch_alter_table("batch_closure") as closure:
        closure.drop_column("recorded_by")
        closure.drop_column("harvest_volume_ml")
        closure.drop_column("final_dcw_g_per_l")
    with op.batch_alter_table("batch") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("ended_by")
