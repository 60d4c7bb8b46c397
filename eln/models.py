"""The lab notebook's tables: batch-centric, every change audited (see eln.audit).

All datetimes are timezone-aware UTC; enums are stored as their string values. The schema is
created and changed only by the migrations in ``database/migrations`` (never ``create_all`` in
the app); a test checks that this metadata and the migrated schema agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlmodel import Field, SQLModel

from bptwin.eln.columns import EnumString, UTCDateTime, utc_now
from bptwin.eln.states import AcceptanceDecision as AcceptanceDecision
from bptwin.eln.states import AuditAction as AuditAction
from bptwin.eln.states import BatchStatus as BatchStatus
from bptwin.eln.states import CampaignPhase as CampaignPhase
from bptwin.eln.states import DeviationStatus as DeviationStatus
from bptwin.eln.states import OperatorRole as OperatorRole
from bptwin.eln.states import SignatureMeaning as SignatureMeaning

# Named constraints, so migrations and this metadata name them identically on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 64
LABEL_LENGTH = 128
HASH_LENGTH = 64


class NotebookBase(SQLModel):
    """Base of every notebook table; its own metadata keeps other packages' tables apart."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditedTable(NotebookBase):
    """Marker base: inserts, updates and deletes of these tables are written to the audit trail."""

    audited: ClassVar[bool] = True


def _when(nullable: bool = False, **kwargs: Any) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime(), nullable=True, **kwargs)
    return Field(default_factory=utc_now, sa_type=UTCDateTime(), nullable=False, **kwargs)


def _person(nullable: bool = False, **kwargs: Any) -> Any:
    """A reference to an operator by login name (names are unique and never reused)."""
    return Field(
        default=None if nullable else ...,
        sa_type=String(NAME_LENGTH),
        foreign_key="operator.name",
        nullable=nullable,
        index=True,
        **kwargs,
    )


def _batch_ref(nullable: bool = False, unique: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_type=Integer,
        foreign_key="batch.id",
        nullable=nullable,
        index=not unique,
        unique=unique,
    )


def _text(length: int | None = None, nullable: bool = False) -> Any:
    sa_type = String(length) if length else Text
    if nullable:
        return Field(default=None, sa_type=sa_type, nullable=True)
    return Field(default="", sa_type=sa_type, nullable=False)


def _number(nullable: bool = True) -> Any:
    return Field(default=None if nullable else ..., sa_type=Float, nullable=nullable)


class Operator(AuditedTable, table=True):
    """A person who may sign notebook entries; the PIN is stored only as a scrypt hash."""

    __tablename__ = "operator"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(NAME_LENGTH), unique=True, nullable=False)
    display_name: str = _text(LABEL_LENGTH)
    role: OperatorRole = Field(
        default=OperatorRole.OPERATOR, sa_type=EnumString(OperatorRole, 16), nullable=False
    )
    pin_hash: str = Field(sa_type=String(256), nullable=False)
    active: bool = Field(default=True, sa_type=Boolean, nullable=False)
    created_at: datetime = _when()
    # Consecutive wrong PINs and the lockout they caused (eln.operators); stored and audited,
    # so neither a restart nor a quiet UPDATE resets them unseen.
    failed_pins: int = Field(
        default=0,
        sa_type=Integer,
        nullable=False,
        sa_column_kwargs={"server_default": text("0")},
    )
    locked_until: datetime | None = _when(nullable=True)


class Batch(AuditedTable, table=True):
    """One fermentation run; everything else in the notebook hangs off a batch."""

    __tablename__ = "batch"

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(sa_type=Integer, unique=True, nullable=False)
    phase: CampaignPhase = Field(sa_type=EnumString(CampaignPhase, 1), nullable=False)
    strain: str = _text(LABEL_LENGTH)
    medium_lot: str = _text(NAME_LENGTH)
    vessel: str = _text(NAME_LENGTH)
    reactor_id: str = _text(NAME_LENGTH)
    operator: str = _person()
    status: BatchStatus = Field(
        default=BatchStatus.SETUP, sa_type=EnumString(BatchStatus, 16), nullable=False
    )
    created_at: datetime = _when()
    inoculated_at: datetime | None = _when(nullable=True)
    ended_at: datetime | None = _when(nullable=True)
    notes: str = _text()
    # Who ended or aborted the run and why (an abort needs the reason); login names without a
    # foreign key, so the migration adds them to an existing table on SQLite too.
    ended_by: str | None = _text(NAME_LENGTH, nullable=True)
    end_reason: str | None = _text(nullable=True)


