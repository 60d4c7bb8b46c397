"""Samples with a dry weight and no OD600: od_raw and od600 may be empty, never both with the
dry weight.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A lab that weighs its filters and has no photometer records its samples by dry weight (the
column ``dcw_g_per_l`` is there since 0001). The CHECK keeps a sample from carrying neither.
On SQLite the table is rebuilt (batch mode); on Postgres the columns are altered in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sample"
CHECK = "ck_sample_od600_or_dry_weight"
CONDITION = "od600 IS NOT NULL OR dcw_g_per_l IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as sample:
        sample.alter_column("od_raw", existing_type=sa.Float(), nullable=True)
        sample.alter_column("od600", existing_type=sa.Float(), nullable=True)
        sample.create_check_constraint(CHECK, sa.text(CONDITION))


def downgrade() -> None:
    """Back to OD600 required: refused while a sample has only a dry weight (it would be lost)."""
    connection = op.get_bind()
    without_od = connection.execute(
        sa.text(f"SELECT COUNT(*) FROM {TABLE} WHERE od600 IS NULL OR od_raw IS NULL")
    ).scalar_one()
    if without_od:
        raise CommandError(
            f"cannot go back below revision 0008: {without_od} sample(s) have a dry weight "
            "and no OD600, which the older schema cannot hold"
        )
    with op.batch_alter_table(TABLE) as sample:
        sample.drop_constraint(CHECK, type_="check")
        sample.alter_column("od600", existing_type=sa.Float(), nullable=False)
        sample.alter_column("od_raw", existing_type=sa.Float(), nullable=False)
