"""Reactor/strain profiles of the simulator: the foreign test bed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bptwin.twin.sim_config import SimulationConfig
from bptwin.twin.sim_profiles import PROFILES, profile_config
from bptwin.twin.simulator import simulate_batch


def test_home_profile_is_the_training_campaigns_reactor() -> None:
    assert profile_config("home") == SimulationConfig()


def test_foreign_profiles_differ_as_real_reactors_do() -> None:
    home, lab_b = SimulationConfig(), profile_config("lab-b")
    assert lab_b.sensors.od_probe_od_scale == 35.0 != home.sensors.od_probe_od_scale
    assert lab_b.reactor.od_to_dcw_g_l != home.reactor.od_to_dcw_g_l
    assert lab_b.kinetics.yield_x_s_g_g != home.kinetics.yield_x_s_g_g
    assert lab_b.reactor.kla_300rpm_per_h < home.reactor.kla_300rpm_per_h
    assert lab_b.reactor.glycerol_start_g_l != home.reactor.glycerol_start_g_l
    assert lab_b.sensors.noise["do"] > home.sensors.noise["do"]
    assert lab_b.variability.od_to_dcw > 0 and lab_b.variability.yield_x_s > 0.03
    with pytest.raises(ValueError, match="known: home, lab-b, lab-c"):
        profile_config("lab-z")


def test_the_probe_reads_lower_with_a_later_saturation() -> None:
    home = simulate_batch(SimulationConfig(), 3, hours=6.0)
    probe = simulate_batch(profile_config("lab-c"), 3, hours=6.0)
    # lab-c: same process and noise, another probe (gain 1.15, half the path, 35 OD).
    assert probe.truth["truth_od600"].iloc[-1] == home.truth["truth_od600"].iloc[-1]
    assert (
        probe.sensors["od_probe"].iloc[-600:].mean() < home.sensors["od_probe"].iloc[-600:].mean()
    )


def test_batch_variation_of_the_home_campaign_is_unchanged_by_the_new_spreads() -> None:
    a = simulate_batch(SimulationConfig(), 11, hours=0.1)
    assert a.parameters["od_to_dcw_g_l"] == SimulationConfig().reactor.od_to_dcw_g_l
    b = simulate_batch(profile_config("lab-b"), 11, hours=0.1)
    assert b.parameters["od_to_dcw_g_l"] != profile_config("lab-b").reactor.od_to_dcw_g_l


def test_cli_simulates_a_profile_and_refuses_an_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptwin.tui.commands import simulate

    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    args = parser.parse_args(
        ["simulate", "--batch", "2", "--hours", "0.2", "--profile", "lab-b", "--quiet",
         "--out", str(tmp_path / "b")]
    )  # fmt: skip
    assert args.func(args) == 0
    from bptwin.twin.dataset import read_manifest

    assert "profile lab-b" in read_manifest(tmp_path / "b").description
    args = parser.parse_args(
        ["simulate", "--batch", "2", "--profile", "nope", "--out", str(tmp_path / "c")]
    )
    assert args.func(args) == 2
    assert "known: " + ", ".join(PROFILES) in capsys.readouterr().err
