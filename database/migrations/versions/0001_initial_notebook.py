"""Initial notebook schema: operators, batches and their records, the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Every table is written out here (no create_all) so the schema is exactly what this file says,
whatever the models later become. A test checks it against eln.models after upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 64
LABEL = 128
HASH = 64
GENESIS_HASH = "0" * 64


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int | None = None, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length) if length else sa.Text(), nullable=nullable)


def _number(name: str, nullable: bool = True) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def _person(table: str, name: str, nullable: bool = False) -> list[Any]:
    return [
        sa.Column(name, sa.String(NAME), nullable=nullable),
        sa.ForeignKeyConstraint([name], ["operator.name"], name=f"fk_{table}_{name}_operator"),
    ]


def _batch_ref(table: str, nullable: bool = False) -> list[Any]:
    return [
        sa.Column("batch_id", sa.Integer(), nullable=nullable),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"], name=f"fk_{table}_batch_id_batch"),
    ]


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    op.create_table(
        "operator",
        _id(),
        sa.Column("name", sa.String(NAME), nullable=False),
        _text("display_name", LABEL),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pin_hash", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        _pk("operator"),
        sa.UniqueConstraint("name", name="uq_operator_name"),
    )

    op.create_table(
        "batch",
        _id(),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(1), nullable=False),
        _text("strain", LABEL),
        _text("medium_lot", NAME),
        _text("vessel", NAME),
        _text("reactor_id", NAME),
        *_person("batch", "operator"),
        sa.Column("status", sa.String(16), nullable=False),
        _when("created_at"),
        _when("inoculated_at", nullable=True),
        _when("ended_at", nullable=True),
        _text("notes"),
        _pk("batch"),
        sa.UniqueConstraint("number", name="uq_batch_number"),
    )
    _index("batch", "operator")

    op.create_table(
        "media_preparation",
        _id(),
        *_batch_ref("media_preparation"),
        _when("prepared_at"),
        *_person("media_preparation", "prepared_by"),
        sa.Column("recipe", sa.JSON(), nullable=False),
        _text("autoclave_cycle", NAME),
        sa.Column("sterility_ok", sa.Boolean(), nullable=True),
        _text("notes"),
        _pk("media_preparation"),
    )
    _index("media_preparation", "batch_id")
    _index("media_preparation", "prepared_by")

    op.create_table(
        "inoculum",
        _id(),
        *_batch_ref("inoculum"),
        _when("recorded_at"),
        *_person("inoculum", "recorded_by"),
        _number("od600_raw", nullable=False),
        _number("dilution", nullable=False),
        _number("od600", nullable=False),
        _number("volume_ml", nullable=False),
        sa.Column("microscopy_clean", sa.Boolean(), nullable=False),
        sa.Column("go", sa.Boolean(), nullable=False),
        _text("notes"),
        _pk("inoculum"),
        sa.UniqueConstraint("batch_id", name="uq_inoculum_batch_id"),
    )
    _index("inoculum", "recorded_by")

    op.create_table(
        "calibration_record",
        _id(),
        sa.Column("channel", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(NAME), nullable=False),
        *_batch_ref("calibration_record", nullable=True),
        _when("performed_at"),
        *_person("calibration_record", "performed_by"),
        sa.Column("measured", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        _when("valid_until", nullable=True),
        _text("notes"),
        _text("override_reason", nullable=True),
        _pk("calibration_record"),
    )
    _index("calibration_record", "channel")
    _index("calibration_record", "batch_id")
    _index("calibration_record", "performed_by")

    op.create_table(
        "sample",
        _id(),
        *_batch_ref("sample"),
        _number("sop_timepoint_h"),
        _when("taken_at"),
        _when("entered_at"),
        _number("od_raw", nullable=False),
        _number("dilution", nullable=False),
        _number("od600", nullable=False),
        _number("dcw_g_per_l"),
        _number("filter_tare_mg"),
        _number("filter_dry_mg"),
        _number("filter_volume_ml"),
        sa.Column("microscopy_clean", sa.Boolean(), nullable=True),
        _text("microscopy_text"),
        _number("glycerol_g_per_l"),
        _number("predicted_od600"),
        *_person("sample", "entered_by"),
        _pk("sample"),
    )
    _index("sample", "batch_id")
    _index("sample", "entered_by")

    op.create_table(
        "deviation",
        _id(),
        *_batch_ref("deviation"),
        sa.Column("level", sa.Integer(), nullable=False),
        _text("category", NAME),
        _text("title", LABEL * 2),
        _text("description"),
        _when("started_at"),
        _when("ended_at", nullable=True),
        _text("root_cause"),
        _text("corrective_action"),
        _text("impact"),
        sa.Column("status", sa.String(16), nullable=False),
        *_person("deviation", "reported_by"),
        *_person("deviation", "reviewed_by", nullable=True),
        _when("reviewed_at", nullable=True),
        _pk("deviation"),
    )
    _index("deviation", "batch_id")
    _index("deviation", "reported_by")
    _index("deviation", "reviewed_by")

    op.create_table(
        "process_change",
        _id(),
        *_batch_ref("process_change"),
        _text("parameter", NAME),
        _text("old_value", NAME),
        _text("new_value", NAME),
        _when("planned_at"),
        _text("reason"),
        *_person("process_change", "requested_by"),
        *_person("process_change", "approved_by", nullable=True),
        _when("approved_at", nullable=True),
        _pk("process_change"),
    )
    _index("process_change", "batch_id")
    _index("process_change", "requested_by")
    _index("process_change", "approved_by")

    op.create_table(
        "batch_closure",
        _id(),
        *_batch_ref("batch_closure"),
        _when("closed_at"),
        _number("final_od600"),
        _number("runtime_h"),
        _number("depletion_time_h"),
        _number("do_spike_time_h"),
        _number("base_used_ml"),
        _text("outcome", NAME),
        _text("harvest"),
        _text("missing_samples_reason", nullable=True),
        *_person("batch_closure", "signed_off_by", nullable=True),
        _when("signed_off_at", nullable=True),
        _pk("batch_closure"),
        sa.UniqueConstraint("batch_id", name="uq_batch_closure_batch_id"),
    )
    _index("batch_closure", "signed_off_by")

    op.create_table(
        "alarm_event",
        _id(),
        *_batch_ref("alarm_event", nullable=True),
        sa.Column("reactor", sa.String(NAME), nullable=False),
        sa.Column("rule", sa.String(LABEL), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        _text("channel", NAME, nullable=True),
        _number("value"),
        _text("message"),
        _when("occurred_at"),
        _text("actor", NAME, nullable=True),
        _pk("alarm_event"),
    )
    _index("alarm_event", "batch_id")
    _index("alarm_event", "reactor")

    op.create_table(
        "note",
        _id(),
        *_batch_ref("note"),
        *_person("note", "author"),
        _text("text"),
        _when("created_at"),
        _pk("note"),
    )
    _index("note", "batch_id")
    _index("note", "author")

    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        _when("at"),
        sa.Column("actor", sa.String(NAME), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("table_name", sa.String(NAME), nullable=False),
        sa.Column("record_id", sa.String(NAME), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(HASH), nullable=False),
        sa.Column("hash", sa.String(HASH), nullable=False),
        _pk("audit_entry"),
        sa.UniqueConstraint("hash", name="uq_audit_entry_hash"),
    )
    _index("audit_entry", "table_name", "record_id")

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(HASH), nullable=False),
        _pk("audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    """The database itself refuses UPDATE and DELETE on audit entries."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION bptwin_audit_entry_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit entries are append-only (% refused)', TG_OP;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
            "FOR EACH ROW EXECUTE FUNCTION bptwin_audit_entry_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entry_no_{verb.lower()} BEFORE {verb} ON audit_entry "
                f"BEGIN SELECT RAISE(ABORT, 'audit entries are append-only ({verb} refused)'); "
                "END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION IF EXISTS bptwin_audit_entry_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entry_no_delete")
    for table in (
        "audit_head",
        "audit_entry",
        "note",
        "alarm_event",
        "batch_closure",
        "process_change",
        "deviation",
        "sample",
        "calibration_record",
        "inoculum",
        "media_preparation",
        "batch",
        "operator",
    ):
        op.drop_table(table)
