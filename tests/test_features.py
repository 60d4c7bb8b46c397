"""Feature pipeline on synthetic 1 Hz batches whose true OUR/CER/μ are known by construction.

The synthetic batch here is not the simulator: it prescribes the biology (exponential biomass,
fixed RQ) and computes the off-gas mole fractions that a dry analyser would read, by inverting
the N2 balance: F_out = F_in − (OUR − CER)·V, y_O2,out = (F_in·y_O2,in − OUR·V)/F_out, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bptwin.database.reading import Reading
from bptwin.twin import features as ft
from bptwin.twin import offgas

T0 = 1_763_900_010.0  # a multiple of 30 s


@dataclass
class Synthetic:
    frame: pd.DataFrame
    our: np.ndarray  # true mmol/L/h per second
    cer: np.ndarray
    biomass: np.ndarray


def synthetic_batch(
    hours: float,
    mu: float = 0.2,
    x0: float = 0.12,
    yield_x_co2: float = 0.037,
    rq: float = 0.7,
    depletion_h: float | None = None,
    seed: int = 0,
    o2_noise: float = 0.02,
    co2_noise: float = 0.01,
) -> Synthetic:
    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    t_h = np.arange(n) / 3600.0
    biomass = x0 * np.exp(mu * t_h)
    cer = mu * biomass / yield_x_co2  # dX/dt = Y·CER
    do = np.clip(100.0 - 3.0 * cer / rq, 30.0, 100.0)  # falls with demand, cascade holds 30 %
    if depletion_h is not None:
        k = int(depletion_h * 3600)
        biomass[k:] = biomass[k]
        cer[k:] = 0.03 * cer[k]  # maintenance only
        after = np.arange(n - k)
        do[k:] = 95.0 - (95.0 - do[k]) * np.exp(-after / 180.0)  # rises within minutes
    our = cer / rq
    air = np.ones(n)
    f_in = offgas.standard_flow_to_mol_per_h(air)
    f_out = f_in - (our - cer) / 1000.0
    y_o2 = (f_in * offgas.Y_O2_AIR - our / 1000.0) / f_out
    y_co2 = (f_in * offgas.Y_CO2_AIR + cer / 1000.0) / f_out
    frame = pd.DataFrame(
        {
            "timestamp": T0 + np.arange(n, dtype=float),
            "air_flow": air,
            "o2_flow": np.zeros(n),
            "offgas_o2": y_o2 * 100 + rng.normal(0, o2_noise, n),
            "offgas_co2": y_co2 * 100 + rng.normal(0, co2_noise, n),
            "do": do + rng.normal(0, 0.3, n),
            "ph": 5.0 + rng.normal(0, 0.01, n),
            "temp_broth": 30.0 + rng.normal(0, 0.02, n),
            "temp_ph_probe": 30.1 + rng.normal(0, 0.02, n),
            "temp_do_probe": 29.9 + rng.normal(0, 0.02, n),
            "temp_exhaust": np.full(n, 24.0),
            "pressure": np.full(n, 0.02),
            "base_total": 3.0 * t_h,  # 3 mL/h
            "stirrer_speed": np.full(n, 700.0),
        }
    )
    return Synthetic(frame, our, cer, biomass)


def window_truth(values: np.ndarray, state: ft.ProcessState) -> float:
    """Mean of a per-second truth series over the state's window."""
    i0 = int(state.start - T0)
    return float(values[i0 : i0 + 30].mean())


@pytest.fixture(scope="module")
def growing() -> tuple[Synthetic, list[ft.ProcessState]]:
    batch = synthetic_batch(4.0, x0=1.0, seed=1)  # CER 5.4 → 12 mmol/L/h over 4 h
    # The carbon balance needs X0: here the true 1.0 g/L (the default assumes an OD 0.4 start).
    config = ft.FeatureConfig(
        inoculated_at=T0, initial_biomass_g_per_l=1.0, yield_x_per_co2_g_per_mmol=0.037
    )
    return batch, ft.states_from_frame(batch.frame, config)