class MediaPreparation(AuditedTable, table=True):
    """Medium made up for a batch: recipe amounts, autoclave cycle, sterility check."""

    __tablename__ = "media_preparation"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    prepared_at: datetime = _when()
    prepared_by: str = _person()
    recipe: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    autoclave_cycle: str = _text(NAME_LENGTH)
    sterility_ok: bool | None = Field(default=None, sa_type=Boolean, nullable=True)
    notes: str = _text()


class Inoculum(AuditedTable, table=True):
    """The one inoculum of a batch, with its go/no-go against the OD600 window."""

    __tablename__ = "inoculum"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref(unique=True)
    recorded_at: datetime = _when()
    recorded_by: str = _person()
    od600_raw: float = _number(nullable=False)
    dilution: float = Field(default=1.0, sa_type=Float, nullable=False)
    od600: float = _number(nullable=False)
    volume_ml: float = _number(nullable=False)
    microscopy_clean: bool = Field(sa_type=Boolean, nullable=False)
    go: bool = Field(sa_type=Boolean, nullable=False)
    notes: str = _text()


class CalibrationRecord(AuditedTable, table=True):
    """One sensor calibration: what was measured, what was computed, pass/fail."""

    __tablename__ = "calibration_record"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(sa_type=String(NAME_LENGTH), nullable=False, index=True)
    kind: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    batch_id: int | None = _batch_ref(nullable=True)
    performed_at: datetime = _when()
    performed_by: str = _person()
    measured: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    results: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    passed: bool = Field(sa_type=Boolean, nullable=False)
    valid_until: datetime | None = _when(nullable=True)
    notes: str = _text()
    override_reason: str | None = _text(nullable=True)


class Sample(AuditedTable, table=True):
    """An offline sample: OD600, dry cell weight, microscopy, glycerol.

    A lab without a photometer records dry weights only: ``od_raw`` and ``od600`` are then
    None, and the CHECK keeps a sample from having neither an OD600 nor a dry weight.
    """

    __tablename__ = "sample"
    __table_args__ = (
        CheckConstraint("od600 IS NOT NULL OR dcw_g_per_l IS NOT NULL", name="od600_or_dry_weight"),
    )

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    # Hours after inoculation in the SOP schedule (0, 2, 4, 6, 8, 12, 16); None = the
    # depletion sample or an extra one.
    sop_timepoint_h: float | None = _number()
    taken_at: datetime = _when()
    entered_at: datetime = _when()
    od_raw: float | None = _number()
    dilution: float = Field(default=1.0, sa_type=Float, nullable=False)
    od600: float | None = _number()
    dcw_g_per_l: float | None = _number()
    filter_tare_mg: float | None = _number()
    filter_dry_mg: float | None = _number()
    filter_volume_ml: float | None = _number()
    microscopy_clean: bool | None = Field(default=None, sa_type=Boolean, nullable=True)
    microscopy_text: str = _text()
    glycerol_g_per_l: float | None = _number()
    predicted_od600: float | None = _number()
    entered_by: str = _person()


class Deviation(AuditedTable, table=True):
    """Something that did not go to plan, graded 1 (minor) to 3 (critical)."""

    __tablename__ = "deviation"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    level: int = Field(sa_type=Integer, nullable=False)
    category: str = _text(NAME_LENGTH)
    title: str = _text(LABEL_LENGTH * 2)
    description: str = _text()
    started_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True)
    root_cause: str = _text()
    corrective_action: str = _text()
    impact: str = _text()
    status: DeviationStatus = Field(
        default=DeviationStatus.OPEN, sa_type=EnumString(DeviationStatus, 16), nullable=False
    )
    reported_by: str = _person()
    reviewed_by: str | None = _person(nullable=True)
    reviewed_at: datetime | None = _when(nullable=True)


