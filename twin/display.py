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