def test_rates_growth_and_integrals_recovered(growing) -> None:
    batch, states = growing
    assert len(states) == 480
    late = states[200:]
    our_error = [
        abs(s.our_smooth - window_truth(batch.our, s)) / window_truth(batch.our, s) for s in late
    ]
    cer_error = [
        abs(s.cer_smooth - window_truth(batch.cer, s)) / window_truth(batch.cer, s) for s in late
    ]
    # OUR smoothed over 5 min lags a growing signal by ~2.5 min (≈ 0.8 % at μ = 0.2 h⁻¹).
    assert max(our_error) < 0.05
    assert max(cer_error) < 0.05
    assert np.nanmedian([s.rq_smooth for s in late]) == pytest.approx(0.7, abs=0.01)
    mu_cer = np.array([s.mu_cer for s in states])
    assert np.isnan(mu_cer[:59]).all()  # needs 0.5 h of points before it reports
    assert np.nanmax(np.abs(mu_cer[120:] - 0.2)) < 0.02
    assert np.nanmax(np.abs([s.mu_carbon - 0.2 for s in late])) < 0.02
    # ∫CER dt = (X(t) − X0)/Y: at the end of the last window (4 h) = (e^0.8 − 1)/0.037 = 33.13
    true_cum = (np.exp(0.2 * 4.0) - 1.0) / 0.037
    assert states[-1].cum_co2_mmol_per_l == pytest.approx(true_cum, rel=0.02)
    assert states[-1].cum_o2_mmol_per_l == pytest.approx(true_cum / 0.7, rel=0.02)
    assert states[-1].time_since_inoculation_h == pytest.approx(4.0)
    assert states[-1].phase == ft.PHASE_EXPONENTIAL


def test_channel_derived_features(growing) -> None:
    _, states = growing
    last = states[-1]
    assert last.base_rate_ml_per_h == pytest.approx(3.0, rel=1e-6)
    assert last.base_total_ml == pytest.approx(3.0 * (4.0 - 15 / 3600), rel=1e-3)
    assert last.temp_broth_minus_exhaust == pytest.approx(6.0, abs=0.05)
    assert last.temp_probe_spread == pytest.approx(0.2, abs=0.05)
    assert last.pressure_deviation_bar == pytest.approx(0.02)
    assert ft.FLAG_TEMP_PROBES_DISAGREE not in last.flags
    index = ft.MODEL_CHANNELS.index("stirrer_speed")
    assert last.channel_mean[index] == 700.0 and last.channel_std[index] == 0.0
    # kLa at quasi-steady state: OUR / (C* − C_L) for this batch's DO law, about 100–300 h⁻¹.
    kla = np.array([s.kla for s in states[200:]])
    assert np.isfinite(kla).all() and (kla > 50).all() and (kla < 400).all()
    assert last.consistency_flags == ()


def test_feature_vector_matches_names(growing) -> None:
    _, states = growing
    vector = ft.feature_vector(states[-1])
    assert vector.shape == (len(ft.FEATURE_NAMES),)
    assert len(set(ft.FEATURE_NAMES)) == len(ft.FEATURE_NAMES)
    assert vector[ft.FEATURE_NAMES.index("our")] == states[-1].our
    assert vector[ft.FEATURE_NAMES.index("do_mean")] == states[-1].channel_mean[0]


def test_early_batch_is_low_signal_and_rq_gated() -> None:
    batch = synthetic_batch(1.0, x0=0.12, seed=2)  # O2 drop ≈ 0.1 % v/v
    states = ft.states_from_frame(batch.frame)
    assert all(s.low_signal and ft.FLAG_LOW_SIGNAL in s.flags for s in states)
    assert all(
        math.isnan(s.rq) and s.rq_gate_reason == offgas.REASON_OUR_BELOW_THRESHOLD for s in states
    )
    assert all(math.isnan(s.mu_cer) for s in states)  # CER below 2 mmol/L/h: not fitted
    assert all(s.phase == ft.PHASE_LAG or s.phase == ft.PHASE_EXPONENTIAL for s in states)


