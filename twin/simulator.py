"""Mechanistic simulator of a *P. pastoris* glycerol batch in a 1 L bench reactor.

Model (equations in ``docs/simulator.md``): Monod growth on glycerol with O₂ limitation,
a lag phase and a cardinal temperature model; O₂ and CO₂ from the electron and carbon
balances (RQ ≈ 0.7 on glycerol); dissolved O₂ with kLa = k · N^a · vs^b; a well-mixed
headspace whose outlet composition follows the inert-N₂ balance of ``docs/process.md`` exactly
at steady state; DO cascade (stirrer, then O₂), pH control with NH₄OH, temperature
control, pressure, torque, vessel weight, in-situ OD probe; offline samples with error.

Two ways to run it, same numbers for the same seed:

- ``ReactorSimulator(config, seed).step()`` → :class:`SimStep`, one second at a time
  (drivers, real time or accelerated);
- ``simulate_batch(config, seed)`` → :class:`BatchResult`, a whole batch at once
  (campaign generator, tests), vectorising the sensor layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading
from bptwin.twin.sim_config import (
    AIR_CO2_FRACTION,
    AIR_O2_FRACTION,
    GLYCEROL_DEGREE_OF_REDUCTION,
    GLYCEROL_G_PER_CMOL,
    STANDARD_MOLAR_VOLUME_L,
    SimulationConfig,
    draw_batch_variation,
)
from bptwin.twin.sim_sensors import (
    CHANNEL_INDEX,
    CHANNEL_NAMES,
    FaultEvent,
    SensorLayer,
    draw_faults,
    draw_foam_events,
)

GLYCEROL_G_PER_MOL = 92.094
ATM_BAR = 1.01325
HEAT_OF_O2_J_PER_MOL = 460e3  # Cooney et al. 1969: ~460 kJ released per mol O2 consumed
HEAT_CAPACITY_J_PER_K = 5200.0  # 1 kg broth plus glass vessel
HEAT_LOSS_W_PER_K = 1.5  # to the room through glass and head plate
COOLING_MAX_W = 60.0  # cooling finger at full valve
BROTH_DENSITY_G_ML = 1.02
BASE_DENSITY_G_ML = 0.90  # 28 % NH4OH
IMPELLER_DIAMETER_M = 0.045
POWER_NUMBER = 5.0  # Rushton turbine, turbulent
GASSED_POWER_RATIO = 0.6
SEAL_FRICTION_N_CM = 2.0

IDEAL_ORDER = (
    "ph",
    "do",
    "od_probe",
    "pressure",
    "offgas_co2",
    "offgas_o2",
    "air_flow",
    "o2_flow",
    "offgas_flow",
    "stirrer_speed",
    "stirrer_torque",
    "temp_broth",
    "temp_exhaust",
    "temp_motor",
    "temp_ph_probe",
    "temp_do_probe",
    "heater_output",
    "base_total",
    "vessel_weight",
)
if IDEAL_ORDER != CHANNEL_NAMES:  # the hot loop builds values positionally
    raise ImportError("bptwin.twin.simulator: database/channels.py changed; update IDEAL_ORDER")
DO_INDEX, PH_INDEX, TEMP_INDEX = (CHANNEL_INDEX[n] for n in ("do", "ph", "temp_broth"))

TRUTH_KEYS: tuple[str, ...] = (  # first three: biomass, glycerol, od600 (read by samples)
    "biomass_g_l",
    "glycerol_g_l",
    "od600",
    "do_pct",
    "do_mmol_l",
    "our_mmol_l_h",
    "cer_mmol_l_h",
    "otr_mmol_l_h",
    "rq",
    "mu_per_h",
    "kla_per_h",
    "ph",
    "temp_c",
    "co2_cum_mmol",
    "o2_cum_mmol",
    "base_ml",
)
"""Keys of :attr:`SimStep.truth` (units in the names; ``_cum_mmol`` per batch, not per L)."""
TRUTH_PREFIX = "truth_"


@dataclass(frozen=True, slots=True)
class OfflineSample:
    """One offline sample as the lab would record it, with the true values alongside."""

    time_s: float
    kind: str  # "scheduled" or "depletion"
    planned_h: float | None
    od600: float
    dcw_g_l: float
    glycerol_g_l: float
    microscopy: str
    truth_od600: float
    truth_dcw_g_l: float
    truth_glycerol_g_l: float

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class SimStep:
    """Readings and true state at one instant. NaN reading = sensor reported nothing."""

    step: int
    time_s: float
    timestamp: float
    readings: dict[str, float]
    truth: dict[str, float]
    sample: OfflineSample | None = None

    def to_readings(self, reactor: str) -> list[Reading]:
        """The readings as bus objects (NaN → BAD quality); vessel weight only every 10 s."""
        out = []
        for name, value in self.readings.items():
            quality = Quality.BAD if math.isnan(value) else Quality.GOOD
            out.append(
                Reading(self.timestamp, reactor, name, value, CHANNELS_BY_NAME[name].unit, quality)
            )
        return out


@dataclass
class BatchResult:
    """A whole simulated batch: 1 Hz sensors, truth, samples and what happened."""

    sensors: pd.DataFrame  # time_s, timestamp, one column per channel
    truth: pd.DataFrame  # time_s, truth_<key>
    samples: pd.DataFrame  # one row per OfflineSample
    depletion_time_s: float | None
    faults: list[dict[str, Any]]
    foam_events: list[dict[str, float]]
    parameters: dict[str, float]
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """Sensors and truth side by side (one row per second)."""
        return pd.concat([self.sensors, self.truth.drop(columns="time_s")], axis=1)


def _ctmi(temp_c: float, t_min: float, t_opt: float, t_max: float) -> float:
    """Cardinal temperature model with inflection (Rosso et al. 1993), 1 at the optimum."""
    if temp_c <= t_min or temp_c >= t_max:
        return 0.0
    num = (temp_c - t_max) * (temp_c - t_min) ** 2
    den = (t_opt - t_min) * (
        (t_opt - t_min) * (temp_c - t_opt) - (t_opt - t_max) * (t_opt + t_min - 2 * temp_c)
    )
    return max(0.0, num / den)


class ReactorSimulator:
    """The simulated reactor, stepped at ``config.dt_s``; ``seed`` fixes every draw."""

    def __init__(
        self,
        config: SimulationConfig | None = None,
        seed: int = 0,
        start_timestamp: float | None = None,
    ) -> None:
        config = config or SimulationConfig()
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        streams = np.random.SeedSequence(seed).spawn(5)
        rng_var, rng_noise, rng_fault, rng_sample, rng_foam = (
            np.random.default_rng(s) for s in streams
        )
        if config.apply_variability:
            config = draw_batch_variation(config, rng_var)
        self.config = config
        self.dt_s = config.dt_s
        self.start_timestamp = (
            start_timestamp
            if start_timestamp is not None
            else datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc).timestamp()
        )
        self.n_steps = round(config.max_hours * 3600 / self.dt_s) + 1
        self.fault_events: list[FaultEvent] = draw_faults(
            config.faults, self.n_steps, self.dt_s, rng_fault
        )
        self.foam_events = draw_foam_events(config.faults, self.n_steps, self.dt_s, rng_foam)
        self.sensors = SensorLayer(
            config.sensors, self.fault_events, self.n_steps, self.dt_s, rng_noise
        )
        self._init_samples(rng_sample)
        self._init_state()

    # -- set-up -----------------------------------------------------------------------
    def _init_samples(self, rng: np.random.Generator) -> None:
        sampling = self.config.sampling
        jitter_s = sampling.jitter_min * 60
        planned = []
        for hours in sampling.schedule_h:
            # The inoculation sample cannot precede inoculation: jitter only forwards.
            low = 0.0 if hours == 0 else -jitter_s
            planned.append((hours * 3600 + rng.uniform(low, jitter_s), hours))
        self._planned_samples = sorted(planned)
        # The depletion sample follows the DO spike the operator sees: 0–15 min after.
        self._depletion_sample_delay_s = float(rng.uniform(0, jitter_s))
        count = len(planned) + 1
        self._sample_errors = rng.standard_normal((count, 5))
        self._sample_count = 0

    def _init_state(self) -> None:
        cfg = self.config
        reactor, kin, control = cfg.reactor, cfg.kinetics, cfg.control
        self.step_index = 0
        self.biomass = reactor.inoculum_od600 * reactor.inoculum_fraction * reactor.od_to_dcw_g_l
        self.biomass_start = self.biomass
        self.glycerol = reactor.glycerol_start_g_l
        self.air_l_min = reactor.air_flow_l_min
        self.o2_l_min = 0.0
        self.stirrer_rpm = control.stirrer_min_rpm
        self.pressure_bar_g = reactor.pressure_bar_g
        p_abs = (ATM_BAR + self.pressure_bar_g) / ATM_BAR
        self.c_star_ref = reactor.c_star_air_mmol_l * p_abs  # 100 % DO calibration point
        self.dissolved_o2 = self.c_star_ref
        self.gas_o2 = AIR_O2_FRACTION
        self.gas_co2 = AIR_CO2_FRACTION
        self.outlet_mol_h = self._inlet()[0]
        self.temp_broth = control.temp_setpoint_c
        self.temp_motor = reactor.room_temp_c + 15.0
        # Start the heater's integral at the heat the vessel loses at setpoint, so the batch
        # does not open with a controller transient.
        loss_w = HEAT_LOSS_W_PER_K * (self.temp_broth - reactor.room_temp_c)
        self.temp_integral = min(100.0, max(0.0, 100.0 * loss_w / control.heater_max_w))
        self.heater_pct = self.temp_integral
        self.base_ml = 0.0
        self.ph = control.ph_start
        self.co2_cum_mmol = 0.0
        self.o2_cum_mmol = 0.0
        self.last_cascade_s = -1e9
        self.samples_taken = 0
        self.depletion_time_s: float | None = None
        self.do_measured = 100.0
        self.ph_measured = self.ph
        self.temp_measured = self.temp_broth
        self._samples_done = 0
        self._depletion_sampled = False
        self._kla_exponent = reactor.kla_exponent()
        self._yc = kin.yield_x_s_g_g * GLYCEROL_G_PER_CMOL / kin.biomass_g_per_cmol
        self._o2_per_cmol = (
            GLYCEROL_DEGREE_OF_REDUCTION - self._yc * kin.biomass_degree_of_reduction
        ) / 4.0
        self._foam_index = 0
        # Setpoints from outside (bptwin's controller in closed loop) override the cascade.
        self._external: dict[str, float] = {}

    def _inlet(self) -> tuple[float, float, float]:
        """Inlet molar flows (mol/h): total, O2, CO2 from standard L/min of air and O2."""
        air = self.air_l_min * 60.0 / STANDARD_MOLAR_VOLUME_L
        oxygen = self.o2_l_min * 60.0 / STANDARD_MOLAR_VOLUME_L
        return air + oxygen, air * AIR_O2_FRACTION + oxygen, air * AIR_CO2_FRACTION

    # -- the model ----------------------------------------------------------------------
    def _active(self, kind: str, hours: float) -> float | None:
        for disturbance in self.config.disturbances:
            if disturbance.kind == kind and disturbance.active(hours):
                return disturbance.value
        return None

    def _foam_factor(self, step: int) -> float:
        events = self.foam_events
        while self._foam_index < len(events) and events[self._foam_index][1] <= step:
            self._foam_index += 1
        if self._foam_index < len(events) and events[self._foam_index][0] <= step:
            return 2.5
        return 1.0

    def _advance(self) -> tuple[list[float], tuple[float, ...]]:
        """Ideal channel values and truth at the current step, then integrate one step."""
        cfg = self.config
        kin, reactor, control = cfg.kinetics, cfg.reactor, cfg.control
        dt = self.dt_s
        dt_h = dt / 3600.0
        step = self.step_index
        t_s = step * dt
        hours = t_s / 3600.0
        volume = reactor.volume_l

        # Kinetics: Monod on glycerol, O2 limitation, lag, cardinal temperature.
        s_term = self.glycerol / (kin.ks_g_l + self.glycerol) if self.glycerol > 0 else 0.0
        o_term = self.dissolved_o2 / (kin.ko2_mmol_l + self.dissolved_o2)
        # The lag term is 1 to double precision after ~40 lag times: skip the exp then.
        if kin.lag_h <= 0 or hours >= 40 * kin.lag_h:
            lag = 1.0
        else:
            lag = 1.0 - math.exp(-hours / kin.lag_h)
        temp_term = _ctmi(self.temp_broth, kin.temp_min_c, kin.temp_opt_c, kin.temp_max_c)
        mu = kin.mu_max_per_h * s_term * o_term * lag * temp_term
        growth = mu * self.biomass  # g/L/h
        uptake_growth = growth / kin.yield_x_s_g_g  # g glycerol/L/h
        uptake_maint = kin.maintenance_g_g_h * self.biomass * s_term * o_term
        cmol_growth = uptake_growth / GLYCEROL_G_PER_CMOL * 1000.0  # mmol C/L/h
        maint_mmol = uptake_maint / GLYCEROL_G_PER_MOL * 1000.0  # mmol glycerol/L/h
        our = cmol_growth * self._o2_per_cmol + 3.5 * maint_mmol  # mmol O2/L/h
        cer = cmol_growth * (1.0 - self._yc) + 3.0 * maint_mmol  # mmol CO2/L/h

        # Gas supply and transfer.
        gas_l_min = self.air_l_min + self.o2_l_min
        kla = (
            reactor.kla_300rpm_per_h
            * (self.stirrer_rpm / 300.0) ** self._kla_exponent
            * (gas_l_min / reactor.air_flow_l_min) ** reactor.kla_gas_exponent
            * (self._foam_factor(step) if self.foam_events else 1.0)
        )
        p_abs = (ATM_BAR + self.pressure_bar_g) / ATM_BAR
        temp_factor = 1.0 + reactor.c_star_temp_coeff_per_k * (self.temp_broth - 30.0)
        c_star = reactor.c_star_air_mmol_l * temp_factor * p_abs * self.gas_o2 / AIR_O2_FRACTION
        otr = kla * (c_star - self.dissolved_o2)

        # Outlet gas: inert N2 carried through; steady state of the liquid, then the headspace.
        f_in, o2_in, co2_in = self._inlet()
        o2_exit = o2_in - otr * volume / 1000.0
        co2_exit = co2_in + cer * volume / 1000.0
        f_exit = f_in - otr * volume / 1000.0 + cer * volume / 1000.0
        gas_l_s = f_exit * STANDARD_MOLAR_VOLUME_L / 3600.0
        mix = min(1.0, dt * gas_l_s / reactor.headspace_l)

        # Sensor-facing ideal values at this instant.
        do_pct = 100.0 * self.dissolved_o2 / self.c_star_ref
        od600 = self.biomass / reactor.od_to_dcw_g_l
        sens = cfg.sensors
        od_probe = sens.od_probe_max_au * (
            1.0 - math.exp(-od600 * sens.od_probe_path_ratio / sens.od_probe_od_scale)
        )
        if sens.od_probe_gain != 1.0:
            od_probe *= sens.od_probe_gain
        rpm = self.stirrer_rpm
        torque = (
            POWER_NUMBER
            * GASSED_POWER_RATIO
            * 1000.0
            * (rpm / 60.0) ** 2
            * IMPELLER_DIAMETER_M**5
            / (2 * math.pi)
            * 100.0
            * (1.0 + 0.01 * self.biomass)  # broth viscosity rises with cell density
            + SEAL_FRICTION_N_CM
        )
        weight = (
            reactor.vessel_tare_g
            + volume * 1000.0 * BROTH_DENSITY_G_ML
            + self.base_ml * BASE_DENSITY_G_ML
            - self.samples_taken * reactor.sample_volume_ml * BROTH_DENSITY_G_ML
            - reactor.evaporation_g_h * hours
        )
        temp_exhaust = reactor.room_temp_c + 0.35 * (self.temp_broth - reactor.room_temp_c) + 1.0
        # Same order as IDEAL_ORDER (the channel catalogue), checked at import.
        ideal = [
            self.ph,
            do_pct,
            od_probe,
            self.pressure_bar_g,
            100.0 * self.gas_co2,
            100.0 * self.gas_o2,
            self.air_l_min,
            self.o2_l_min,
            self.outlet_mol_h * STANDARD_MOLAR_VOLUME_L / 60.0,
            rpm,
            torque,
            self.temp_broth,
            temp_exhaust,
            self.temp_motor,
            self.temp_broth + 0.05,
            self.temp_broth - 0.04,
            self.heater_pct if self.heater_pct > 0.0 else 0.0,
            self.base_ml,
            weight,
        ]
        # Same order as TRUTH_KEYS.
        truth = (
            self.biomass,
            self.glycerol,
            od600,
            do_pct,
            self.dissolved_o2,
            our,
            cer,
            otr,
            cer / our if our > 1e-9 else math.nan,
            mu,
            kla,
            self.ph,
            self.temp_broth,
            self.co2_cum_mmol,
            self.o2_cum_mmol,
            self.base_ml,
        )

        # Controllers read the probes (lagged, noisy, drifting) at this instant.
        sensors = self.sensors
        self.do_measured = sensors.measure_one(step, DO_INDEX, do_pct)
        self.ph_measured = sensors.measure_one(step, PH_INDEX, self.ph)
        self.temp_measured = sensors.measure_one(step, TEMP_INDEX, self.temp_broth)
        self._control(t_s, hours)

        # Integrate one step (explicit Euler; every time constant is > 4 s).
        self.biomass += growth * dt_h
        self.glycerol = max(0.0, self.glycerol - (uptake_growth + uptake_maint) * dt_h)
        if self.depletion_time_s is None and self.glycerol < cfg.depletion_threshold_g_l:
            self.depletion_time_s = t_s + dt
        self.dissolved_o2 = max(0.0, self.dissolved_o2 + (otr - our) * dt_h)
        self.gas_o2 += mix * (o2_exit / f_exit - self.gas_o2)
        self.gas_co2 += mix * (co2_exit / f_exit - self.gas_co2)
        self.outlet_mol_h += mix * (f_exit - self.outlet_mol_h)
        self.co2_cum_mmol += cer * volume * dt_h
        self.o2_cum_mmol += our * volume * dt_h
        if control.controlled:
            self.ph = control.ph_start + (
                self.base_ml
                - control.base_ml_per_g_dcw * (self.biomass - self.biomass_start) * volume
            ) / (control.buffer_ml_per_ph * volume)
        else:
            self.ph = control.ph_start + control.uncontrolled_ph_drift_per_h * (hours + dt_h)
        heat_w = (
            HEAT_OF_O2_J_PER_MOL * our * volume / 1000.0 / 3600.0
            + POWER_NUMBER
            * GASSED_POWER_RATIO
            * 1000.0
            * (rpm / 60.0) ** 3
            * IMPELLER_DIAMETER_M**5
            - HEAT_LOSS_W_PER_K * (self.temp_broth - reactor.room_temp_c)
        )
        if self.heater_pct >= 0:
            heat_w += control.heater_max_w * self.heater_pct / 100.0
        else:
            heat_w += COOLING_MAX_W * self.heater_pct / 100.0
        self.temp_broth += heat_w * dt / HEAT_CAPACITY_J_PER_K
        motor_target = reactor.room_temp_c + 12.0 + 0.012 * rpm
        self.temp_motor += (motor_target - self.temp_motor) * dt / 900.0
        self.step_index += 1
        return ideal, truth

    def _control(self, t_s: float, hours: float) -> None:
        """DO cascade, pH and temperature controllers acting on the measured values."""
        control = self.config.control
        reactor = self.config.reactor
        dt = self.dt_s
        setpoint = self._active("temp_setpoint", hours)
        setpoint = control.temp_setpoint_c if setpoint is None else setpoint
        error = setpoint - self.temp_measured
        self.temp_integral = min(
            100.0, max(-100.0, self.temp_integral + control.temp_ki_pct_per_k_s * error * dt)
        )
        self.heater_pct = min(
            100.0, max(-100.0, control.temp_kp_pct_per_k * error + self.temp_integral)
        )

        fixed_rpm = self._active("stirrer_fixed", hours)
        if not control.controlled:
            self.stirrer_rpm = control.stirrer_min_rpm if fixed_rpm is None else fixed_rpm
            self.o2_l_min = 0.0
        elif fixed_rpm is not None:
            self.stirrer_rpm = fixed_rpm
        else:
            self.stirrer_rpm = max(self.stirrer_rpm, control.stirrer_min_rpm)
            since = t_s - self.last_cascade_s
            if self.do_measured < control.do_setpoint_pct and since >= control.cascade_hold_s:
                if self.stirrer_rpm < control.stirrer_max_rpm:
                    self.stirrer_rpm = min(
                        control.stirrer_max_rpm, self.stirrer_rpm + control.stirrer_step_rpm
                    )
                else:
                    self.o2_l_min = min(reactor.o2_max_l_min, self.o2_l_min + control.o2_step_l_min)
                self.last_cascade_s = t_s
            elif since >= control.cascade_release_hold_s:
                if self.o2_l_min > 0 and self.do_measured > control.o2_release_pct:
                    self.o2_l_min = max(0.0, self.o2_l_min - control.o2_step_l_min)
                    if self.o2_l_min < 1e-9:
                        self.o2_l_min = 0.0
                    self.last_cascade_s = t_s
                elif (
                    self.o2_l_min == 0.0
                    and self.stirrer_rpm > control.stirrer_min_rpm
                    and self.do_measured > control.stirrer_release_pct
                ):
                    self.stirrer_rpm = max(
                        control.stirrer_min_rpm, self.stirrer_rpm - control.stirrer_step_rpm
                    )
                    self.last_cascade_s = t_s
        if self._external:
            self.stirrer_rpm = self._external.get("stirrer_speed", self.stirrer_rpm)
            self.o2_l_min = self._external.get("o2_flow", self.o2_l_min)
        gas = self.air_l_min + self.o2_l_min
        self.pressure_bar_g = reactor.pressure_bar_g * gas / reactor.air_flow_l_min

        if control.controlled and self.ph_measured < control.ph_setpoint - control.ph_deadband:
            self.base_ml += control.base_pump_ml_min * dt / 60.0

    # -- samples ------------------------------------------------------------------------
    def _due_sample(self, t_s: float, truth: tuple[float, ...]) -> OfflineSample | None:
        kind: str | None = None
        planned_h: float | None = None
        index = self._samples_done
        if index < len(self._planned_samples) and self._planned_samples[index][0] <= t_s:
            kind, planned_h = "scheduled", self._planned_samples[index][1]
        elif (
            self.depletion_time_s is not None
            and not self._depletion_sampled
            and t_s >= self.depletion_time_s + self._depletion_sample_delay_s
        ):
            kind = "depletion"
        if kind is None:
            return None
        if kind == "scheduled":
            self._samples_done += 1
        else:
            self._depletion_sampled = True
        errors = self._sample_errors[min(self._sample_count, len(self._sample_errors) - 1)]
        self._sample_count += 1
        self.samples_taken += 1
        sampling = self.config.sampling
        x, s, od = truth[0], truth[1], truth[2]  # TRUTH_KEYS order
        return OfflineSample(
            time_s=t_s,
            kind=kind,
            planned_h=planned_h,
            od600=max(0.0, od * (1.0 + sampling.od600_cv * errors[0])),
            dcw_g_l=max(
                0.0, x * (1.0 + sampling.dcw_cv * errors[1]) + sampling.dcw_abs_sd_g_l * errors[2]
            ),
            glycerol_g_l=max(
                0.0,
                s * (1.0 + sampling.glycerol_cv * errors[3])
                + sampling.glycerol_abs_sd_g_l * errors[4],
            ),
            microscopy="clean",
            truth_od600=od,
            truth_dcw_g_l=x,
            truth_glycerol_g_l=s,
        )

    # -- public API -----------------------------------------------------------------------
    EXTERNAL_SETPOINTS: tuple[str, ...] = ("stirrer_speed", "o2_flow")

    def apply_setpoint(self, parameter: str, value: float | None) -> None:
        """Drive ``stirrer_speed`` (rpm) or ``o2_flow`` (L/min) from outside from the next step.

        The value overrides the internal DO cascade (and a planned ``stirrer_fixed``) for that
        actuator until ``apply_setpoint(parameter, None)`` hands it back to the cascade.
        Safe to call from another thread (a bus handler) while the reactor is being stepped.
        """
        if parameter not in self.EXTERNAL_SETPOINTS:
            allowed = ", ".join(self.EXTERNAL_SETPOINTS)
            raise ValueError(f"setpoint {parameter!r} cannot be set; use one of {allowed}")
        if value is None:
            self._external.pop(parameter, None)
            return
        channel = CHANNELS_BY_NAME[parameter]
        low, high = channel.physical_min, channel.physical_max
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise ValueError(
                f"setpoint {parameter} = {value!r} is outside {low}–{high} {channel.unit}"
            )
        self._external[parameter] = float(value)

    @property
    def external_setpoints(self) -> dict[str, float]:
        """The actuators currently driven from outside, with their values."""
        return dict(self._external)

    @property
    def time_s(self) -> float:
        """Elapsed time since inoculation of the next step."""
        return self.step_index * self.dt_s

    def step(self) -> SimStep:
        """Readings at the current instant (first call: t = 0), then advance one ``dt_s``."""
        step = self.step_index
        t_s = step * self.dt_s
        ideal, truth = self._advance()
        sensors = self.sensors
        values = [0.0] * len(ideal)
        for index, value in enumerate(ideal):
            if index == DO_INDEX:
                values[index] = self.do_measured
            elif index == PH_INDEX:
                values[index] = self.ph_measured
            elif index == TEMP_INDEX:
                values[index] = self.temp_measured
            else:
                values[index] = sensors.measure_one(step, index, value)
        values = sensors.apply_faults_one(step, values)
        readings = {name: values[i] for i, name in enumerate(CHANNEL_NAMES)}
        if step % sensors._weight_period:
            del readings["vessel_weight"]
        sample = self._due_sample(t_s, truth)
        truth_map = dict(zip(TRUTH_KEYS, truth, strict=True))
        return SimStep(step, t_s, self.start_timestamp + t_s, readings, truth_map, sample)

    def parameters(self) -> dict[str, float]:
        """The batch's drawn parameters (after batch-to-batch variation)."""
        kin, reactor = self.config.kinetics, self.config.reactor
        return {
            "mu_max_per_h": kin.mu_max_per_h,
            "yield_x_s_g_g": kin.yield_x_s_g_g,
            "ks_g_l": kin.ks_g_l,
            "inoculum_od600": reactor.inoculum_od600,
            "kla_300rpm_per_h": reactor.kla_300rpm_per_h,
            "kla_700rpm_per_h": reactor.kla_700rpm_per_h,
            "od_to_dcw_g_l": reactor.od_to_dcw_g_l,
            "glycerol_start_g_l": reactor.glycerol_start_g_l,
            "biomass_start_g_l": self.biomass_start,
        }


