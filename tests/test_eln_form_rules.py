"""Property tests of the notebook's form checks: any input is cleaned or refused by name."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import CampaignPhase

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.lists(st.integers(), max_size=3),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone.utc)),
)


@given(anything)
def test_number_is_finite_and_in_range_or_refused(value: object) -> None:
    try:
        result = check.number("OD600", value, minimum=0.0, maximum=5.0)
    except NotebookValidationError as error:
        assert error.field == "OD600" and "OD600" in error.message
        return
    assert result is not None and math.isfinite(result) and 0.0 <= result <= 5.0


@given(st.one_of(st.text(), st.text(st.characters(codec=None, categories=["Cs", "Cc"]))))
def test_text_never_holds_control_characters(value: str) -> None:
    try:
        result = check.text("note", value, max_length=200)
    except NotebookValidationError as error:
        assert error.field == "note"
        return
    assert len(result) <= 200
    assert "\x00" not in result
    assert all(ch in "\n\t\r" or ord(ch) >= 32 for ch in result if ord(ch) < 127)
    result.encode("utf-8")  # storable in Postgres


@given(st.text())
def test_identifiers_hold_only_safe_characters(value: str) -> None:
    try:
        result = check.identifier("medium lot", value)
    except NotebookValidationError as error:
        assert error.field == "medium lot"
        return
    assert "'" not in result and ";" not in result and '"' not in result
    assert len(result) <= 64


@given(anything)
def test_whole_numbers_are_ints_in_range_or_refused(value: object) -> None:
    try:
        result = check.whole_number("level", value, minimum=1, maximum=3)
    except NotebookValidationError as error:
        assert error.field == "level"
        return
    assert isinstance(result, int) and not isinstance(result, bool) and 1 <= result <= 3


@given(anything)
def test_moments_are_aware_and_not_in_the_future_or_refused(value: object) -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=timezone.utc)
    try:
        result = check.moment("sampling time", value, now=now)
    except NotebookValidationError as error:
        assert error.field == "sampling time"
        return
    assert result is not None and result.utcoffset() is not None
    assert result - now <= timedelta(minutes=5)


@given(anything)
def test_choices_are_members_or_refused(value: object) -> None:
    try:
        result = check.choice("campaign phase", value, CampaignPhase)
    except NotebookValidationError as error:
        assert "A, B, C" in error.message
        return
    assert isinstance(result, CampaignPhase)


@pytest.mark.parametrize(
    ("value", "expected"), [("4,5", 4.5), (" 0.25 ", 0.25), (3, 3.0), ("1e-3", 0.001)]
)
def test_numbers_typed_as_text_are_accepted(value: object, expected: float) -> None:
    assert check.number("OD600", value, minimum=0.0) == pytest.approx(expected)


def test_messages_name_the_limit() -> None:
    with pytest.raises(NotebookValidationError) as caught:
        check.number("glycerol", 250, maximum=200, unit="g/L")
    assert caught.value.message == "glycerol 250 g/L is too large; it must be at most 200"
