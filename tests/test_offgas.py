"""Off-gas balance against hand-worked numbers (docs/process.md, "Off-gas balances")."""

import math

import numpy as np
import pytest

from bptwin.twin import offgas


def test_worked_example_our_cer_rq() -> None:
    """Q_air = 1.0 sL/min, y_O2,out = 0.2050, y_CO2,out = 0.0035, V_L = 1.0 L.

    F_in  = 1.0 L/min / 22.414 L/mol × 60 min/h            = 2.676898 mol/h
    y_N2,in  = 1 − 0.2095 − 0.0004                          = 0.7901
    y_N2,out = 1 − 0.2050 − 0.0035                          = 0.7915
    F_out = 2.676898 × 0.7901 / 0.7915                      = 2.672163 mol/h
    O2 in  = 2.676898 × 0.2095 = 0.560810 mol/h
    O2 out = 2.672163 × 0.2050 = 0.547794 mol/h
    OUR = (0.560810 − 0.547794) / 1.0 L = 0.013017 mol/L/h  = 13.017 mmol/L/h
    CO2 out = 2.672163 × 0.0035 = 0.009353 mol/h
    CO2 in  = 2.676898 × 0.0004 = 0.001071 mol/h
    CER = (0.009353 − 0.001071) / 1.0 L = 0.008282 mol/L/h  = 8.282 mmol/L/h
    RQ  = 8.282 / 13.017                                    = 0.6362
    """
    balance = offgas.gas_balance(1.0, 0.2050, 0.0035, 1.0)
    assert balance.inlet_flow_mol_h == pytest.approx(2.676898, abs=1e-6)
    assert balance.outlet_flow_mol_h == pytest.approx(2.672163, abs=1e-6)
    assert balance.our == pytest.approx(13.017, abs=1e-3)
    assert balance.cer == pytest.approx(8.282, abs=1e-3)
    assert balance.o2_drop == pytest.approx(0.0045)
    rq, reason = offgas.respiratory_quotient(balance.cer, balance.our)
    assert rq == pytest.approx(0.6362, abs=1e-4)
    assert reason is None


def test_rates_scale_inversely_with_volume() -> None:
    # Same gas, half the broth: twice the volumetric rates.
    one = offgas.gas_balance(1.0, 0.2050, 0.0035, 1.0)
    half = offgas.gas_balance(1.0, 0.2050, 0.0035, 0.5)
    assert half.our == pytest.approx(2 * one.our)
    assert half.cer == pytest.approx(2 * one.cer)


def test_o2_enrichment_changes_inlet_composition() -> None:
    """Air 1.0 + pure O2 0.2 sL/min; outlet y_O2 = 0.3300, y_CO2 = 0.0040, V = 1 L.

    F_in = 1.2 / 22.414 × 60                          = 3.212278 mol/h
    y_O2,in  = (1.0 × 0.2095 + 0.2) / 1.2             = 0.341250
    y_CO2,in = 1.0 × 0.0004 / 1.2                     = 0.000333
    y_N2,in  = 1 − 0.341250 − 0.000333                = 0.658417
    F_out = 3.212278 × 0.658417 / (1 − 0.33 − 0.004)  = 3.175702 mol/h
    OUR = 3.212278 × 0.341250 − 3.175702 × 0.3300     = 0.048208 mol/L/h = 48.21 mmol/L/h
    CER = 3.175702 × 0.0040 − 3.212278 × 0.000333     = 0.011632 mol/L/h = 11.63 mmol/L/h
    Treating the inlet as plain air would give a negative OUR (outlet richer than air).
    """
    balance = offgas.gas_balance(1.0, 0.3300, 0.0040, 1.0, o2_sl_per_min=0.2)
    assert balance.y_o2_in == pytest.approx(0.34125)
    assert balance.y_co2_in == pytest.approx(0.000333, abs=1e-6)
    assert balance.our == pytest.approx(48.21, abs=0.01)
    assert balance.cer == pytest.approx(11.63, abs=0.01)
    naive = offgas.gas_balance(1.0, 0.3300, 0.0040, 1.0)
    assert naive.our < 0


