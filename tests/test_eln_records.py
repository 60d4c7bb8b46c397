"""The frozen views screens read (eln/records.py) against the notebook's tables."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from bptwin.eln import models
from bptwin.eln.records import (
    AlarmEventView,
    BatchView,
    CalibrationView,
    ClosureView,
    DeviationView,
    InoculumView,
    NoteView,
    OperatorView,
    SampleView,
    view_of,
)

PAIRS = [
    (OperatorView, models.Operator, {"pin_hash"}),  # the PIN hash never leaves the notebook
    (BatchView, models.Batch, set()),
    (InoculumView, models.Inoculum, set()),
    (CalibrationView, models.CalibrationRecord, set()),
    (SampleView, models.Sample, set()),
    (DeviationView, models.Deviation, set()),
    (ClosureView, models.BatchClosure, set()),
    (NoteView, models.Note, set()),
    (AlarmEventView, models.AlarmEvent, set()),
]


@pytest.mark.parametrize(
    ("view", "table", "left_out"), PAIRS, ids=lambda p: getattr(p, "__name__", "")
)
def test_every_view_has_every_column_of_its_table(view: type, table: type, left_out: set) -> None:
    """A column added to a table without its view would silently not reach the screens."""
    columns = {column.name for column in table.__table__.columns}  # type: ignore[attr-defined]
    assert {field.name for field in dataclasses.fields(view)} == columns - left_out


def test_a_view_is_a_frozen_copy_and_its_tables_are_read_only() -> None:
    at = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    row = models.CalibrationRecord(
        id=3,
        channel="ph",
        kind="two_point",
        performed_at=at,
        performed_by="olga",
        measured={"e7_mv": 1.5},
        results={"slope_pct": 98.7},
        passed=True,
    )
    view = view_of(CalibrationView, row)
    row.results["slope_pct"] = 50.0  # the row changes later: the view does not
    assert view.results["slope_pct"] == 98.7 and view.performed_at == at
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.passed = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        view.measured["e7_mv"] = 0.0  # type: ignore[index]
