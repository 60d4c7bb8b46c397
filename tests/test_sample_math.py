"""bptwin.eln.sample_math and .deviation_guide: the arithmetic and text behind the entry screens."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bptwin.eln import deviation_guide, sample_math
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.schedule import sample_schedule

INOCULATED = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_od600_is_reading_times_dilution_and_none_while_incomplete() -> None:
    assert sample_math.od600("0.42", "20") == pytest.approx(8.4)
    assert sample_math.od600("0,5", "") == pytest.approx(0.5)  # blank dilution = 1
    assert sample_math.od600("abc", "2") is None
    assert sample_math.od600("0.4", "0.5") is None  # a dilution below 1 is a typo
    assert sample_math.od600("nan", "1") is None


def test_a_recorded_od600_splits_into_a_reading_in_the_linear_range_and_a_whole_dilution() -> None:
    assert sample_math.reading_and_dilution(0.5) == (0.5, 1.0)
    reading, dilution = sample_math.reading_and_dilution(9.04)
    assert dilution == 12.0 and reading == pytest.approx(9.04 / 12)
    assert reading * dilution == pytest.approx(9.04)
    assert reading <= sample_math.OD_READING_LINEAR_MAX
    # No OD600 (a dry-weight-only sample): no reading, never a reading of 0.
    assert sample_math.reading_and_dilution(None) == (None, 1.0)
    assert sample_math.reading_and_dilution(float("nan")) == (None, 1.0)


def test_dcw_from_filter_weights_in_g_per_l() -> None:
    assert sample_math.dcw_g_per_l("100.0", "130.0", "10") == pytest.approx(3.0)
    assert sample_math.dcw_g_per_l(100.0, 90.0, 10.0) is None  # dry below tare
    assert sample_math.dcw_g_per_l(100.0, 130.0, 0.0) is None
    assert sample_math.dcw_g_per_l(100.0, None, 10.0) is None


def test_residual_is_signed_percent_of_the_measured_value() -> None:
    assert sample_math.residual_percent(8.4, 8.0) == pytest.approx(4.7619, rel=1e-4)
    assert sample_math.residual_percent(10.0, 12.0) == pytest.approx(-20.0)
    assert sample_math.residual_percent(0.0, 1.0) is None
    assert sample_math.residual_percent(5.0, None) is None


def test_entry_times_are_utc_and_a_clock_time_after_now_means_yesterday() -> None:
    now = datetime(2026, 3, 2, 0, 10, tzinfo=timezone.utc)
    assert sample_math.parse_entry_time("t", "00:05", now) == now - timedelta(minutes=5)
    assert sample_math.parse_entry_time("t", "23:50", now) == datetime(
        2026, 3, 1, 23, 50, tzinfo=timezone.utc
    )
    assert sample_math.parse_entry_time("t", "2026-03-01 12:00", now).tzinfo == timezone.utc
    offset = sample_math.parse_entry_time("t", "2026-03-01T12:00+01:00", now)
    assert offset.astimezone(timezone.utc).hour == 11
    for bad in ("", "25:00", "noon"):
        with pytest.raises(NotebookValidationError) as error:
            sample_math.parse_entry_time("sampling time", bad, now)
        assert error.value.field == "sampling time"


def test_yes_no_answers() -> None:
    assert sample_math.parse_yes_no("m", "Y") is True
    assert sample_math.parse_yes_no("m", "no") is False
    assert sample_math.parse_yes_no("m", " ") is None
    with pytest.raises(NotebookValidationError, match="answer y"):
        sample_math.parse_yes_no("m", "maybe")


def test_next_slot_and_prompt_follow_the_schedule() -> None:
    now = INOCULATED + timedelta(hours=4, minutes=5)
    slots = sample_schedule(INOCULATED, [], now)
    assert sample_math.next_slot(slots).timepoint_h == 4.0
    assert sample_math.due_prompt(slots) == (
        "MISSED: 0 h, 2 h samples · SAMPLE DUE NOW: 4 h (until 12:15 UTC)"
    )
    later = sample_schedule(INOCULATED, [], INOCULATED + timedelta(hours=4, minutes=30))
    assert sample_math.next_slot(later).timepoint_h == 6.0
    assert "next sample: 6 h at 14:00 UTC" in sample_math.due_prompt(later)
    assert sample_math.slot_label(slots[-1]) == "depletion"


def test_deviation_guidance_names_the_sop_examples() -> None:
    assert "any O2 enrichment" in deviation_guide.guidance(2)
    assert "contamination" in deviation_guide.guidance("3")
    assert deviation_guide.guidance("4") == deviation_guide.guidance("x") == ""
    assert deviation_guide.suggested_level("critical") == 2
    assert deviation_guide.suggested_level("warning") == 1
    assert deviation_guide.related_channels("do")[0] == "do"
    assert deviation_guide.related_channels("vessel_weight") == ("vessel_weight",)
    assert deviation_guide.related_channels(None) == ()
