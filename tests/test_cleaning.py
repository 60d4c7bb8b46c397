"""Live cleaning: impossible values out (with an event), short gaps bridged, long gaps marked."""

import math

import numpy as np
import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.twin import cleaning

T0 = 1_763_900_000.0


def test_impossible_ph_becomes_missing_with_an_event() -> None:
    reading = Reading(T0, "r1", "ph", 1.2)
    cleaned, event = cleaning.clean_reading(reading)
    assert math.isnan(cleaned.value)
    assert cleaned.quality is Quality.BAD
    assert event is not None
    assert (event.channel, event.value, event.reason) == ("ph", 1.2, cleaning.REASON_BELOW_PHYSICAL)
    assert "ph" in event.message and "1.2" in event.message


def test_do_above_150_percent_is_impossible() -> None:
    cleaned, event = cleaning.clean_reading(Reading(T0, "r1", "do", 163.0))
    assert math.isnan(cleaned.value)
    assert event is not None and event.reason == cleaning.REASON_ABOVE_PHYSICAL


def test_plausible_and_missing_values_pass_unchanged() -> None:
    good = Reading(T0, "r1", "do", 35.0)
    assert cleaning.clean_reading(good) == (good, None)
    empty = Reading(T0, "r1", "do", math.nan, quality=Quality.BAD)
    assert cleaning.clean_reading(empty) == (empty, None)


def test_clean_array_matches_the_catalogue() -> None:
    values, removed = cleaning.clean_array("ph", [5.0, 1.9, 12.5, math.nan, 2.0])
    assert removed.tolist() == [False, True, True, False, False]
    assert np.isnan(values[[1, 2, 3]]).all()
    assert values[4] == 2.0  # the limit itself is physical


def test_short_gap_is_interpolated_and_long_gap_marked() -> None:
    t = np.arange(0.0, 1000.0, 1.0)
    v = t * 0.1  # a ramp: linear interpolation must restore it exactly
    holes = v.copy()
    holes[100:160] = np.nan  # 60 s gap: bridged
    holes[400:800] = np.nan  # 400 s gap (> 300 s): stays missing, flagged
    holes[:5] = np.nan  # leading: never invented
    filled, long_gap = cleaning.interpolate_short_gaps(t, holes)
    np.testing.assert_allclose(filled[100:160], v[100:160])
    assert np.isnan(filled[400:800]).all() and long_gap[400:800].all()
    assert np.isnan(filled[:5]).all() and long_gap[:5].all()
    assert not long_gap[100:160].any()


def test_gap_runs_lists_every_hole() -> None:
    t = np.arange(10.0)
    v = np.array([1, np.nan, np.nan, 4, 5, np.nan, 7, 8, 9, np.nan])
    assert cleaning.gap_runs(t, v) == [(1.0, 3.0), (5.0, 6.0), (9.0, 9.0)]


def test_interpolation_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        cleaning.interpolate_short_gaps([0.0, 1.0], [1.0])
