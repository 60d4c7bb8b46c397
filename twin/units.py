"""Unit conversions and sensor calibration arithmetic (docs/process.md, "Sensor calibration").

Pure functions, numpy-friendly: every function takes floats or arrays and returns the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Ideal Nernst slope at 25 °C: 2.303·R·T/F = 59.16 mV per pH unit.
NERNST_SLOPE_25C_MV = 59.16
KELVIN_OFFSET = 273.15
REFERENCE_TEMPERATURE_K = 298.15
# O2 solubility in the medium at 30 °C, 1 atm, air (docs/process.md "Respiration"; 7.56 mg/L).
C_STAR_AIR_30C_MM = 0.236
O2_MOLAR_MASS_G_PER_MOL = 31.998
ATM_BAR = 1.01325
# The lab calibrates its own OD→DCW line; 0.2–0.4 g DCW/L per OD unit (docs/process.md "Growth").
DEFAULT_DCW_PER_OD = 0.3
PH_SLOPE_PASS_PERCENT = 95.0


def nernst_slope_mv(temperature_c: ArrayLike) -> np.ndarray | float:
    """Ideal electrode slope S_T (mV per pH) at ``temperature_c``: 59.16 mV·(T+273.15)/298.15."""
    temperature = np.asarray(temperature_c, dtype=float)
    if np.any(temperature < -KELVIN_OFFSET):
        # numpy's ArrayLike admits bytes (np.asarray parses b"-500" as a number), which would
        # print as b'-500' here: only the message's wording. This module's code is hashed into
        # the shipped model's pipeline fingerprint, so a narrower parameter type waits for the
        # next retrain; until then this comment.
        raise ValueError(
            f"temperature {temperature_c} °C is below absolute zero"  # type: ignore[str-bytes-safe]
        )
    result = NERNST_SLOPE_25C_MV * (temperature + KELVIN_OFFSET) / REFERENCE_TEMPERATURE_K
    return float(result) if result.ndim == 0 else result


@dataclass(frozen=True, slots=True)
class PhCalibration:
    """Result of a pH two-buffer calibration."""

    slope_percent: float
    offset_mv: float
    nernst_slope_mv: float
    passed: bool


def ph_two_point_calibration(
    mv_at_ph7: float,
    mv_at_ph4: float,
    temperature_c: float,
    ph_low: float = 4.01,
    ph_high: float = 7.00,
    pass_percent: float = PH_SLOPE_PASS_PERCENT,
) -> PhCalibration:
    """Slope % = (E₄ − E₇) / (ΔpH · S_T) × 100, offset = E at pH 7 (docs/process.md, calibration).

    A glass electrode's potential falls as pH rises, so E₄ > E₇ and ΔpH = pH_high − pH_low > 0.
    """
    delta_ph = ph_high - ph_low
    if delta_ph <= 0:
        raise ValueError(f"buffer pH {ph_high} must be above {ph_low}")
    slope_ideal = float(nernst_slope_mv(temperature_c))
    slope_percent = (mv_at_ph4 - mv_at_ph7) / (delta_ph * slope_ideal) * 100.0
    return PhCalibration(
        slope_percent=slope_percent,
        offset_mv=mv_at_ph7,
        nernst_slope_mv=slope_ideal,
        passed=bool(slope_percent >= pass_percent),
    )


def ph_from_mv(
    mv: ArrayLike, calibration: PhCalibration, temperature_c: ArrayLike
) -> np.ndarray | float:
    """pH from an electrode potential with a two-point calibration and temperature compensation."""
    slope = np.asarray(nernst_slope_mv(temperature_c)) * calibration.slope_percent / 100.0
    result = 7.0 - (np.asarray(mv, dtype=float) - calibration.offset_mv) / slope
    return float(result) if np.ndim(result) == 0 else result


def o2_saturation_mm(
    y_o2: ArrayLike = 0.2095,
    pressure_bar_abs: ArrayLike = ATM_BAR,
    c_star_air_mm: float = C_STAR_AIR_30C_MM,
) -> np.ndarray | float:
    """C* (mM) in equilibrium with gas of O₂ mole fraction ``y_o2`` at ``pressure_bar_abs``.

    Henry's law: C* scales with the O₂ partial pressure relative to air at 1 atm.
    """
    partial = np.asarray(y_o2, dtype=float) * np.asarray(pressure_bar_abs, dtype=float)
    result = c_star_air_mm * partial / (0.2095 * ATM_BAR)
    return float(result) if np.ndim(result) == 0 else result


def do_percent_to_mm(
    do_percent: ArrayLike, c_star_air_mm: float = C_STAR_AIR_30C_MM
) -> np.ndarray | float:
    """DO in % air saturation (100 % = calibrated at air, 1 atm, 30 °C) to mM O₂."""
    result = np.asarray(do_percent, dtype=float) / 100.0 * c_star_air_mm
    return float(result) if np.ndim(result) == 0 else result


def do_mm_to_percent(
    do_mm: ArrayLike, c_star_air_mm: float = C_STAR_AIR_30C_MM
) -> np.ndarray | float:
    """Inverse of :func:`do_percent_to_mm`."""
    result = np.asarray(do_mm, dtype=float) / c_star_air_mm * 100.0
    return float(result) if np.ndim(result) == 0 else result


def mm_o2_to_mg_per_l(do_mm: ArrayLike) -> np.ndarray | float:
    """mM dissolved O₂ to mg/L (× 31.998 g/mol)."""
    result = np.asarray(do_mm, dtype=float) * O2_MOLAR_MASS_G_PER_MOL
    return float(result) if np.ndim(result) == 0 else result


def od600_to_dcw(od600: ArrayLike, dcw_per_od: float = DEFAULT_DCW_PER_OD) -> np.ndarray | float:
    """OD600 to dry cell weight (g/L) with the lab's own calibration factor (g DCW/L per OD)."""
    if dcw_per_od <= 0:
        raise ValueError(f"dcw_per_od must be positive, got {dcw_per_od}")
    result = np.asarray(od600, dtype=float) * dcw_per_od
    return float(result) if np.ndim(result) == 0 else result


def dcw_to_od600(
    dcw_g_per_l: ArrayLike, dcw_per_od: float = DEFAULT_DCW_PER_OD
) -> np.ndarray | float:
    """Dry cell weight (g/L) to OD600; inverse of :func:`od600_to_dcw`."""
    if dcw_per_od <= 0:
        raise ValueError(f"dcw_per_od must be positive, got {dcw_per_od}")
    result = np.asarray(dcw_g_per_l, dtype=float) / dcw_per_od
    return float(result) if np.ndim(result) == 0 else result


def bar_gauge_to_abs(pressure_bar_gauge: ArrayLike) -> np.ndarray | float:
    """Gauge pressure (bar g) to absolute (bar), assuming a standard atmosphere outside."""
    result = np.asarray(pressure_bar_gauge, dtype=float) + ATM_BAR
    return float(result) if np.ndim(result) == 0 else result
