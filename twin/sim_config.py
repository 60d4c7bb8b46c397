"""Parameters of the simulated reactor: process, kinetics, control, sensors, faults.

Every number is a parameter with its unit; literature ranges come from ``docs/process.md``
(marked *approx.* there) and the sources named per field. Defaults describe the
nominal batch of the campaign: 1 L *P. pastoris* glycerol batch at 30 °C, pH 5.0, 1 vvm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

# Molar masses (g/mol) and the biomass formula used for the electron and carbon balances.
GLYCEROL_G_PER_CMOL = 92.094 / 3.0  # C3H8O3 per carbon
GLYCEROL_DEGREE_OF_REDUCTION = 14.0 / 3.0  # per C-mol, NH3 as N reference (Roels 1983)
STANDARD_MOLAR_VOLUME_L = 22.414  # L/mol at 0 °C, 1 atm (mass-flow controllers in standard L)
AIR_O2_FRACTION = 0.2095
AIR_CO2_FRACTION = 0.0004


@dataclass(frozen=True, slots=True)
class KineticParameters:
    """Monod growth on glycerol (docs/process.md, Growth; Çelik et al. 2009, Biochem Eng J)."""

    mu_max_per_h: float = 0.265  # h⁻¹, maximum specific growth rate at 30 °C (0.18–0.30 approx.)
    ks_g_l: float = 0.5  # g/L, Monod constant for glycerol (0.1–1 approx.)
    yield_x_s_g_g: float = 0.58  # g DCW / g glycerol (0.45–0.6 approx.)
    maintenance_g_g_h: float = 0.005  # g glycerol / g DCW / h, "low maintenance"
    ko2_mmol_l: float = 0.004  # mmol/L, O2 half-saturation (≈ 2 % of C*; yeasts 1–5 µM)
    lag_h: float = 0.8  # h, adaptation after inoculation (μ ramps up as 1 − exp(−t/lag))
    # Cardinal temperatures (Rosso et al. 1993 CTMI); P. pastoris grows poorly above ~35 °C.
    temp_min_c: float = 10.0
    temp_opt_c: float = 30.0
    temp_max_c: float = 37.0
    # Biomass CH1.76O0.56N0.17 + 6 % ash (typical yeast; Roels 1983): 26.7 g per C-mol,
    # degree of reduction 4.13. With Yx/s 0.58 g/g this gives RQ ≈ 0.70 (DOMAIN: 0.65–0.75).
    biomass_g_per_cmol: float = 26.7
    biomass_degree_of_reduction: float = 4.13


@dataclass(frozen=True, slots=True)
class ReactorParameters:
    """The 1 L bench vessel, medium and gas supply (docs/process.md, The batch)."""

    volume_l: float = 1.0  # L working volume (900 mL BSM + 100 mL inoculum)
    headspace_l: float = 0.6  # L gas volume above the broth (sets off-gas mixing time)
    glycerol_start_g_l: float = 36.0  # g/L: 40 g/L BSM diluted 9:10 by the inoculum
    inoculum_od600: float = 4.0  # OD600 of the inoculum culture (2.0–6.0)
    inoculum_fraction: float = 0.10  # v/v
    od_to_dcw_g_l: float = 0.30  # g DCW/L per OD600 unit (0.2–0.4, the lab's own line)
    air_flow_l_min: float = 1.0  # standard L/min = 1 vvm
    o2_max_l_min: float = 0.3  # standard L/min of pure O2 at the end of the cascade
    pressure_bar_g: float = 0.02  # gauge pressure at 1 vvm (exhaust filter back-pressure)
    vessel_diameter_m: float = 0.11  # for the superficial gas velocity
    # kLa = k · N^a · vs^b, fitted through these two points at 1 vvm (DOMAIN: 100–315 h⁻¹
    # over 300–700 rpm); b from van't Riet (1979) for coalescing media.
    kla_300rpm_per_h: float = 100.0
    kla_700rpm_per_h: float = 315.0
    kla_gas_exponent: float = 0.5
    c_star_air_mmol_l: float = 0.236  # mmol/L at 30 °C, 1 atm, air (DOMAIN oxygen row)
    c_star_temp_coeff_per_k: float = -0.013  # relative change of C* per K near 30 °C
    vessel_tare_g: float = 2450.0  # g, glass vessel, head plate and probes
    sample_volume_ml: float = 6.0  # mL removed per offline sample
    evaporation_g_h: float = 0.6  # g/h water lost through the exhaust condenser
    room_temp_c: float = 22.0

    def kla_exponent(self) -> float:
        """Exponent a of N in the kLa correlation, from the two calibration points."""
        return float(np.log(self.kla_700rpm_per_h / self.kla_300rpm_per_h) / np.log(700 / 300))

    def kla(self, stirrer_rpm: float, gas_flow_l_min: float) -> float:
        """kLa (h⁻¹) at a stirrer speed and total gas flow (vs relative to 1 vvm)."""
        a = self.kla_exponent()
        gas_ratio = max(gas_flow_l_min, 1e-6) / self.air_flow_l_min
        # float ** float is typed Any (a negative base gives a complex); both bases are >= 0.
        stirrer_factor: float = (max(stirrer_rpm, 0.0) / 300.0) ** a
        gas_factor: float = gas_ratio**self.kla_gas_exponent
        return self.kla_300rpm_per_h * stirrer_factor * gas_factor


@dataclass(frozen=True, slots=True)
class ControlParameters:
    """Setpoints and controllers (docs/process.md, The batch: setpoints and DO control)."""

    temp_setpoint_c: float = 30.0
    ph_setpoint: float = 5.0
    ph_start: float = 5.0
    ph_deadband: float = 0.02  # pump runs while pH < setpoint − deadband
    base_pump_ml_min: float = 0.5  # 28 % NH4OH pump rate when on
    # Base needed per g DCW formed: N assimilation (≈ 6.4 mmol N/g, 14.8 mmol NH3/mL of 28 %
    # NH4OH) plus proton release; calibrated so a 20 g/L batch uses ~30 mL (DOMAIN: 20–40 mL).
    base_ml_per_g_dcw: float = 1.5
    buffer_ml_per_ph: float = 10.0  # mL NH4OH per pH unit per L (phosphate-rich BSM)
    do_setpoint_pct: float = 30.0  # cascade steps up below this (keeps DO > 20 %)
    # Above these the cascade steps back: O2 first (costly, over-saturates), stirrer only
    # near saturation so the end-of-batch DO rise is not turned into a saw-tooth.
    o2_release_pct: float = 85.0
    stirrer_release_pct: float = 90.0
    cascade_hold_s: float = 45.0  # s between upward cascade steps
    cascade_release_hold_s: float = 10.0  # s between downward steps (O2 goes first, fast)
    stirrer_min_rpm: float = 500.0
    stirrer_max_rpm: float = 1000.0
    stirrer_step_rpm: float = 50.0
    o2_step_l_min: float = 0.02
    heater_max_w: float = 120.0  # heating blanket; negative output drives the cooling finger
    temp_kp_pct_per_k: float = 60.0
    temp_ki_pct_per_k_s: float = 0.15
    controlled: bool = True  # False: batch 1 shake-down, fixed 500 rpm, no pH control
    uncontrolled_ph_drift_per_h: float = 0.02  # DOMAIN: "pH drifts up" without control


@dataclass(frozen=True, slots=True)
class Disturbance:
    """A planned change for a while: ``kind`` is "temp_setpoint" (°C) or "stirrer_fixed" (rpm).

    A fixed stirrer speed overrides the DO cascade while active (DOMAIN batch 14).
    """

    kind: str
    start_h: float
    duration_h: float
    value: float

    def active(self, hours: float) -> bool:
        return self.start_h <= hours < self.start_h + self.duration_h


@dataclass(frozen=True, slots=True)
class SensorParameters:
    """Noise (1 SD), first-order lag (t63, s) and drift per channel."""

    noise: dict[str, float] = field(
        default_factory=lambda: {
            "ph": 0.004,
            "do": 0.3,
            "od_probe": 0.004,
            "pressure": 0.0015,
            "offgas_co2": 0.004,
            "offgas_o2": 0.01,
            "air_flow": 0.004,
            "o2_flow": 0.002,
            "offgas_flow": 0.006,
            "stirrer_speed": 1.0,
            "stirrer_torque": 0.05,
            "temp_broth": 0.02,
            "temp_exhaust": 0.05,
            "temp_motor": 0.1,
            "temp_ph_probe": 0.03,
            "temp_do_probe": 0.03,
            "heater_output": 0.3,
            "base_total": 0.0,
            "vessel_weight": 0.5,
        }
    )
    lag_s: dict[str, float] = field(
        default_factory=lambda: {
            "ph": 6.0,
            "do": 18.0,  # DOMAIN: DO probe t63 < 30 s
            "od_probe": 3.0,
            "offgas_co2": 25.0,  # analyser cell plus sample line
            "offgas_o2": 25.0,
            "temp_broth": 8.0,
            "temp_ph_probe": 20.0,
            "temp_do_probe": 20.0,
            "temp_exhaust": 30.0,
        }
    )
    # Drift per day: the sign and size are drawn per batch as N(0, value).
    drift_per_day: dict[str, float] = field(
        default_factory=lambda: {
            "ph": 0.02,
            "do": 1.0,
            "offgas_o2": 0.03,
            "offgas_co2": 0.01,
            "od_probe": 0.01,
            "pressure": 0.002,
        }
    )
    drift: bool = True
    od_probe_max_au: float = 4.0  # saturation level of the in-situ probe
    od_probe_od_scale: float = 30.0  # OD600 at which the probe reaches 63 % of saturation
    # Another probe or another installation: a calibration gain on the reading and the optical
    # path length relative to the home probe's (a longer path saturates at a lower OD600).
    od_probe_gain: float = 1.0
    od_probe_path_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class FaultParameters:
    """Sensor faults and process artefacts; all off unless ``enabled``."""

    enabled: bool = False
    dropouts_per_day: float = 4.0  # channel reports nothing (NaN) for 5–300 s
    frozen_per_day: float = 2.0  # value sticks for 1–20 min
    spikes_per_day: float = 12.0  # one-sample outlier of 5–20 noise SD or 5 % of span
    foam_events_per_day: float = 2.0  # foam collapse / antifoam shot: kLa ×2 for ~1 min
    foam_events: bool = True  # only with enabled


@dataclass(frozen=True, slots=True)
class SamplingParameters:
    """Offline samples (docs/process.md: 0, 2, 4, 6, 8, 12, 16 h and at depletion)."""

    schedule_h: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)
    jitter_min: float = 15.0
    od600_cv: float = 0.03  # spectrophotometer after dilution
    dcw_cv: float = 0.05  # gravimetric DCW
    dcw_abs_sd_g_l: float = 0.03
    glycerol_cv: float = 0.02  # HPLC
    glycerol_abs_sd_g_l: float = 0.1


@dataclass(frozen=True, slots=True)
class VariabilityParameters:
    """Batch-to-batch spread (relative 1 SD) drawn from the batch seed."""

    mu_max: float = 0.05
    yield_x_s: float = 0.03
    inoculum_od600: float = 0.05
    kla: float = 0.06
    # Spreads the home campaign does not have (0 = no draw, so its batches stay as they are).
    od_to_dcw: float = 0.0
    od_probe_gain: float = 0.0


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """Everything that defines one simulated batch. ``seed`` fixes every random draw."""

    kinetics: KineticParameters = field(default_factory=KineticParameters)
    reactor: ReactorParameters = field(default_factory=ReactorParameters)
    control: ControlParameters = field(default_factory=ControlParameters)
    sensors: SensorParameters = field(default_factory=SensorParameters)
    faults: FaultParameters = field(default_factory=FaultParameters)
    sampling: SamplingParameters = field(default_factory=SamplingParameters)
    variability: VariabilityParameters = field(default_factory=VariabilityParameters)
    disturbances: tuple[Disturbance, ...] = ()
    apply_variability: bool = True
    dt_s: float = 1.0  # integration step and sensor period
    # Stop this long after glycerol depletion, or at max_hours, whichever first.
    after_depletion_h: float = 1.5
    max_hours: float = 32.0
    depletion_threshold_g_l: float = 0.1  # glycerol below this counts as depleted

    def __post_init__(self) -> None:
        if self.dt_s <= 0 or self.dt_s > 5:
            raise ValueError(f"dt_s must be in (0, 5] s, got {self.dt_s}")
        if self.max_hours <= 0:
            raise ValueError(f"max_hours must be positive, got {self.max_hours}")
        for disturbance in self.disturbances:
            if disturbance.kind not in ("temp_setpoint", "stirrer_fixed"):
                raise ValueError(f"unknown disturbance kind {disturbance.kind!r}")
        positive = {
            "kinetics.mu_max_per_h": self.kinetics.mu_max_per_h,
            "kinetics.ks_g_l": self.kinetics.ks_g_l,
            "reactor.volume_l": self.reactor.volume_l,
            "reactor.headspace_l": self.reactor.headspace_l,
            "reactor.inoculum_od600": self.reactor.inoculum_od600,
            "reactor.od_to_dcw_g_l": self.reactor.od_to_dcw_g_l,
            "reactor.air_flow_l_min": self.reactor.air_flow_l_min,
            "reactor.kla_300rpm_per_h": self.reactor.kla_300rpm_per_h,
            "reactor.kla_700rpm_per_h": self.reactor.kla_700rpm_per_h,
            "control.buffer_ml_per_ph": self.control.buffer_ml_per_ph,
            "control.stirrer_min_rpm": self.control.stirrer_min_rpm,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 < self.kinetics.yield_x_s_g_g < 1:
            raise ValueError(
                f"kinetics.yield_x_s_g_g must be in (0, 1) g/g, got {self.kinetics.yield_x_s_g_g}"
            )
        if self.control.stirrer_max_rpm < self.control.stirrer_min_rpm:
            raise ValueError("control.stirrer_max_rpm is below control.stirrer_min_rpm")

    def with_changes(self, **sections: dict[str, Any]) -> SimulationConfig:
        """A copy with fields of sections replaced: ``with_changes(control={"ph_start": 5.3})``."""
        updates: dict[str, Any] = {}
        names = {f.name for f in fields(self)}
        for name, changes in sections.items():
            if name not in names:
                raise ValueError(f"SimulationConfig has no section {name!r}")
            current = getattr(self, name)
            updates[name] = replace(current, **changes) if isinstance(changes, dict) else changes
        return replace(self, **updates)


def draw_batch_variation(config: SimulationConfig, rng: np.random.Generator) -> SimulationConfig:
    """Apply the batch-to-batch spread (μmax, Yx/s, inoculum, kLa) drawn from ``rng``."""
    spread = config.variability
    factors = rng.normal(1.0, [spread.mu_max, spread.yield_x_s, spread.inoculum_od600, spread.kla])
    factors = np.clip(factors, 0.7, 1.3)
    kin, reactor, sensors = config.kinetics, config.reactor, config.sensors
    if spread.od_to_dcw > 0 or spread.od_probe_gain > 0:
        # Drawn after the four above, and only when asked: the home campaign is unchanged.
        extra = np.clip(rng.normal(1.0, [spread.od_to_dcw, spread.od_probe_gain]), 0.7, 1.3)
        reactor = replace(reactor, od_to_dcw_g_l=reactor.od_to_dcw_g_l * extra[0])
        sensors = replace(sensors, od_probe_gain=sensors.od_probe_gain * extra[1])
    return replace(
        config,
        sensors=sensors,
        kinetics=replace(
            kin,
            mu_max_per_h=kin.mu_max_per_h * factors[0],
            yield_x_s_g_g=kin.yield_x_s_g_g * factors[1],
        ),
        reactor=replace(
            reactor,
            inoculum_od600=reactor.inoculum_od600 * factors[2],
            kla_300rpm_per_h=reactor.kla_300rpm_per_h * factors[3],
            kla_700rpm_per_h=reactor.kla_700rpm_per_h * factors[3],
        ),
        apply_variability=False,
    )
