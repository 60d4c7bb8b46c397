"""Frozen copies of notebook rows: what screens and the acceptance rules read.

Each view has the fields of its table (eln.models) but no database behind it: it cannot be
changed, lazy-loaded or written back, and it imports no SQL. Times are timezone-aware UTC;
name -> value tables (calibration measurements and results) are read-only mappings. The
operator's view leaves the PIN hash out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from bptwin.eln.states import (
    BatchStatus,
    CampaignPhase,
    DeviationStatus,
    OperatorRole,
    SignatureMeaning,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ViewT = TypeVar("ViewT", bound="DataclassInstance")


def view_of(view: type[ViewT], row: object) -> ViewT:
    """A frozen ``view`` of ``row`` (a notebook row, or anything with the view's fields)."""
    values: dict[str, Any] = {}
    for field in fields(view):
        value = getattr(row, field.name)
        values[field.name] = MappingProxyType(dict(value)) if isinstance(value, dict) else value
    return view(**values)


@dataclass(frozen=True, slots=True)
class OperatorView:
    id: int | None
    name: str
    display_name: str
    role: OperatorRole
    active: bool
    created_at: datetime
    # Wrong PINs in a row and the end of the lockout they caused (eln.operators).
    failed_pins: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class BatchView:
    id: int | None
    number: int
    phase: CampaignPhase
    strain: str
    medium_lot: str
    vessel: str
    reactor_id: str
    operator: str
    status: BatchStatus
    created_at: datetime
    inoculated_at: datetime | None
    ended_at: datetime | None
    notes: str
    ended_by: str | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class InoculumView:
    id: int | None
    batch_id: int
    recorded_at: datetime
    recorded_by: str
    od600_raw: float
    dilution: float
    od600: float
    volume_ml: float
    microscopy_clean: bool
    go: bool
    notes: str


@dataclass(frozen=True, slots=True)
class CalibrationView:
    id: int | None
    channel: str
    kind: str
    batch_id: int | None
    performed_at: datetime
    performed_by: str
    measured: Mapping[str, Any]
    results: Mapping[str, Any]
    passed: bool
    valid_until: datetime | None
    notes: str
    override_reason: str | None


@dataclass(frozen=True, slots=True)
class SampleView:
    id: int | None
    batch_id: int
    sop_timepoint_h: float | None
    taken_at: datetime
    entered_at: datetime
    od_raw: float | None  # None: a dry-weight-only sample (no photometer)
    dilution: float
    od600: float | None
    dcw_g_per_l: float | None
    filter_tare_mg: float | None
    filter_dry_mg: float | None
    filter_volume_ml: float | None
    microscopy_clean: bool | None
    microscopy_text: str
    glycerol_g_per_l: float | None
    predicted_od600: float | None
    entered_by: str


@dataclass(frozen=True, slots=True)
class DeviationView:
    id: int | None
    batch_id: int
    level: int
    category: str
    title: str
    description: str
    started_at: datetime
    ended_at: datetime | None
    root_cause: str
    corrective_action: str
    impact: str
    status: DeviationStatus
    reported_by: str
    reviewed_by: str | None
    reviewed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClosureView:
    id: int | None
    batch_id: int
    closed_at: datetime
    final_od600: float | None
    runtime_h: float | None
    depletion_time_h: float | None
    do_spike_time_h: float | None
    base_used_ml: float | None
    outcome: str
    harvest: str
    missing_samples_reason: str | None
    signed_off_by: str | None
    signed_off_at: datetime | None
    final_dcw_g_per_l: float | None = None
    harvest_volume_ml: float | None = None
    recorded_by: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessChangeView:
    id: int | None
    batch_id: int
    parameter: str
    old_value: str
    new_value: str
    planned_at: datetime
    reason: str
    requested_by: str
    approved_by: str | None
    approved_at: datetime | None


@dataclass(frozen=True, slots=True)
class MediaPreparationView:
    id: int | None
    batch_id: int
    prepared_at: datetime
    prepared_by: str
    recipe: Mapping[str, Any]
    autoclave_cycle: str
    sterility_ok: bool | None
    notes: str


@dataclass(frozen=True, slots=True)
class SignatureView:
    """An electronic signature's manifestation and what it is bound to (not its content)."""

    id: int | None
    table_name: str
    record_id: int
    batch_id: int | None
    meaning: SignatureMeaning
    signer: str
    printed_name: str
    signer_role: OperatorRole
    signed_at: datetime
    utc_offset_minutes: int
    time_zone: str
    content_hash: str
    reason: str
    superseded_at: datetime | None
    superseded_by: int | None


@dataclass(frozen=True, slots=True)
class NoteView:
    id: int | None
    batch_id: int
    author: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AlarmEventView:
    id: int | None
    batch_id: int | None
    reactor: str
    rule: str
    priority: str
    state: str
    channel: str | None
    value: float | None
    message: str
    occurred_at: datetime
    actor: str | None