class ProcessChange(AuditedTable, table=True):
    """A planned change of a process parameter during a batch, approved by a supervisor."""

    __tablename__ = "process_change"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    parameter: str = _text(NAME_LENGTH)
    old_value: str = _text(NAME_LENGTH)
    new_value: str = _text(NAME_LENGTH)
    planned_at: datetime = _when()
    reason: str = _text()
    requested_by: str = _person()
    approved_by: str | None = _person(nullable=True)
    approved_at: datetime | None = _when(nullable=True)


class BatchClosure(AuditedTable, table=True):
    """The end-of-batch record and its sign-off (a supervisor's electronic signature, see
    eln.signatures: once signed the record changes only under a new signature)."""

    __tablename__ = "batch_closure"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref(unique=True)
    closed_at: datetime = _when()
    final_od600: float | None = _number()
    runtime_h: float | None = _number()
    depletion_time_h: float | None = _number()
    do_spike_time_h: float | None = _number()
    base_used_ml: float | None = _number()
    outcome: str = _text(NAME_LENGTH)
    harvest: str = _text()
    missing_samples_reason: str | None = _text(nullable=True)
    signed_off_by: str | None = _person(nullable=True)
    signed_off_at: datetime | None = _when(nullable=True)
    final_dcw_g_per_l: float | None = _number()
    harvest_volume_ml: float | None = _number()
    recorded_by: str | None = _text(NAME_LENGTH, nullable=True)


class AlarmEvent(AuditedTable, table=True):
    """One alarm life-cycle transition (raised, acknowledged, cleared, shelved...)."""

    __tablename__ = "alarm_event"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int | None = _batch_ref(nullable=True)
    reactor: str = Field(sa_type=String(NAME_LENGTH), nullable=False, index=True)
    rule: str = Field(sa_type=String(LABEL_LENGTH), nullable=False)
    priority: str = Field(sa_type=String(16), nullable=False)
    state: str = Field(sa_type=String(32), nullable=False)
    channel: str | None = _text(NAME_LENGTH, nullable=True)
    value: float | None = _number()
    message: str = _text()
    occurred_at: datetime = _when()
    # None for transitions the engine makes on its own (raise, return to normal).
    actor: str | None = _text(NAME_LENGTH, nullable=True)


class Note(AuditedTable, table=True):
    """A free-text notebook entry."""

    __tablename__ = "note"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    author: str = _person()
    text: str = _text()
    created_at: datetime = _when()


class BatchAcceptance(AuditedTable, table=True):
    """A supervisor's decision on a batch for training, with the evaluation it was made on.

    Append-only history per batch: the newest row is the decision in force
    (see eln.acceptance_service).
    """

    __tablename__ = "batch_acceptance"

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = _batch_ref()
    decision: AcceptanceDecision = Field(sa_type=EnumString(AcceptanceDecision, 8), nullable=False)
    reason: str = _text()
    # The automatic verdict (pass, fail, incomplete) and the criteria with their evidence.
    verdict: str = Field(sa_type=String(16), nullable=False)
    evaluation: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    decided_by: str = _person()
    decided_at: datetime = _when()