def simulate_batch(
    config: SimulationConfig | None = None,
    seed: int = 0,
    *,
    start_timestamp: float | None = None,
    hours: float | None = None,
) -> BatchResult:
    """Simulate a whole batch fast (sensor layer vectorised).

    Runs until ``config.after_depletion_h`` after glycerol depletion or ``config.max_hours``;
    ``hours`` forces a fixed duration instead (short test batches).
    """
    sim = ReactorSimulator(config, seed, start_timestamp)
    cfg = sim.config
    dt = sim.dt_s
    limit = sim.n_steps if hours is None else min(sim.n_steps, round(hours * 3600 / dt) + 1)
    if limit < 1:
        raise ValueError(f"hours must cover at least one step, got {hours}")
    ideal_rows: list[list[float]] = []
    truth_rows: list[tuple[float, ...]] = []
    do_values: list[float] = []
    ph_values: list[float] = []
    temp_values: list[float] = []
    samples: list[OfflineSample] = []
    stop_after = round(cfg.after_depletion_h * 3600 / dt)
    end = limit
    for step in range(limit):
        ideal, truth = sim._advance()
        ideal_rows.append(ideal)
        truth_rows.append(truth)
        do_values.append(sim.do_measured)
        ph_values.append(sim.ph_measured)
        temp_values.append(sim.temp_measured)
        sample = sim._due_sample(step * dt, truth)
        if sample is not None:
            samples.append(sample)
        if hours is None and sim.depletion_time_s is not None and end == limit:
            end = min(limit, round(sim.depletion_time_s / dt) + stop_after)
        if step + 1 >= end:
            break
    ideal_array = np.asarray(ideal_rows)
    done = {
        DO_INDEX: np.asarray(do_values),
        PH_INDEX: np.asarray(ph_values),
        TEMP_INDEX: np.asarray(temp_values),
    }
    measured = sim.sensors.measure_all(ideal_array, done)
    times = np.arange(len(ideal_rows)) * dt
    sensors = pd.DataFrame(measured, columns=list(CHANNEL_NAMES))
    sensors.insert(0, "timestamp", sim.start_timestamp + times)
    sensors.insert(0, "time_s", times)
    truth = pd.DataFrame(np.asarray(truth_rows), columns=[TRUTH_PREFIX + k for k in TRUTH_KEYS])
    truth.insert(0, "time_s", times)
    sample_frame = pd.DataFrame(
        [s.to_dict() for s in samples], columns=list(OfflineSample.__slots__)
    )
    steps = len(times)
    return BatchResult(
        sensors=sensors,
        truth=truth,
        samples=sample_frame,
        depletion_time_s=sim.depletion_time_s,
        faults=[e.to_dict(dt) for e in sim.fault_events if e.start_step < steps],
        foam_events=[
            {"start_s": a * dt, "duration_s": (b - a) * dt} for a, b in sim.foam_events if a < steps
        ],
        parameters=sim.parameters(),
        seed=sim.seed,
    )
