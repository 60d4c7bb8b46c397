"""The channel catalogue: every sensor channel bptwin knows, its unit and plausible range.

Shared vocabulary of drivers, stores, features and screens. Values outside
``physical_min``/``physical_max`` cannot be real (docs/process.md, Alarm defaults) and are
treated as missing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    unit: str
    label: str
    physical_min: float
    physical_max: float
    period_s: float = 1.0


CHANNELS: tuple[Channel, ...] = (
    Channel("ph", "pH", "pH", 2.0, 12.0),
    Channel("do", "%sat", "Dissolved O₂", -5.0, 150.0),
    Channel("od_probe", "AU", "In-situ OD probe", -0.5, 10.0),
    Channel("pressure", "bar", "Reactor pressure (gauge)", -0.5, 2.0),
    Channel("offgas_co2", "%v/v", "Off-gas CO₂", 0.0, 20.0),
    Channel("offgas_o2", "%v/v", "Off-gas O₂", 0.0, 100.0),
    Channel("air_flow", "L/min", "Inlet air flow (standard)", 0.0, 10.0),
    Channel("o2_flow", "L/min", "Inlet O₂ enrichment (standard)", 0.0, 5.0),
    Channel("offgas_flow", "L/min", "Outlet gas flow", 0.0, 15.0),
    Channel("stirrer_speed", "rpm", "Stirrer speed", 0.0, 2000.0),
    Channel("stirrer_torque", "N·cm", "Stirrer torque", 0.0, 100.0),
    Channel("temp_broth", "°C", "Broth temperature", 0.0, 60.0),
    Channel("temp_exhaust", "°C", "Exhaust gas temperature", 0.0, 60.0),
    Channel("temp_motor", "°C", "Stirrer motor temperature", 0.0, 120.0),
    Channel("temp_ph_probe", "°C", "pH probe temperature", 0.0, 60.0),
    Channel("temp_do_probe", "°C", "DO probe temperature", 0.0, 60.0),
    Channel("heater_output", "%", "Heater output", 0.0, 100.0),
    Channel("base_total", "mL", "Cumulative base (NH₄OH) added", 0.0, 500.0),
    Channel("vessel_weight", "g", "Vessel weight", 0.0, 5000.0, period_s=10.0),
    # Fed-batch runs: the feed pump's cumulative volume (the liquid volume follows it).
    Channel("feed_total", "mL", "Cumulative feed added", 0.0, 20000.0),
)

CHANNELS_BY_NAME: dict[str, Channel] = {channel.name: channel for channel in CHANNELS}


def channel(name: str) -> Channel:
    """The catalogue entry for ``name``; KeyError names the unknown channel."""
    try:
        return CHANNELS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r}") from None


def is_physical(name: str, value: float) -> bool:
    """False for values the sensor cannot physically report (e.g. pH < 2, DO > 150 %)."""
    entry = CHANNELS_BY_NAME.get(name)
    if entry is None:
        return True
    return entry.physical_min <= value <= entry.physical_max
