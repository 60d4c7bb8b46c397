"""Off-gas balances with nitrogen as inert tracer (docs/process.md, "Off-gas balances").

Pure functions on floats or numpy arrays. Conventions:

* mole fractions are fractions (0.2095), not % v/v; :func:`percent_to_fraction` converts;
* gas flows are standard litres per minute from mass-flow controllers, molar flows mol/h;
* rates (OUR, CER, OTR) are mmol L⁻¹ h⁻¹, the unit operators read;
* the analyser reports dry gas (a condenser/dryer upstream), so y_H2O does not enter the balance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bptwin.twin.units import ATM_BAR, C_STAR_AIR_30C_MM

Y_O2_AIR = 0.2095
Y_CO2_AIR = 0.0004
# Molar volume of an ideal gas at 0 °C, 1 atm: the "standard litre" of mass-flow controllers.
MOLAR_VOLUME_STP_L = 22.414
GAS_CONSTANT_L_BAR = 0.08314462618  # L·bar·mol⁻¹·K⁻¹
MINUTES_PER_HOUR = 60.0

# Gating defaults; tuned for a 1 L reactor at 1 vvm with an analyser of ~0.05–0.1 % v/v noise.
RQ_MIN_OUR_MMOL_L_H = 5.0
KLA_MIN_DRIVING_FORCE_MM = 0.02

REASON_OUR_BELOW_THRESHOLD = "our_below_threshold"
REASON_NOT_FINITE = "input_not_finite"
REASON_DRIVING_FORCE_SMALL = "driving_force_small"


def percent_to_fraction(percent: ArrayLike) -> np.ndarray | float:
    """% v/v to mole fraction."""
    return _same_kind(np.asarray(percent, dtype=float) / 100.0)


def standard_flow_to_mol_per_h(flow_sl_per_min: ArrayLike) -> np.ndarray | float:
    """Standard L/min (0 °C, 1 atm) to mol/h via 22.414 L/mol."""
    return _same_kind(
        np.asarray(flow_sl_per_min, dtype=float) / MOLAR_VOLUME_STP_L * MINUTES_PER_HOUR
    )


def actual_flow_to_mol_per_h(
    flow_l_per_min: ArrayLike, pressure_bar_abs: ArrayLike, temperature_c: ArrayLike
) -> np.ndarray | float:
    """Actual (not standard) L/min at p, T to mol/h: F = Q·p/(R·T)."""
    kelvin = np.asarray(temperature_c, dtype=float) + 273.15
    moles_per_min = (
        np.asarray(flow_l_per_min, dtype=float)
        * np.asarray(pressure_bar_abs, dtype=float)
        / (GAS_CONSTANT_L_BAR * kelvin)
    )
    return _same_kind(moles_per_min * MINUTES_PER_HOUR)


@dataclass(frozen=True, slots=True)
class InletGas:
    """Total molar flow (mol/h) and composition of the gas entering the reactor."""

    flow_mol_h: np.ndarray | float
    y_o2: np.ndarray | float
    y_co2: np.ndarray | float

    @property
    def y_n2(self) -> np.ndarray | float:
        return _same_kind(1.0 - np.asarray(self.y_o2) - np.asarray(self.y_co2))


def inlet_gas(
    air_sl_per_min: ArrayLike,
    o2_sl_per_min: ArrayLike = 0.0,
    y_o2_air: float = Y_O2_AIR,
    y_co2_air: float = Y_CO2_AIR,
) -> InletGas:
    """Air plus pure-O₂ enrichment (both standard L/min): total flow and mixed composition.

    O₂ enrichment (the last stage of the DO cascade) raises the inlet y_O2 and dilutes
    CO₂ and N₂; forgetting it makes OUR wildly wrong as soon as the cascade reaches it.
    """
    air = standard_flow_to_mol_per_h(air_sl_per_min)
    oxygen = standard_flow_to_mol_per_h(o2_sl_per_min)
    total = np.asarray(air) + np.asarray(oxygen)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_o2 = (np.asarray(air) * y_o2_air + np.asarray(oxygen)) / total
        y_co2 = np.asarray(air) * y_co2_air / total
    return InletGas(_same_kind(total), _same_kind(y_o2), _same_kind(y_co2))


def outlet_flow_mol_h(
    inlet_flow_mol_h: ArrayLike,
    y_n2_in: ArrayLike,
    y_o2_out: ArrayLike,
    y_co2_out: ArrayLike,
) -> np.ndarray | float:
    """Inert balance: F_out = F_in · y_N2,in / y_N2,out with y_N2 = 1 − y_O2 − y_CO2."""
    y_n2_out = 1.0 - np.asarray(y_o2_out, dtype=float) - np.asarray(y_co2_out, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.asarray(inlet_flow_mol_h, dtype=float) * np.asarray(y_n2_in) / y_n2_out
    return _same_kind(np.where(y_n2_out > 0, result, np.nan))


@dataclass(frozen=True, slots=True)
class GasBalance:
    """Result of one off-gas balance; rates in mmol L⁻¹ h⁻¹, flows in mol/h."""

    our: np.ndarray | float
    cer: np.ndarray | float
    inlet_flow_mol_h: np.ndarray | float
    outlet_flow_mol_h: np.ndarray | float
    y_o2_in: np.ndarray | float
    y_co2_in: np.ndarray | float
    o2_drop: np.ndarray | float  # y_O2,in − y_O2,out (fraction): the signal behind OUR


def gas_balance(
    air_sl_per_min: ArrayLike,
    y_o2_out: ArrayLike,
    y_co2_out: ArrayLike,
    volume_l: ArrayLike,
    o2_sl_per_min: ArrayLike = 0.0,
    y_o2_air: float = Y_O2_AIR,
    y_co2_air: float = Y_CO2_AIR,
) -> GasBalance:
    """OUR and CER from inlet flows and dry outlet mole fractions (N₂ tracer).

    OUR = (F_in·y_O2,in − F_out·y_O2,out)/V_L, CER = (F_out·y_CO2,out − F_in·y_CO2,in)/V_L.
    """
    volume = np.asarray(volume_l, dtype=float)
    if np.any(volume <= 0):
        raise ValueError(f"liquid volume must be positive, got {float(volume.min()):g} L")
    inlet = inlet_gas(air_sl_per_min, o2_sl_per_min, y_o2_air, y_co2_air)
    f_in = np.asarray(inlet.flow_mol_h)
    f_out = np.asarray(outlet_flow_mol_h(f_in, inlet.y_n2, y_o2_out, y_co2_out))
    y_o2 = np.asarray(y_o2_out, dtype=float)
    y_co2 = np.asarray(y_co2_out, dtype=float)
    # mol L⁻¹ h⁻¹ × 1000 = mmol L⁻¹ h⁻¹
    our = (f_in * np.asarray(inlet.y_o2) - f_out * y_o2) / volume * 1000.0
    cer = (f_out * y_co2 - f_in * np.asarray(inlet.y_co2)) / volume * 1000.0
    return GasBalance(
        our=_same_kind(our),
        cer=_same_kind(cer),
        inlet_flow_mol_h=inlet.flow_mol_h,
        outlet_flow_mol_h=_same_kind(f_out),
        y_o2_in=inlet.y_o2,
        y_co2_in=inlet.y_co2,
        o2_drop=_same_kind(np.asarray(inlet.y_o2) - y_o2),
    )


@dataclass(frozen=True, slots=True)
class Co2OnlyBalance:
    """CER from a CO₂ analyser alone, resting on an assumed RQ (mmol L⁻¹ h⁻¹, mol/h)."""

    cer: np.ndarray | float
    assumed_rq: float
    inlet_flow_mol_h: np.ndarray | float
    outlet_flow_mol_h: np.ndarray | float
    y_o2_in: np.ndarray | float
    y_co2_in: np.ndarray | float


def co2_only_balance(
    air_sl_per_min: ArrayLike,
    y_co2_out: ArrayLike,
    volume_l: ArrayLike,
    assumed_rq: float,
    o2_sl_per_min: ArrayLike = 0.0,
    y_o2_air: float = Y_O2_AIR,
    y_co2_air: float = Y_CO2_AIR,
) -> Co2OnlyBalance:
    """CER without an O₂ analyser (docs/process.md, "With a CO₂ analyser only").

    With OUR = CER / RQ the inert balance closes in one step:
    F_out = F_in · (1 − y_CO2,in + y_CO2,in/RQ) / (1 − y_CO2,out · (1 − 1/RQ)),
    CER = (F_out · y_CO2,out − F_in · y_CO2,in) / V_L. For RQ = 1, F_out = F_in. The result
    rests on the assumed RQ: a caller marks it uncertain and never shows OUR or RQ from it.
    """
    if not assumed_rq > 0:
        raise ValueError(f"the assumed RQ must be positive, got {assumed_rq}")
    volume = np.asarray(volume_l, dtype=float)
    if np.any(volume <= 0):
        raise ValueError(f"liquid volume must be positive, got {float(volume.min()):g} L")
    inlet = inlet_gas(air_sl_per_min, o2_sl_per_min, y_o2_air, y_co2_air)
    f_in = np.asarray(inlet.flow_mol_h)
    y_in = np.asarray(inlet.y_co2)
    y_out = np.asarray(y_co2_out, dtype=float)
    denominator = 1.0 - y_out * (1.0 - 1.0 / assumed_rq)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_out = np.where(
            denominator > 0, f_in * (1.0 - y_in + y_in / assumed_rq) / denominator, np.nan
        )
    cer = (f_out * y_out - f_in * y_in) / volume * 1000.0
    return Co2OnlyBalance(
        cer=_same_kind(cer),
        assumed_rq=float(assumed_rq),
        inlet_flow_mol_h=inlet.flow_mol_h,
        outlet_flow_mol_h=_same_kind(f_out),
        y_o2_in=inlet.y_o2,
        y_co2_in=inlet.y_co2,
    )


def respiratory_quotient(
    cer: float, our: float, min_our: float = RQ_MIN_OUR_MMOL_L_H
) -> tuple[float, str | None]:
    """RQ = CER/OUR, or (NaN, reason) when OUR is too small for the ratio to mean anything."""
    if not (math.isfinite(cer) and math.isfinite(our)):
        return math.nan, REASON_NOT_FINITE
    if abs(our) < min_our:
        return math.nan, REASON_OUR_BELOW_THRESHOLD
    return cer / our, None


def respiratory_quotient_array(
    cer: ArrayLike, our: ArrayLike, min_our: float = RQ_MIN_OUR_MMOL_L_H
) -> np.ndarray:
    """Vectorised :func:`respiratory_quotient` (NaN where gated)."""
    cer_a = np.asarray(cer, dtype=float)
    our_a = np.asarray(our, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(our_a) >= min_our, cer_a / our_a, np.nan)


def otr(kla_per_h: ArrayLike, c_star_mm: ArrayLike, c_l_mm: ArrayLike) -> np.ndarray | float:
    """Oxygen transfer rate OTR = kLa·(C* − C_L) in mmol L⁻¹ h⁻¹."""
    return _same_kind(
        np.asarray(kla_per_h, dtype=float)
        * (np.asarray(c_star_mm, dtype=float) - np.asarray(c_l_mm, dtype=float))
    )


def c_star_mm(
    y_o2_gas: ArrayLike,
    pressure_bar_abs: ArrayLike = ATM_BAR,
    c_star_air_mm: float = C_STAR_AIR_30C_MM,
) -> np.ndarray | float:
    """Saturation C* scaled by O₂ partial pressure (0.236 mM for air at 1 atm, 30 °C)."""
    partial_atm = np.asarray(y_o2_gas, dtype=float) * np.asarray(pressure_bar_abs) / ATM_BAR
    return _same_kind(c_star_air_mm * partial_atm / Y_O2_AIR)


def kla_quasi_steady_state(
    our: float,
    c_star: float,
    c_l: float,
    min_driving_force_mm: float = KLA_MIN_DRIVING_FORCE_MM,
) -> tuple[float, str | None]:
    """kLa ≈ OUR/(C* − C_L) (h⁻¹) when dC/dt ≈ 0; gated when the driving force is tiny."""
    if not (math.isfinite(our) and math.isfinite(c_star) and math.isfinite(c_l)):
        return math.nan, REASON_NOT_FINITE
    driving = c_star - c_l
    if driving < min_driving_force_mm:
        return math.nan, REASON_DRIVING_FORCE_SMALL
    return our / driving, None


def kla_gassing_out(
    times_s: ArrayLike, c_l: ArrayLike, c_star: float, c_0: float | None = None
) -> float:
    """kLa (h⁻¹) from a dynamic gassing-out: ln[(C*−C)/(C*−C₀)] = −kLa·t, least squares."""
    t = np.asarray(times_s, dtype=float)
    c = np.asarray(c_l, dtype=float)
    start = c[0] if c_0 is None else c_0
    ratio = (c_star - c) / (c_star - start)
    usable = np.isfinite(ratio) & (ratio > 0)
    if usable.sum() < 3:
        raise ValueError("gassing-out needs at least 3 points below saturation")
    t_use = t[usable] - t[0]
    slope = np.sum(t_use * np.log(ratio[usable])) / np.sum(t_use * t_use)
    return float(-slope * 3600.0)


def _same_kind(value: np.ndarray) -> np.ndarray | float:
    """Return a Python float for 0-d results so scalar callers get scalars."""
    array = np.asarray(value)
    return float(array) if array.ndim == 0 else array
