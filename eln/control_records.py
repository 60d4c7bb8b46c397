"""Notebook record of the control path: every recommendation, actuation, authorisation and
setpoint obeyed.

``ControlAction`` lives on the notebook's metadata (eln.models imports this module, so the table
is always registered with the others) and is audited like every notebook table. Written only
through ``bptwin.eln.control_service``; created by migration 0002.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy import Boolean, Float, Integer, String
from sqlmodel import Field

from bptwin.eln import models
from bptwin.eln.columns import EnumString, UTCDateTime, utc_now
from bptwin.eln.models import LABEL_LENGTH, NAME_LENGTH, AuditedTable


class ControlActionKind(str, Enum):
    RECOMMENDATION = "recommendation"  # advice shown on the dashboard (any mode)
    ACTUATION = "actuation"  # a setpoint sent, or refused (``sent`` false, ``refusal`` why)
    AUTHORISATION = "authorisation"  # a supervisor confirmed closed-loop control
    REVOCATION = "revocation"  # closed-loop control ended by hand
    COMMAND = "command"  # a verified setpoint obeyed by the reactor (the receiving side)


class ControlAction(AuditedTable, table=True):
    """One step of the control path, with the process numbers and the reason behind it."""

    __tablename__ = "control_action"

    id: int | None = Field(default=None, primary_key=True)
    kind: ControlActionKind = Field(
        sa_type=EnumString(ControlActionKind, 16), nullable=False, index=True
    )
    reactor: str = Field(sa_type=String(NAME_LENGTH), nullable=False, index=True)
    batch_id: int | None = Field(
        default=None, sa_type=Integer, foreign_key="batch.id", nullable=True, index=True
    )
    parameter: str | None = Field(default=None, sa_type=String(NAME_LENGTH), nullable=True)
    unit: str | None = Field(default=None, sa_type=String(16), nullable=True)
    current_value: float | None = Field(default=None, sa_type=Float, nullable=True)
    # Recommended value (recommendation) or the value sent / refused (actuation).
    value: float | None = Field(default=None, sa_type=Float, nullable=True)
    rule: str = Field(default="", sa_type=String(LABEL_LENGTH), nullable=False)
    reason: str = Field(default="", sa_type=String(2000), nullable=False)
    confidence: float | None = Field(default=None, sa_type=Float, nullable=True)
    mode: int = Field(default=0, sa_type=Integer, nullable=False)
    sent: bool | None = Field(default=None, sa_type=Boolean, nullable=True)
    refusal: str | None = Field(default=None, sa_type=String(1000), nullable=True)
    topic: str | None = Field(default=None, sa_type=String(1024), nullable=True)
    supervisor: str | None = Field(
        default=None,
        sa_type=String(NAME_LENGTH),
        foreign_key="operator.name",
        nullable=True,
        index=True,
    )
    valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime(), nullable=True)
    occurred_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime(), nullable=False)


# Every notebook table is audited; eln.models keeps the list (see test_audit).
if ControlAction not in models.AUDITED_TABLES:
    models.AUDITED_TABLES = (*models.AUDITED_TABLES, ControlAction)
