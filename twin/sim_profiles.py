"""Reactor/strain profiles for ``bptwin simulate --profile``: other reactors than the home one.

The shipped model is trained on the *home* profile (the reference lab's 1 L vessel, probe and
strain). A model meets another lab's reactor as its first batch; these profiles differ from
home the way real reactors and strains do, so the transfer can be tested without their data:

* **OD probe**: gain (calibration), saturation OD and optical path length;
* **strain**: μmax, Ks, biomass yield, maintenance, lag;
* **lab practice**: OD-to-DCW factor (their spectrophotometer and dilution), initial glycerol,
  inoculum;
* **vessel**: kLa (impeller, sparger);
* **sensors**: noise and drift of DO, off-gas and OD probe;
* **spread**: a wider batch-to-batch spread of yield and OD-to-DCW factor.

Every profile is a base :class:`SimulationConfig`; the campaign's planned variations
(``twin/campaign.py``) are applied on top of it exactly as for home.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bptwin.twin.sim_config import SimulationConfig

HOME = "home"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    summary: str
    build: Callable[[], SimulationConfig]

    def config(self) -> SimulationConfig:
        return self.build()


def _scaled(values: dict[str, float], factor: float, names: tuple[str, ...]) -> dict[str, float]:
    return {k: (v * factor if k in names else v) for k, v in values.items()}


def _home() -> SimulationConfig:
    return SimulationConfig()


def _lab_b() -> SimulationConfig:
    """Another lab's 1 L reactor and strain: every difference at once (the transfer test)."""
    base = SimulationConfig()
    noisy = ("do", "od_probe", "offgas_co2", "offgas_o2")
    return replace(
        base,
        kinetics=replace(
            base.kinetics,
            mu_max_per_h=0.245,
            ks_g_l=0.3,
            yield_x_s_g_g=0.56,
            maintenance_g_g_h=0.007,
            lag_h=1.1,
        ),
        reactor=replace(
            base.reactor,
            glycerol_start_g_l=38.0,
            inoculum_od600=3.5,
            od_to_dcw_g_l=0.31,
            kla_300rpm_per_h=90.0,
            kla_700rpm_per_h=290.0,
        ),
        sensors=replace(
            base.sensors,
            od_probe_od_scale=35.0,
            od_probe_gain=0.97,
            noise=_scaled(base.sensors.noise, 1.5, noisy),
            drift_per_day=_scaled(base.sensors.drift_per_day, 1.5, noisy),
        ),
        variability=replace(
            base.variability,
            mu_max=0.07,
            yield_x_s=0.06,
            inoculum_od600=0.10,
            kla=0.10,
            od_to_dcw=0.06,
            od_probe_gain=0.04,
        ),
    )


def _lab_c() -> SimulationConfig:
    """Home reactor and strain with another OD probe: gain 1.15, saturation ~35 OD, half path."""
    base = SimulationConfig()
    return replace(
        base,
        sensors=replace(
            base.sensors, od_probe_od_scale=35.0, od_probe_gain=1.15, od_probe_path_ratio=0.5
        ),
    )


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(HOME, "the reference lab's reactor, probe and strain (training campaign)", _home),
        Profile(
            "lab-b",
            "another lab: other strain kinetics (μmax 0.245 /h, Ks 0.3 g/L, lag 1.1 h, more "
            "maintenance), an OD probe saturating at ~35 OD instead of 30 with gain 0.97, "
            "OD-to-DCW 0.31, 38 g/L glycerol, inoculum OD 3.5, lower kLa, 1.5× sensor noise "
            "and drift, twice the spread of yield and OD-to-DCW",
            _lab_b,
        ),
        Profile(
            "lab-c",
            "the home reactor and strain with another OD probe (gain 1.15, ~35 OD saturation, "
            "half the path length)",
            _lab_c,
        ),
    )
}


def profile_config(name: str) -> SimulationConfig:
    """The base configuration of profile ``name`` (ValueError naming the known ones)."""
    try:
        return PROFILES[name].config()
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