class Signature(AuditedTable, table=True):
    """An electronic signature: who signed which record, when, meaning what, over which content.

    ``content`` is the canonical image of the signed row and ``content_hash`` its SHA-256, so
    a later change of the row (or of this one) shows. A signature is never deleted: when a
    signed record is changed under a new signature the old one gets ``superseded_at`` and
    ``superseded_by`` (see eln.signatures).
    """

    __tablename__ = "signature"
    __table_args__ = (Index("ix_signature_table_name_record_id", "table_name", "record_id"),)

    id: int | None = Field(default=None, primary_key=True)
    table_name: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    record_id: int = Field(sa_type=Integer, nullable=False)
    batch_id: int | None = _batch_ref(nullable=True)
    meaning: SignatureMeaning = Field(sa_type=EnumString(SignatureMeaning, 16), nullable=False)
    signer: str = _person()
    printed_name: str = _text(LABEL_LENGTH)
    signer_role: OperatorRole = Field(sa_type=EnumString(OperatorRole, 16), nullable=False)
    signed_at: datetime = _when()
    # The station's local time at signing is signed_at + this offset, in zone ``time_zone``.
    utc_offset_minutes: int = Field(default=0, sa_type=Integer, nullable=False)
    time_zone: str = _text(NAME_LENGTH)
    content_hash: str = Field(sa_type=String(HASH_LENGTH), nullable=False)
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    reason: str = _text()
    superseded_at: datetime | None = _when(nullable=True)
    superseded_by: int | None = Field(default=None, sa_type=Integer, nullable=True)


class NotebookWriteKey(NotebookBase, table=True):
    """The key of a spooled notebook write (eln.write_queue), stored in the write's own transaction.

    A write whose commit outcome was lost with the connection is queued with its key; on
    replay a stored key means the write already happened, so it is not made twice. Bookkeeping,
    not notebook data: not audited.
    """

    __tablename__ = "notebook_write_key"

    key: str = Field(sa_type=String(NAME_LENGTH), primary_key=True)
    method: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    applied_at: datetime = _when()


class AuditEntry(NotebookBase, table=True):
    """One audited change; append-only, chained by hashes (see eln.audit)."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_table_name_record_id", "table_name", "record_id"),)

    # Assigned by eln.audit under the chain lock, so ids have no gaps.
    id: int = Field(sa_type=Integer, primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _when()
    actor: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    action: AuditAction = Field(sa_type=EnumString(AuditAction, 8), nullable=False)
    table_name: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    record_id: str = Field(sa_type=String(NAME_LENGTH), nullable=False)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    prev_hash: str = Field(sa_type=String(HASH_LENGTH), nullable=False)
    hash: str = Field(sa_type=String(HASH_LENGTH), nullable=False, unique=True)
    # HMAC of ``hash`` with the station's audit key (eln.audit_seal); None when written
    # without the key (before migration 0005, or a process not given it).
    seal: str | None = Field(default=None, sa_type=String(HASH_LENGTH), nullable=True)


class AuditHead(NotebookBase, table=True):
    """The single row holding the chain's last id and hash; locking it serialises writers."""

    __tablename__ = "audit_head"

    id: int = Field(
        default=1, sa_type=Integer, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    last_id: int = Field(default=0, sa_type=Integer, nullable=False)
    last_hash: str = Field(sa_type=String(HASH_LENGTH), nullable=False)


AUDITED_TABLES: tuple[type[AuditedTable], ...] = (
    Operator,
    Batch,
    MediaPreparation,
    Inoculum,
    CalibrationRecord,
    Sample,
    Deviation,
    ProcessChange,
    BatchClosure,
    AlarmEvent,
    Note,
    BatchAcceptance,
    Signature,
)


class ApiToken(AuditedTable, table=True):
    """One API token: who made it, what for, whether it is revoked; never the token itself."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(default="", sa_type=String(LABEL_LENGTH), nullable=False)
    token_hash: str = Field(sa_type=String(64), nullable=False, unique=True)
    shown_prefix: str = Field(sa_type=String(16), nullable=False)
    created_by: str = Field(
        sa_type=String(NAME_LENGTH), foreign_key="operator.name", nullable=False, index=True
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime(), nullable=False)
    revoked_by: str | None = Field(
        default=None, sa_type=String(NAME_LENGTH), foreign_key="operator.name", nullable=True
    )
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime(), nullable=True)


# Importing the models switches the audit trail on for every session.
import bptwin.eln.audit  # noqa: E402, F401

# Tables kept in their own modules register on this metadata (and in AUDITED_TABLES) here.
from bptwin.eln import control_records as _control_records  # noqa: E402, F401

# Importing the models also switches on the guard that refuses changes to signed rows.
from bptwin.eln import signature_guard as _signature_guard  # noqa: E402, F401
