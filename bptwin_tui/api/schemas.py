"""What the API answers, as pydantic models: they make the OpenAPI schema and check each answer.

The notebook's answers are derived from its frozen records (eln.records) by :func:`out_model`,
so a field added to a record is answered without a second list; the registry's are written out.
Operators' PIN hashes and tokens' hashes have no model, so they can never be sent.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections import abc
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeAlias, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from bptwin.eln.records import AlarmEventView, BatchView, CalibrationView, DeviationView, SampleView

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    """Every refusal: what is wrong, and which parameter, when one is to blame."""

    error: str = Field(description="what is wrong, in plain words")
    parameter: str | None = Field(None, description="the query or path parameter at fault")


def _wire_type(annotation: Any) -> Any:
    """A record field's type as the API sends it: enums as their text, mappings as objects."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return str
    origin = get_origin(annotation)
    if origin is abc.Mapping:
        return dict[get_args(annotation)]  # type: ignore[misc]
    if origin in (Union, UnionType):
        return functools.reduce(operator.or_, (_wire_type(arg) for arg in get_args(annotation)))
    return annotation


def out_model(
    view: type[DataclassInstance],
    name: str,
    *,
    leave_out: tuple[str, ...] = (),
    replace: Mapping[str, tuple[str, Any]] | None = None,
) -> type[BaseModel]:
    """The answer model of a frozen notebook record: the record's fields, in its order.

    A field added to the record reaches the API by itself; ``leave_out`` names what the API
    does not publish (database ids; who ended a batch and why), ``replace`` swaps a field for
    another at its place (``batch_id`` -> ``batch_number``: the name and a pydantic field).
    """
    hints = get_type_hints(view)
    replace = replace or {}
    definitions: dict[str, Any] = {}
    for field in dataclasses.fields(view):
        if field.name in leave_out:
            continue
        if field.name in replace:
            new_name, definition = replace[field.name]
            definitions[new_name] = definition
            continue
        definitions[field.name] = (_wire_type(hints[field.name]), ...)
    model: type[BaseModel] = create_model(name, __base__=_Out, **definitions)
    return model


def out_of(model: type[BaseModel], view: DataclassInstance, **changes: Any) -> BaseModel:
    """The answer ``model`` for ``view``, with the fields it replaces given in ``changes``."""
    values = {field.name: getattr(view, field.name) for field in dataclasses.fields(view)}
    return model.model_validate({**values, **changes})


# The type checker cannot see fields made at run time: to it, each is a model (of any fields).
if TYPE_CHECKING:
    BatchOut: TypeAlias = BaseModel
    SampleOut: TypeAlias = BaseModel
    DeviationOut: TypeAlias = BaseModel
    CalibrationOut: TypeAlias = BaseModel
    AlarmEventOut: TypeAlias = BaseModel
else:
    BatchOut = out_model(BatchView, "BatchOut", leave_out=("id", "ended_by", "end_reason"))
    SampleOut = out_model(SampleView, "SampleOut", leave_out=("batch_id",))
    DeviationOut = out_model(DeviationView, "DeviationOut", leave_out=("batch_id",))
    CalibrationOut = out_model(
        CalibrationView,
        "CalibrationOut",
        replace={
            "batch_id": (
                "batch_number",
                (int | None, Field(None, description="None for a bench (unbound) calibration")),
            )
        },
    )
    AlarmEventOut = out_model(
        AlarmEventView, "AlarmEventOut", replace={"batch_id": ("batch_number", (int | None, ...))}
    )


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
