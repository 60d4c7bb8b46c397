"""Numbers and recorded values written for people: no exponents for everyday magnitudes, digit
groups in large numbers, no Python reprs. Shared by the dashboard and the batch report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

NO_VALUE = "—"
# A no-break space groups digits (3 470): it keeps a number on one line in HTML and PDF tables
# and is in the Latin-1 set the PDF's standard fonts draw.
GROUP = "\u00a0"
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# Beyond these a number is written as a power of ten (× 10ⁿ), never as 1e+12.
_SMALLEST_PLAIN = 1e-3
_LARGEST_PLAIN = 1e12
# Units written for the suffixes that calibration and media records use in their keys.
_KEY_UNITS = {
    "percent": "%",
    "pct": "%",
    "mv": "mV",
    "ml": "mL",
    "l": "L",
    "g": "g",
    "g_l": "g/L",
    "g_per_l": "g/L",
    "min": "min",
    "s": "s",
    "h": "h",
    "c": "°C",
    "ph": "pH",
    "rpm": "rpm",
    "bar": "bar",
}


def human_number(value: object, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, plainly: 3470.2 -> "3 470", 0.0123 ->
    "0.0123", 6.80 -> "6.8"; None, NaN and infinities -> "—"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NO_VALUE if value is None else str(value)
    number = float(value)
    if not math.isfinite(number):
        return NO_VALUE
    if number == 0:
        return "0"
    rounded = float(f"{number:.{digits}g}")
    magnitude = abs(rounded)
    if magnitude < _SMALLEST_PLAIN or magnitude >= _LARGEST_PLAIN:
        mantissa, exponent = f"{rounded:.{digits - 1}e}".split("e")
        mantissa = _trim(mantissa)
        return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    text = _trim(f"{Decimal(repr(rounded)):,.{decimals}f}")
    return text.replace(",", GROUP)


def _trim(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def key_label(key: str) -> tuple[str, str]:
    """A record key as words and its unit: "drift_percent" -> ("drift", "%"),
    "slope_pct" -> ("slope", "%"), "e7_mv" -> ("e7", "mV")."""
    words = key.strip().lower().split("_")
    for size in (3, 2, 1):
        suffix = "_".join(words[-size:])
        if len(words) > size and suffix in _KEY_UNITS:
            return " ".join(words[:-size]), _KEY_UNITS[suffix]
    return " ".join(words), ""


def human_value(value: object, digits: int = 3) -> str:
    """One recorded value: numbers as :func:`human_number`, yes/no for flags, "—" for none."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return human_number(value, digits)
    if isinstance(value, list | tuple):
        return ", ".join(human_value(item, digits) for item in value) or NO_VALUE
    if isinstance(value, Mapping):
        return human_fields(value, digits)
    return str(getattr(value, "value", value))


def human_fields(values: Mapping[str, object], digits: int = 3) -> str:
    """A record's key/value fields as one line: "slope 98.7 %, drift —"."""
    parts = []
    for key, value in values.items():
        label, unit = key_label(str(key))
        text = human_value(value, digits)
        if unit and text != NO_VALUE:
            text = f"{text} {unit}"
        parts.append(f"{label} {text}")
    return ", ".join(parts) or NO_VALUE


# ---- the model's state and its reasons, for the dashboard's prediction panel ---------------

