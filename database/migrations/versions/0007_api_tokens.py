"""Tokens of the read-only HTTP API: only their SHA-256, who made and who revoked them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Written out in full (no create_all), like the others; a test checks it against
eln.api_tokens.ApiToken.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
LABEL = 128
TABLE = "api_token"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("label", sa.String(LABEL), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("shown_prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(NAME), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(NAME), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.UniqueConstraint("token_hash", name=f"uq_{TABLE}_token_hash"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["operator.name"], name=f"fk_{TABLE}_created_by_operator"
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["operator.name"], name=f"fk_{TABLE}_revoked_by_operator"
        ),
    )
    op.create_index(f"ix_{TABLE}_created_by", TABLE, ["created_by"])


def downgrade() -> None:
    op.drop_table(TABLE)
