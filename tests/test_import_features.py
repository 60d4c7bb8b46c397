"""Features on partial sensor sets and real volumes: CO₂ analyser only, a fed-batch's volume,
dry-weight labels and carbon-balance constants fitted from the batch's own samples.

The CO₂-only balance is checked against a hand calculation (docs/features.md) and, on a lab
run made by tests/lab_exports.py from a simulated batch, against the simulator's truth.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bptwin.database.reading import Quality
from bptwin.twin.campaign import simulate_campaign_batch
from bptwin.twin.carbon_balance import CarbonBalancePlan
from bptwin.twin.dataset import BatchRecord, read_dataset
from bptwin.twin.features import (
    FLAG_CER_ASSUMES_RQ,
    FLAG_CO2_TOTAL_ASSUMES_RQ,
    FeatureConfig,
    feature_table,
    states_from_frame,
)
from bptwin.twin.lab_import import import_lab
from bptwin.twin.labels import LabelError, batch_table
from bptwin.twin.offgas import co2_only_balance, gas_balance
from bptwin.twin.process_inputs import feature_config, feature_config_for
from bptwin.twin.shadow import derived_readings
from bptwin.twin.volume import LiquidVolume, VolumePlan
from tests.lab_exports import import_map_text, write_lab_run

START = 1_780_000_000.0
# docs/features.md, "CO₂ analyser only": 1.0 sL/min air, 2.500 % CO₂ out, RQ 0.7, 1 L.
HAND_F_IN = 2.676898  # mol/h = 1.0 / 22.414 × 60
HAND_F_OUT = 2.648975  # mol/h = F_in × 1.000171 / 1.010714
HAND_CER = 65.1536  # mmol/L/h = (F_out × 0.025 − F_in × 0.0004) × 1000 / 1 L


def constant_frame(hours: float, **channels: float) -> pd.DataFrame:
    seconds = np.arange(0.0, hours * 3600.0)
    frame = pd.DataFrame({"timestamp": START + seconds})
    for name, value in channels.items():
        frame[name] = value
    return frame


def test_co2_only_balance_matches_the_hand_calculation_and_the_full_balance():
    balance = co2_only_balance(1.0, 0.025, 1.0, 0.7)
    assert float(balance.inlet_flow_mol_h) == pytest.approx(HAND_F_IN, rel=1e-6)
    assert float(balance.outlet_flow_mol_h) == pytest.approx(HAND_F_OUT, rel=1e-6)
    assert float(balance.cer) == pytest.approx(HAND_CER, rel=1e-6)
    # With the RQ the O₂ analyser would have measured, CO₂ alone gives the same CER.
    full = gas_balance(1.2, 0.195, 0.031, 1.0, o2_sl_per_min=0.05)
    rq = float(full.cer) / float(full.our)
    alone = co2_only_balance(1.2, 0.031, 1.0, rq, o2_sl_per_min=0.05)
    assert float(alone.cer) == pytest.approx(float(full.cer), rel=1e-12)
    # RQ 1: outlet flow equals inlet flow.
    equal = co2_only_balance(1.0, 0.025, 1.0, 1.0)
    assert float(equal.outlet_flow_mol_h) == pytest.approx(float(equal.inlet_flow_mol_h), rel=1e-12)


def test_the_pipeline_computes_cer_from_co2_alone_and_marks_what_rests_on_the_rq():
    frame = constant_frame(1.0, air_flow=1.0, offgas_co2=2.5, do=50.0)
    states = states_from_frame(frame, FeatureConfig(assumed_rq=0.7))
    last = states[-1]
    assert last.cer == pytest.approx(HAND_CER, rel=1e-6)
    assert FLAG_CER_ASSUMES_RQ in last.flags and FLAG_CO2_TOTAL_ASSUMES_RQ in last.flags
    assert math.isnan(last.our) and math.isnan(last.rq) and math.isnan(last.kla)
    hours = (last.end - states[0].end) / 3600.0
    assert last.cum_co2_mmol_per_l == pytest.approx(HAND_CER * hours, rel=1e-6)
    quality = {r.channel: r.quality for r in derived_readings(last)}
    assert quality["cer"] is Quality.UNCERTAIN
    assert quality["cum_co2"] is Quality.UNCERTAIN
    assert quality["biomass_carbon"] is Quality.UNCERTAIN
    # Not measured, so never shown as if it were: OUR, RQ, kLa and cumulative O₂ are bad.
    assert quality["our"] is quality["rq"] is quality["kla"] is Quality.BAD
    assert quality["cum_o2"] is Quality.BAD


def test_a_derived_value_without_its_inputs_is_never_stored_as_good():
    frame = constant_frame(0.5, do=50.0, ph=5.0, temp_broth=30.0)  # no off-gas at all
    last = states_from_frame(frame)[-1]
    assert math.isnan(last.cum_co2_mmol_per_l) and math.isnan(last.biomass_carbon_g_per_l)
    for reading in derived_readings(last):
        assert reading.quality is not Quality.GOOD, reading.channel


def test_the_volume_follows_feed_base_samples_and_evaporation():
    plan = VolumePlan(0.5, ("feed", "base", "samples"), 10.0, 2.0, (START + 3600.0,))
    volume = LiquidVolume(plan)
    assert volume.at(START, 0.0, 12.0, 0.0) == 0.5  # the feed counter stood at 12 mL
    assert volume.at(START + 7200, 2.0, 112.0, 20.0) == pytest.approx(
        0.5 + (100 + 20 - 10 - 4) / 1000
    )
    assert volume.at(START + 7230, 2.01, math.nan, 20.0) == pytest.approx(
        0.5 + (100 + 20 - 10 - 4.02) / 1000
    )  # a missing feed reading keeps the last one
    assert LiquidVolume(VolumePlan(0.5)).at(START, 0.0, 500.0, 40.0) == 0.5


def test_rates_per_litre_use_the_fed_batch_volume():
    # Air 1.0 sL/min, 2.5 % CO₂, a feed of 340 mL over 10 h into 0.5 L: V ends at 0.84 L.
    hours = 10.0
    frame = constant_frame(hours, air_flow=1.0, offgas_co2=2.5)
    frame["feed_total"] = np.linspace(0.0, 340.0, len(frame))
    fixed = states_from_frame(frame, FeatureConfig(volume_l=0.5))
    fed = states_from_frame(
        frame,
        feature_config({"initial_volume_l": 0.5, "volume_follows": ["feed"]}),
    )
    assert fixed[-1].cer == pytest.approx(HAND_CER / 0.5, rel=1e-6)
    end_volume = 0.5 + frame["feed_total"].iloc[-30:].mean() / 1000.0
    assert end_volume == pytest.approx(0.84, abs=0.001)
    assert fed[-1].cer == pytest.approx(HAND_CER / end_volume, rel=1e-4)
    # The CO₂ released (mmol) is what the off-gas says, whatever the volume.
    released = HAND_CER * 1.0 * (fed[-1].end - fed[0].end) / 3600.0
    assert fed[-1].cum_co2_mmol == pytest.approx(released, rel=1e-4)


@pytest.fixture(scope="module")
def full_batch() -> BatchRecord:
    return simulate_campaign_batch(16, seed=3)


@pytest.fixture(scope="module")
def lab_dataset(tmp_path_factory: pytest.TempPathFactory, full_batch: BatchRecord) -> Path:
    folder = tmp_path_factory.mktemp("lab")
    run = write_lab_run(folder / "Lauf_16", full_batch)
    # The simulated reactor keeps 1 L (its base does not add volume): no volume to follow.
    (folder / "lab.toml").write_text(import_map_text({16: run}, initial_volume_l=None))
    import_lab(folder / "lab.toml", folder / "dataset")
    return folder / "dataset"


def test_co2_only_cer_of_a_lab_run_agrees_with_the_simulator(lab_dataset, full_batch):
    record = read_dataset(lab_dataset).batch(16)
    table = feature_table(record.readings(), feature_config_for(record))
    ends = table["window_end"].to_numpy(float)
    sensors = full_batch.sensors
    truth_cer = np.interp(ends, sensors["timestamp"], sensors["truth_cer_mmol_l_h"])
    growing = truth_cer > 2.0
    cer = table["cer_smooth"].to_numpy(float)
    assert np.corrcoef(cer[growing], truth_cer[growing])[0, 1] > 0.99
    assert abs(np.median(cer[growing] / truth_cer[growing] - 1)) < 0.02
    total = table["cum_co2_mmol_per_l"].iloc[-1] * 1.0  # the simulated reactor's 1 L
    assert total == pytest.approx(sensors["truth_co2_cum_mmol"].iloc[-1], rel=0.02)
    # The phase follows growth; no longer "lag" for the whole run.
    phases = table["phase"].value_counts()
    assert phases.get("exponential", 0) > 0.5 * len(table) and phases.get("depleted", 0) > 0
    assert table["our"].isna().all() and table["rq"].isna().all()


def test_dry_weight_labels_when_a_lab_has_no_od600(lab_dataset, full_batch):
    record = read_dataset(lab_dataset).batch(16)
    with pytest.raises(LabelError, match="it has 8 with dry weight: label with samples-dcw"):
        batch_table(record, "samples")
    table = batch_table(record, "samples-dcw")
    ends = table["window_end"].to_numpy(float)
    truth = np.interp(
        ends, full_batch.sensors["timestamp"], full_batch.sensors["truth_biomass_g_l"]
    )
    late = truth > 1.0
    error = np.abs(table["label_od600"].to_numpy(float)[late] / truth[late] - 1)
    assert np.median(error) < 0.06  # dry weights carry their own measurement error
    assert table["inoculum_od600"].iloc[0] == pytest.approx(record.samples["dcw_g_l"].iloc[0])


def test_carbon_balance_constants_fitted_from_the_batch_s_samples(lab_dataset, full_batch):
    record = read_dataset(lab_dataset).batch(16)
    defaults = feature_table(record.readings(), feature_config_for(record))
    record.process = {**record.process, "carbon_balance": "fit"}
    fitted = feature_table(record.readings(), feature_config_for(record))
    ends = fitted["window_end"].to_numpy(float)
    truth = np.interp(
        ends, full_batch.sensors["timestamp"], full_batch.sensors["truth_biomass_g_l"]
    )
    first_sample = float(record.samples["timestamp"].iloc[0])
    before = ends < first_sample  # causal: nothing is fitted before the first sample
    np.testing.assert_array_equal(
        fitted["biomass_carbon_g_per_l"][before], defaults["biomass_carbon_g_per_l"][before]
    )
    late = ends > float(record.samples["timestamp"].iloc[2])
    fit_error = np.median(np.abs(fitted["biomass_carbon_g_per_l"][late] / truth[late] - 1))
    default_error = np.median(np.abs(defaults["biomass_carbon_g_per_l"][late] / truth[late] - 1))
    assert fit_error < 0.1 and fit_error <= default_error
    stated = feature_config({"initial_biomass_g_l": 0.2, "yield_x_per_co2_g_per_mmol": 0.05})
    assert stated.carbon_balance is None and stated.yield_x_per_co2 == 0.05
    plan = feature_config({"carbon_balance": "fit"}, dry_weights=[(START, 0.1)]).carbon_balance
    assert plan == CarbonBalancePlan(0.12, FeatureConfig().yield_x_per_co2, True, ((START, 0.1),))