def test_no_activity_gives_zero_rates() -> None:
    balance = offgas.gas_balance(1.0, 0.2095, 0.0004, 1.0)
    assert balance.our == pytest.approx(0.0, abs=1e-12)
    assert balance.cer == pytest.approx(0.0, abs=1e-12)


def test_vectorised_balance_matches_scalar() -> None:
    y_o2 = np.array([0.2090, 0.2050, 0.1900])
    y_co2 = np.array([0.0008, 0.0035, 0.0150])
    vector = offgas.gas_balance(np.ones(3), y_o2, y_co2, 1.0)
    for i in range(3):
        scalar = offgas.gas_balance(1.0, float(y_o2[i]), float(y_co2[i]), 1.0)
        assert vector.our[i] == pytest.approx(scalar.our)
        assert vector.cer[i] == pytest.approx(scalar.cer)


def test_actual_and_standard_flow_agree_at_stp() -> None:
    # Q·p/(R·T) at 0 °C, 1.01325 bar equals Q / 22.414 L/mol (within the constants' rounding).
    assert offgas.actual_flow_to_mol_per_h(1.0, 1.01325, 0.0) == pytest.approx(
        offgas.standard_flow_to_mol_per_h(1.0), rel=1e-4
    )
    # At 30 °C the same actual litre holds fewer moles: × 273.15/303.15 = 0.90104
    ratio = offgas.actual_flow_to_mol_per_h(1.0, 1.01325, 30.0) / offgas.standard_flow_to_mol_per_h(
        1.0
    )
    assert ratio == pytest.approx(0.90104, abs=1e-4)


def test_rq_is_gated_when_our_is_small() -> None:
    rq, reason = offgas.respiratory_quotient(0.7, 1.0, min_our=5.0)
    assert math.isnan(rq)
    assert reason == offgas.REASON_OUR_BELOW_THRESHOLD
    rq, reason = offgas.respiratory_quotient(math.nan, 20.0)
    assert math.isnan(rq) and reason == offgas.REASON_NOT_FINITE
    gated = offgas.respiratory_quotient_array([0.7, 14.0], [1.0, 20.0], min_our=5.0)
    assert math.isnan(gated[0]) and gated[1] == pytest.approx(0.7)


def test_c_star_and_kla_quasi_steady_state() -> None:
    # Outlet y_O2 = 0.2050 at 1 atm: C* = 0.236 × 0.2050 / 0.2095 = 0.23093 mM.
    # DO 30 % of air saturation: C_L = 0.3 × 0.236 = 0.0708 mM; driving force 0.16013 mM.
    # OUR 40 mmol/L/h -> kLa = 40 / 0.16013 = 249.8 h⁻¹; OTR back = kLa × 0.16013 = 40.
    c_star = offgas.c_star_mm(0.2050)
    assert c_star == pytest.approx(0.23093, abs=1e-5)
    kla, reason = offgas.kla_quasi_steady_state(40.0, c_star, 0.0708)
    assert reason is None
    assert kla == pytest.approx(249.8, abs=0.1)
    assert offgas.otr(kla, c_star, 0.0708) == pytest.approx(40.0)
    # Near saturation the ratio is meaningless: gated.
    kla, reason = offgas.kla_quasi_steady_state(1.0, c_star, 0.225)
    assert math.isnan(kla) and reason == offgas.REASON_DRIVING_FORCE_SMALL


def test_kla_from_gassing_out_curve() -> None:
    # C(t) = C* − (C* − C0)·exp(−kLa t) with kLa = 180 h⁻¹ = 0.05 s⁻¹.
    t = np.arange(0.0, 60.0, 2.0)
    c = 0.236 - 0.236 * np.exp(-0.05 * t)
    assert offgas.kla_gassing_out(t, c, 0.236) == pytest.approx(180.0, rel=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        offgas.kla_gassing_out([0.0, 1.0], [0.0, 0.1], 0.236)


def test_zero_volume_is_refused() -> None:
    with pytest.raises(ValueError, match="volume"):
        offgas.gas_balance(1.0, 0.205, 0.0035, 0.0)
