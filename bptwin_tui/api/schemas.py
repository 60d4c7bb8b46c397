"""What the API answers, as pydantic models: they make the OpenAPI schema and check each answer.

Each model copies the fields of a frozen notebook record (eln.records) or registry entry that a
LIMS needs; operators' PIN hashes and tokens' hashes have no model, so they can never be sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    """Every refusal: what is wrong, and which parameter, when one is to blame."""

    error: str = Field(description="what is wrong, in plain words")
    parameter: str | None = Field(None, description="the query or path parameter at fault")


class BatchOut(_Out):
    number: int
    phase: str
    strain: str
    medium_lot: str
    vessel: str
    reactor_id: str
    operator: str
    status: str
    created_at: datetime
    inoculated_at: datetime | None
    ended_at: datetime | None
    notes: str


class SampleOut(_Out):
    id: int | None
    sop_timepoint_h: float | None
    taken_at: datetime
    entered_at: datetime
    od_raw: float | None  # None: a sample weighed for dry weight only
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


class DeviationOut(_Out):
    id: int | None
    level: int
    category: str
    title: str
    description: str
    started_at: datetime
    ended_at: datetime | None
    root_cause: str
    corrective_action: str
    impact: str
    status: str
    reported_by: str
    reviewed_by: str | None
    reviewed_at: datetime | None


class CalibrationOut(_Out):
    id: int | None
    channel: str
    kind: str
    batch_number: int | None = Field(None, description="None for a bench (unbound) calibration")
    performed_at: datetime
    performed_by: str
    measured: dict[str, Any]
    results: dict[str, Any]
    passed: bool
    valid_until: datetime | None
    notes: str
    override_reason: str | None


class AlarmEventOut(_Out):
    id: int | None
    batch_number: int | None
    reactor: str
    rule: str
    priority: str
    state: str
    channel: str | None
    value: float | None
    message: str
    occurred_at: datetime
    actor: str | None


class AcceptanceDecisionOut(_Out):
    id: int | None
    batch_number: int
    decision: str
    reason: str
    verdict: str = Field(description="the automatic verdict: pass, fail or incomplete")
    evaluation: dict[str, Any] = Field(description="the criteria and their evidence")
    decided_by: str
    decided_at: datetime
    in_force: bool = Field(description="true for the newest decision of its batch")


class ModelVersionOut(BaseModel):
    version: str
    registry: str = Field(description="'shipped' (the repository's models/) or 'user'")
    current: bool = Field(description="the version this registry has in service")
    created: str
    target: str
    label: str
    training_batches: list[int]
    holdout_batches: list[int]
    holdout_mre: float | None = Field(None, description="mean relative error on the hold-out")
    data_fingerprint: str
    pipeline_fingerprint: str
    notes: str


class PromotionOut(BaseModel):
    registry: str
    version: str
    previous: str | None
    when: str
    reason: str


class ModelRegistryOut(BaseModel):
    versions: list[ModelVersionOut]
    promotions: list[PromotionOut]
    problems: list[str] = Field(description="registry entries that could not be read, and why")


class ReactorOut(BaseModel):
    reactor: str
    configured: bool = Field(description="listed in [station] reactors")
    channels: list[str] = Field(description="channels holding data in the time-series store")


class ReadingOut(BaseModel):
    ts: str = Field(description="UTC time, ISO 8601 with milliseconds")
    value: float | None = Field(description="null when the sensor gave no usable value")
    quality: str = Field(description="good, uncertain or bad")


class ReadingsPageOut(BaseModel):
    reactor: str
    channel: str
    unit: str
    start: str = Field(description="the range asked for, as UTC ISO 8601")
    end: str
    count: int = Field(description="readings on this page")
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page"
    )
    readings: list[ReadingOut]


class HealthOut(BaseModel):
    status: str = Field(description="ok, degraded or unhealthy")
    problems: list[str] = Field(default_factory=list)