def test_depletion_detected_and_timed() -> None:
    batch = synthetic_batch(2.5, x0=8.0, depletion_h=1.5, seed=3)
    states = ft.states_from_frame(batch.frame)
    confirmed = [s for s in states if s.depleted]
    assert confirmed, "depletion not detected"
    first = confirmed[0]
    true_time = T0 + 1.5 * 3600
    # The DO rise starts at depletion: the onset is the last window still ≤ 40 %. With the
    # 45 min rise allowance (slow Monod tail) it lands within 5 min of the true depletion.
    assert abs(first.depletion_time - true_time) <= 300.0
    # Confirmed within ~5 min after DO passed 80 % (about 5 min after depletion here).
    assert first.end - true_time <= 15 * 60
    assert first.phase == ft.PHASE_DEPLETED
    assert all(s.depleted for s in states[states.index(first) :])
    assert not any(s.depletion_state != ft.DEPLETION_NONE for s in states if s.end < true_time)


def test_foam_blip_is_not_depletion() -> None:
    batch = synthetic_batch(1.5, x0=8.0, seed=4)
    frame = batch.frame.copy()
    # A foam collapse: DO jumps to 90 % for 60 s while respiration carries on.
    frame.loc[3000:3059, "do"] = 90.0
    # An antifoam shot with an analyser dip: DO 92 % and CO2 near inlet for 90 s, then back.
    frame.loc[4000:4089, "do"] = 92.0
    frame.loc[4000:4089, "offgas_co2"] = 0.05
    frame.loc[4000:4089, "offgas_o2"] = 20.93
    states = ft.states_from_frame(frame)
    assert not any(s.depleted for s in states)
    assert any(ft.FLAG_DEPLETION_BLIP in s.flags for s in states)
    assert states[-1].depletion_state == ft.DEPLETION_NONE


def test_stream_equals_batch_features_bit_for_bit() -> None:
    batch = synthetic_batch(1.0, x0=3.0, seed=5)
    frame = batch.frame
    frame.loc[500:560, "do"] = np.nan  # gap across windows
    frame.loc[900, "ph"] = 1.0  # impossible value
    config = ft.FeatureConfig(inoculated_at=T0 - 3600)
    table = ft.feature_table(frame, config, reactor="r1")
    live = ft.StreamingFeatures(config, reactor="r1")
    states: list[ft.ProcessState] = []
    channels = [c for c in frame.columns if c != "timestamp"]
    values = frame[channels].to_numpy()
    for i, ts in enumerate(frame["timestamp"].to_numpy()):
        for j in np.random.default_rng(i).permutation(len(channels)):  # channel order varies
            if not math.isnan(values[i, j]):
                states.extend(live.add(Reading(float(ts), "r1", channels[j], float(values[i, j]))))
    states.extend(live.flush())
    assert [e.channel for e in live.pop_events()] == ["ph"]
    streamed = np.vstack([ft.feature_vector(s) for s in states])
    batch_matrix = table[list(ft.FEATURE_NAMES)].to_numpy()
    assert streamed.shape == batch_matrix.shape == (120, len(ft.FEATURE_NAMES))
    assert streamed.tobytes() == batch_matrix.tobytes()
    assert list(table["window_start"]) == [s.start for s in states]


