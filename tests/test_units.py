"""Unit conversions and pH calibration arithmetic, checked against hand-worked numbers."""

import math

import numpy as np
import pytest

from bptwin.twin import units


def test_nernst_slope_at_25_and_30_c() -> None:
    # S_T = 59.16 mV × (T + 273.15) / 298.15
    # 25 °C: 59.16 × 298.15 / 298.15 = 59.16 mV
    # 30 °C: 59.16 × 303.15 / 298.15 = 59.16 × 1.016770 = 60.152 mV
    assert units.nernst_slope_mv(25.0) == pytest.approx(59.16, abs=1e-9)
    assert units.nernst_slope_mv(30.0) == pytest.approx(60.152, abs=1e-3)
    slopes = units.nernst_slope_mv(np.array([0.0, 37.0]))
    # 0 °C: 59.16 × 273.15/298.15 = 54.199; 37 °C: 59.16 × 310.15/298.15 = 61.541
    np.testing.assert_allclose(slopes, [54.199, 61.541], atol=1e-3)


def test_nernst_slope_refuses_impossible_temperature() -> None:
    with pytest.raises(ValueError, match="absolute zero"):
        units.nernst_slope_mv(-300.0)


def test_ph_two_point_slope_and_offset_pass() -> None:
    # Buffers 7.00 and 4.01 at 30 °C: E7 = -5.0 mV, E4 = +168.0 mV.
    # ΔpH = 7.00 - 4.01 = 2.99; S_30 = 60.152 mV
    # slope % = (168.0 - (-5.0)) / (2.99 × 60.152) × 100 = 173.0 / 179.855 × 100 = 96.19 %
    cal = units.ph_two_point_calibration(mv_at_ph7=-5.0, mv_at_ph4=168.0, temperature_c=30.0)
    assert cal.slope_percent == pytest.approx(96.19, abs=0.01)
    assert cal.offset_mv == -5.0
    assert cal.passed  # ≥ 95 %


def test_ph_two_point_slope_fails_below_95_percent() -> None:
    # Tired electrode at 25 °C: E7 = 10 mV, E4 = 165 mV -> 155 / (2.99 × 59.16) = 87.63 %
    cal = units.ph_two_point_calibration(10.0, 165.0, 25.0)
    assert cal.slope_percent == pytest.approx(87.63, abs=0.01)
    assert not cal.passed


def test_ph_from_mv_inverts_the_calibration() -> None:
    cal = units.ph_two_point_calibration(-5.0, 168.0, 30.0)
    # At the calibration buffers the electrode must read the buffer pH back.
    assert units.ph_from_mv(-5.0, cal, 30.0) == pytest.approx(7.0)
    assert units.ph_from_mv(168.0, cal, 30.0) == pytest.approx(4.01)
    # pH 5.0: E = E7 + 2.0 × 60.152 × 0.9619 = -5.0 + 115.72 = 110.72 mV
    assert units.ph_from_mv(110.72, cal, 30.0) == pytest.approx(5.0, abs=0.001)


def test_ph_calibration_refuses_swapped_buffers() -> None:
    with pytest.raises(ValueError, match="buffer pH"):
        units.ph_two_point_calibration(0.0, 170.0, 25.0, ph_low=7.0, ph_high=4.01)


def test_do_percent_and_mm() -> None:
    # 100 % air saturation at 30 °C = 0.236 mM = 0.236 × 31.998 = 7.55 mg/L
    assert units.do_percent_to_mm(100.0) == pytest.approx(0.236)
    assert units.do_percent_to_mm(25.0) == pytest.approx(0.059)
    assert units.do_mm_to_percent(0.118) == pytest.approx(50.0)
    assert units.mm_o2_to_mg_per_l(0.236) == pytest.approx(7.5515, abs=1e-3)
    np.testing.assert_allclose(
        units.do_mm_to_percent(units.do_percent_to_mm([0, 40, 150])), [0, 40, 150]
    )


def test_o2_saturation_scales_with_partial_pressure() -> None:
    # Air at 1 atm: C* = 0.236 mM. Pure O2 at 1 atm: 0.236 / 0.2095 = 1.1265 mM.
    # Air at 1.2 bar abs: 0.236 × 1.2 / 1.01325 = 0.2795 mM.
    assert units.o2_saturation_mm() == pytest.approx(0.236)
    assert units.o2_saturation_mm(1.0) == pytest.approx(1.1265, abs=1e-4)
    assert units.o2_saturation_mm(0.2095, 1.2) == pytest.approx(0.2795, abs=1e-4)


def test_od_dcw_conversions_with_lab_factor() -> None:
    # OD600 80 at 0.3 g DCW/L per OD = 24 g/L; at 0.25 -> 20 g/L.
    assert units.od600_to_dcw(80.0) == pytest.approx(24.0)
    assert units.od600_to_dcw(80.0, dcw_per_od=0.25) == pytest.approx(20.0)
    assert units.dcw_to_od600(24.0) == pytest.approx(80.0)
    with pytest.raises(ValueError, match="dcw_per_od"):
        units.od600_to_dcw(1.0, dcw_per_od=0.0)


def test_gauge_to_absolute_pressure() -> None:
    assert units.bar_gauge_to_abs(0.0) == pytest.approx(1.01325)
    assert math.isclose(units.bar_gauge_to_abs(0.2), 1.21325)
