"""Numbers and recorded values for people (twin.display): what the dashboard and report show."""

from __future__ import annotations

import math

import pytest

from bptwin.twin.display import (
    MODEL_ADAPTED,
    MODEL_AS_TRAINED,
    MODEL_DRIFT,
    MODEL_FALLBACK,
    attributions_line,
    contribution_effect,
    feature_label,
    human_fields,
    human_number,
    human_value,
    key_label,
    model_state,
)

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


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("od_probe_mean", "OD probe"),
        ("do_slope", "DO trend"),
        ("offgas_co2_std", "off-gas CO₂ noise"),
        ("cum_co2_mmol_per_l", "CO₂ made"),
        ("time_since_inoculation_h", "time since inoc."),
        ("a_new_feature", "a new feature"),  # a model trained on more inputs still reads
    ],
)
def test_model_inputs_are_named_in_words(name: str, label: str) -> None:
    assert feature_label(name) == label


@pytest.mark.parametrize(
    ("log_value", "shown"),
    [
        (math.log(1.12), "+12 %"),
        (math.log(0.96), "−4.0 %"),
        (math.log(1.004), "+0.4 %"),
        (0.0, "±0 %"),
        (2.5, "×12"),
        (math.log(0.41), "×0.41"),
        (math.nan, "—"),
    ],
)
def test_a_contribution_is_its_effect_on_the_nowcast(log_value: float, shown: str) -> None:
    assert contribution_effect(log_value) == shown


def test_the_why_line_names_the_three_largest_contributions_in_words() -> None:
    line = attributions_line(
        (("od_probe_mean", 2.5), ("cum_co2_mmol_per_l", -0.041), ("do_mean", 0.004))
    )
    assert line == "OD probe ×12 · CO₂ made −4.0 % · DO +0.4 %"
    assert "_" not in line
    assert attributions_line(()) == ""


@pytest.mark.parametrize(
    ("samples", "drift", "fallback", "words", "state"),
    [
        (0, "", False, "as trained, no sample yet", MODEL_AS_TRAINED),
        (1, "", False, "adapted to 1 sample", MODEL_ADAPTED),
        (3, "", False, "adapted to 3 samples", MODEL_ADAPTED),
        (5, "", True, "fallback without the OD probe, not adapted", MODEL_FALLBACK),
        (
            1,
            "a sample is 18 % off the model (limit 4 %)",
            False,
            "drift: a sample is 18 % off the model (limit 4 %) – take a sample"
            " · carbon balance until 2 samples",
            MODEL_DRIFT,
        ),
        (
            3,
            "a sample is 18 % off the model (limit 4 %)",
            False,
            "drift: a sample is 18 % off the model (limit 4 %) – take a sample"
            " · adapted to 3 samples",
            MODEL_DRIFT,
        ),
    ],
)
def test_the_model_line_says_what_the_nowcast_rests_on(
    samples: int, drift: str, fallback: bool, words: str, state: str
) -> None:
    assert model_state(samples, drift, fallback) == (words, state)
