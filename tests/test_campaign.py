"""The 18-batch campaign: plan, planned variations, seeds, the CLI writing a dataset."""

from __future__ import annotations

import argparse
import json

import pytest

from bptwin.tui.commands import simulate as simulate_command
from bptwin.twin.campaign import (
    CAMPAIGN_SIZE,
    batch_seed,
    campaign_plan,
    generate_campaign,
    simulate_campaign_batch,
)
from bptwin.twin.dataset import read_dataset
from bptwin.twin.simulator import simulate_batch


def test_plan_has_the_phases_and_variations_of_domain():
    plan = campaign_plan()
    assert len(plan) == CAMPAIGN_SIZE
    assert [p.phase for p in plan] == ["A"] * 3 + ["B"] * 12 + ["C"] * 3
    assert [p.role for p in plan[15:]] == ["holdout"] * 3
    assert not plan[0].config.control.controlled
    assert all(p.config.control.controlled for p in plan[1:])
    assert [p.config.control.temp_setpoint_c for p in plan[6:9]] == [29.0, 30.0, 31.0]
    assert [p.config.reactor.inoculum_od600 for p in plan[9:12]] == [2.5, 4.0, 6.0]
    assert plan[14].config.control.ph_start == 5.3
    for nominal in (plan[3], plan[15], plan[17]):
        assert nominal.variation == "nominal" and nominal.config.disturbances == ()
    assert not any(p.config.faults.enabled for p in plan)
    assert all(p.config.faults.enabled for p in campaign_plan(faults=True))


def test_batch_13_temperature_spike_at_8_h():
    config = campaign_plan()[12].config
    result = simulate_batch(config, seed=1, hours=9)
    temp = result.truth.set_index("time_s")["truth_temp_c"]
    assert temp.loc[round(7.9 * 3600)] == pytest.approx(30.0, abs=0.3)
    assert temp.loc[round(8.3 * 3600)] == pytest.approx(32.0, abs=0.3)
    assert temp.loc[round(8.9 * 3600)] == pytest.approx(30.0, abs=0.3)


def test_batch_14_stirrer_step_to_400_rpm_for_an_hour():
    config = campaign_plan()[13].config
    result = simulate_batch(config, seed=1, hours=7.5)
    speed = result.sensors.set_index("time_s")["stirrer_speed"]
    assert speed.loc[round(5.9 * 3600)] == pytest.approx(500, abs=5)
    assert speed.loc[round(6.5 * 3600)] == pytest.approx(400, abs=5)
    assert speed.loc[round(7.2 * 3600)] == pytest.approx(500, abs=5)
    kla = result.truth.set_index("time_s")["truth_kla_per_h"]
    assert kla.loc[round(6.5 * 3600)] < 0.8 * kla.loc[round(5.9 * 3600)]


def test_batch_15_starts_at_ph_5_3_and_comes_down_without_base():
    result = simulate_batch(campaign_plan()[14].config, seed=1, hours=1)
    assert result.truth["truth_ph"].iloc[0] == pytest.approx(5.3)
    assert result.sensors["base_total"].max() == 0


def test_batch_seeds_are_stable_and_distinct():
    seeds = [batch_seed(7, n) for n in range(1, 19)]
    assert len(set(seeds)) == 18
    assert seeds == [batch_seed(7, n) for n in range(1, 19)]
    assert batch_seed(8, 1) != seeds[0]
    first = simulate_campaign_batch(5, 7, hours=0.2)
    again = simulate_campaign_batch(5, 7, hours=0.2)
    assert first.seed == seeds[4]
    assert first.sensors.equals(again.sensors)


def test_cli_writes_batches_and_manifest(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="bptwin")
    simulate_command.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "campaign"
    args = parser.parse_args(
        [
            "simulate",
            "--batch",
            "13",
            "--batch",
            "16",
            "--out",
            str(out),
            "--seed",
            "3",
            "--hours",
            "0.25",
            "--faults",
        ]
    )
    assert args.func(args, None) == 0
    assert "batch 16" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "bptwin-dataset" and manifest["format_version"] == 1
    assert manifest["faults"] is True and manifest["campaign_seed"] == 3
    entries = {entry["batch"]: entry for entry in manifest["batches"]}
    assert set(entries) == {13, 16}
    assert entries[13]["variation"].startswith("temperature spike")
    assert entries[16]["phase"] == "C" and entries[16]["role"] == "holdout"
    assert (out / "batch_13.parquet").is_file() and (out / "batch_16_samples.parquet").is_file()
    assert len(entries[16]["sha256"]["sensors"]) == 64
    # Adding a batch later keeps the ones already there.
    generate_campaign(out, 3, faults=True, batches=[2], hours=0.1)
    assert [b.number for b in read_dataset(out).batches] == [2, 13, 16]


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="bptwin")
    simulate_command.register(parser.add_subparsers(dest="command"))
    for argv, message in (
        (["simulate", "--out", str(tmp_path)], "--campaign or --batch"),
        (["simulate", "--batch", "19", "--out", str(tmp_path)], "1-18"),
        (["simulate", "--campaign", "--seed", "-1", "--out", str(tmp_path)], "--seed"),
    ):
        args = parser.parse_args(argv)
        assert args.func(args, None) == 2
        assert message in capsys.readouterr().err