# Short words for the model's inputs (a dashboard line is read at 80 columns).
_CHANNEL_WORDS = {
    "do": "DO",
    "ph": "pH",
    "od_probe": "OD probe",
    "stirrer_speed": "stirrer",
    "stirrer_torque": "torque",
    "offgas_o2": "off-gas O₂",
    "offgas_co2": "off-gas CO₂",
    "air_flow": "air flow",
    "o2_flow": "O₂ flow",
    "temp_broth": "broth temp.",
    "pressure": "pressure",
    "heater_output": "heater",
    "base_total": "base added",
    "vessel_weight": "weight",
}
_STATISTIC_WORDS = {"mean": "", "std": " noise", "slope": " trend"}
_SCALAR_WORDS = {
    "time_since_inoculation_h": "time since inoc.",
    "our": "OUR",
    "cer": "CER",
    "rq": "RQ",
    "our_smooth": "OUR",
    "cer_smooth": "CER",
    "rq_smooth": "RQ",
    "o2_drop_percent": "O₂ drop",
    "co2_rise_percent": "CO₂ rise",
    "inlet_y_o2": "inlet O₂",
    "low_signal": "low signal",
    "cum_o2_mmol_per_l": "O₂ taken up",
    "cum_co2_mmol_per_l": "CO₂ made",
    "kla": "kLa",
    "mu_cer": "μ (CER)",
    "mu_carbon": "μ (carbon)",
    "biomass_carbon_g_per_l": "carbon-balance biomass",
    "q_o2": "qO₂",
    "q_co2": "qCO₂",
    "base_total_ml": "base added",
    "base_rate_ml_per_h": "base rate",
    "temp_broth_minus_exhaust": "broth−exhaust temp.",
    "temp_probe_spread": "temp. probe spread",
    "pressure_deviation_bar": "pressure deviation",
    "phase_code": "phase",
    "depleted": "depleted",
}


def feature_label(name: str) -> str:
    """A model input in a few words: "od_probe_mean" -> "OD probe", "do_slope" -> "DO trend",
    "cum_co2_mmol_per_l" -> "CO₂ made"; an unknown name with its underscores as spaces."""
    if name in _SCALAR_WORDS:
        return _SCALAR_WORDS[name]
    channel, _, statistic = name.rpartition("_")
    if channel in _CHANNEL_WORDS and statistic in _STATISTIC_WORDS:
        return _CHANNEL_WORDS[channel] + _STATISTIC_WORDS[statistic]
    return name.replace("_", " ")


def contribution_effect(log_contribution: float) -> str:
    """One SHAP contribution in log OD600 as its effect on the nowcast: "+12 %", "−4.0 %" near
    1, a factor ("×3.4", "×0.41") beyond ×½–×2; "—" when it is not a number."""
    if not math.isfinite(log_contribution):
        return NO_VALUE
    factor = math.exp(log_contribution)
    if 0.5 <= factor <= 2.0:
        percent = 100.0 * (factor - 1.0)
        shown = f"{abs(percent):.1f}" if abs(percent) < 9.95 else f"{abs(percent):.0f}"
        if float(shown) == 0:
            return "±0 %"
        return f"{'+' if percent > 0 else '−'}{shown} %"
    return f"×{human_number(factor, 2)}"


def attributions_line(attributions: tuple[tuple[str, float], ...] | list[tuple[str, float]]) -> str:
    """The largest contributions of a nowcast, for people: "OD probe ×12 · CO₂ made −4.0 % · time
    since inoc. +0.4 %"; "" when the prediction carries none."""
    return " · ".join(
        f"{feature_label(name)} {contribution_effect(value)}" for name, value in attributions
    )


MODEL_AS_TRAINED = "trained"
MODEL_ADAPTED = "adapted"
MODEL_FALLBACK = "fallback"
MODEL_DRIFT = "drift"


def model_state(samples_used: int, drift: str, fallback: bool) -> tuple[str, str]:
    """What the nowcast rests on, in one line, and its state (for its colour): one of
    ``MODEL_DRIFT``, ``MODEL_FALLBACK``, ``MODEL_ADAPTED``, ``MODEL_AS_TRAINED``."""
    if fallback:
        words, state = "fallback without the OD probe, not adapted", MODEL_FALLBACK
    elif samples_used > 0:
        plural = "s" if samples_used != 1 else ""
        words, state = f"adapted to {samples_used} sample{plural}", MODEL_ADAPTED
    else:
        words, state = "as trained, no sample yet", MODEL_AS_TRAINED
    if drift:
        if not fallback and samples_used < 2:  # the predictor falls back to the carbon balance
            words = "carbon balance until 2 samples"
        return f"drift: {drift} – take a sample · {words}", MODEL_DRIFT
    return words, state