def test_missing_air_flow_held_briefly_then_gap() -> None:
    batch = synthetic_batch(1.0, x0=3.0, seed=6)
    frame = batch.frame
    frame.loc[600:719, "air_flow"] = np.nan  # 2 min: held
    frame.loc[1800:2699, "air_flow"] = np.nan  # 15 min: gap after 5 min
    states = ft.states_from_frame(frame)
    by_start = {int(s.start - T0): s for s in states}
    held = by_start[630]
    assert "air_flow" in held.missing_channels and "air_flow" in held.filled_channels
    assert ft.FLAG_FILLED in held.flags and math.isfinite(held.our)
    late_in_gap = by_start[2400]
    assert "air_flow" in late_in_gap.gap_channels and ft.FLAG_GAP in late_in_gap.flags
    assert math.isnan(late_in_gap.our) and ft.FLAG_OFFGAS_MISSING in late_in_gap.flags
    early_in_gap = by_start[1920]
    assert math.isfinite(early_in_gap.our)


def test_consistency_rq_out_of_band_from_a_bad_co2_analyser() -> None:
    batch = synthetic_batch(1.0, x0=5.0, seed=7)
    frame = batch.frame.copy()
    frame["offgas_co2"] = frame["offgas_co2"] * 2.5  # span error: RQ ≈ 1.75
    states = ft.states_from_frame(frame)
    assert ft.FLAG_RQ_OUT_OF_BAND in states[-1].consistency_flags
    # Flagged only after it persists (10 windows), not at the first out-of-band window.
    assert ft.FLAG_RQ_OUT_OF_BAND not in states[5].flags


def test_consistency_co2_exceeds_glycerol_carbon() -> None:
    batch = synthetic_batch(1.0, x0=5.0, seed=8)
    # 0.5 g/L glycerol in 1 L = 0.5/92.094 × 3 × 1000 = 16.29 C-mmol; the batch makes ~33 mmol CO2.
    config = ft.FeatureConfig(glycerol_g_per_l=0.5)
    assert config.glycerol_carbon_mmol == pytest.approx(16.29, abs=0.01)
    states = ft.states_from_frame(batch.frame, config)
    flagged = [s for s in states if ft.FLAG_CO2_EXCEEDS_CARBON in s.flags]
    assert flagged and flagged[0].cum_co2_mmol > 16.29
    assert all(s.cum_co2_mmol <= 16.29 for s in states[: states.index(flagged[0])])
    assert ft.FLAG_CO2_EXCEEDS_CARBON not in ft.states_from_frame(batch.frame)[-1].flags


def test_consistency_our_inconsistent_with_do() -> None:
    batch = synthetic_batch(1.0, x0=5.0, seed=9)
    frame = batch.frame.copy()
    # The O2 analyser samples room air (a loose sampling line) while the DO probe reads 25 %:
    # OUR comes out ≤ 0 although the broth clearly takes up O2.
    frame["offgas_o2"] = 20.95
    states = ft.states_from_frame(frame)
    assert ft.FLAG_OUR_DO_INCONSISTENT in states[-1].consistency_flags
    assert ft.FLAG_OUR_DO_INCONSISTENT not in ft.states_from_frame(batch.frame)[-1].flags


def test_temperature_probe_disagreement_flagged() -> None:
    batch = synthetic_batch(0.2, x0=3.0, seed=10)
    frame = batch.frame
    frame["temp_do_probe"] = 27.5
    states = ft.states_from_frame(frame)
    assert states[-1].temp_probe_spread == pytest.approx(2.6, abs=0.1)
    assert ft.FLAG_TEMP_PROBES_DISAGREE in states[-1].flags


def test_feature_table_shape_and_info_columns() -> None:
    batch = synthetic_batch(0.5, x0=3.0, seed=11)
    table = ft.feature_table(batch.frame)
    assert list(table.columns) == list(ft.INFO_COLUMNS) + list(ft.FEATURE_NAMES)
    assert len(table) == 60
    assert (table["window_end"] - table["window_start"] == 30).all()


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="volume_l"):
        ft.FeatureConfig(volume_l=0.0)
    with pytest.raises(ValueError, match="mu_min_windows"):
        ft.FeatureConfig(mu_fit_windows=10, mu_min_windows=20)
