"""The SOP's deviation levels with their examples, and a deviation drafted from an alarm.

Guidance text for forms and a plain draft record; the notebook service validates and stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LEVEL_NAMES = {1: "minor", 2: "major", 3: "critical"}

# docs/process.md "Deviations": what each level means and the SOP's examples.
LEVEL_GUIDANCE: dict[int, tuple[str, tuple[str, ...]]] = {
    1: (
        "Level 1 minor: self-correcting.",
        ("DO < 20 % for 5-15 min", "one sample 15-30 min late"),
    ),
    2: (
        "Level 2 major: reviewed by the process and ML engineer (supervisor sign-off).",
        (
            "DO < 20 % for > 15 min",
            "pH off by > 0.3 for > 30 min",
            "any O2 enrichment",
            "temperature off by > 1 °C for > 15 min",
            "> 2 samples missed or > 30 min late",
        ),
    ),
    3: (
        "Level 3 critical: the batch is excluded from training (supervisor sign-off).",
        (
            "contamination",
            "DO < 15 % for > 30 min",
            "sensor data lost > 1 h",
            "pH off by > 0.5 for > 1 h",
            "inoculum out of spec",
            "power or control failure",
        ),
    ),
}

CATEGORIES = (
    "process",
    "sampling",
    "equipment",
    "sensor",
    "contamination",
    "inoculum",
    "alarm",
    "other",
)

# Channels worth a look beside an alarm's own (DO is held up by the cascade, and so on).
RELATED_CHANNELS: dict[str, tuple[str, ...]] = {
    "do": ("do", "stirrer_speed", "o2_flow", "air_flow", "offgas_o2", "offgas_co2"),
    "ph": ("ph", "base_total", "temp_ph_probe"),
    "temp_broth": ("temp_broth", "heater_output", "temp_exhaust"),
    "pressure": ("pressure", "air_flow", "offgas_flow"),
    "offgas_o2": ("offgas_o2", "offgas_co2", "air_flow", "do"),
    "offgas_co2": ("offgas_co2", "offgas_o2", "air_flow", "do"),
    "stirrer_speed": ("stirrer_speed", "stirrer_torque", "temp_motor", "do"),
}


def guidance(level: int | str | None) -> str:
    """The plain-text guidance for a level ("" for anything that is not 1, 2 or 3)."""
    try:
        number = int(str(level).strip())
    except ValueError:
        return ""
    if number not in LEVEL_GUIDANCE:
        return ""
    summary, examples = LEVEL_GUIDANCE[number]
    return f"{summary} e.g. " + "; ".join(examples)


def needs_supervisor(level: int) -> bool:
    """Levels 2 and 3 are reviewed by a supervisor."""
    return level >= 2


def suggested_level(priority: str) -> int:
    """A starting level for a deviation opened from an alarm (the operator decides)."""
    return 2 if priority == "critical" else 1


def related_channels(channel: str | None) -> tuple[str, ...]:
    """The channels whose values describe an alarm on ``channel`` (itself first)."""
    if not channel:
        return ()
    return RELATED_CHANNELS.get(channel, (channel,))


@dataclass(frozen=True)
class DeviationDraft:
    """Prefilled values for the deviation form (nothing stored until the operator saves)."""

    level: int = 1
    category: str = ""
    title: str = ""
    description: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    impact: str = ""
    root_cause: str = ""
    corrective_action: str = ""
