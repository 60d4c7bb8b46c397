"""Numbers and recorded values for people (twin.display): what the dashboard and report show."""

from __future__ import annotations

import math

import pytest

from bptwin.twin.display import human_fields, human_number, human_value, key_label

NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3470.2, f"3{NBSP}470"),  # the dashboard showed 3.47e+03
        (1234567.0, f"1{NBSP}230{NBSP}000"),
        (6.80, "6.8"),
        (12.0, "12"),
        (0.0123, "0.0123"),
        (-0.5, "-0.5"),
        (99.96, "100"),
        (0, "0"),
        (0.00012, "1.2×10⁻⁴"),
        (2.5e13, "2.5×10¹³"),
        (None, "—"),
        (math.nan, "—"),
        (math.inf, "—"),
    ],
)
def test_numbers_never_show_an_exponent_or_a_repr(value: float | None, shown: str) -> None:
    assert human_number(value) == shown


def test_digits_are_significant_digits() -> None:
    assert human_number(4.91634, 4) == "4.916"
    assert human_number(3471.6, 4) == f"3{NBSP}472"


def test_record_fields_in_words_with_units_and_no_reprs() -> None:
    text = human_fields({"slope_pct": 98.7, "drift_percent": None, "e7_mv": 1.5, "ok": True})
    assert text == "slope 98.7 %, drift —, e7 1.5 mV, ok yes"
    assert "None" not in text and "=" not in text
    assert key_label("glucose_g_per_l") == ("glucose", "g/L")
    assert human_value(["a", 2.0]) == "a, 2"
    assert human_fields({}) == "—"
