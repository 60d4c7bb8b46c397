"""Sensor calibration rules (docs/process.md, "Sensor calibration"): pure, no UI, no SQL.

What each wizard computes from what was measured, and whether it passes:

* pH two-point: buffer 7.00 then 4.01, mV at each and the probe temperature; slope % against the
  temperature-corrected Nernst slope, offset = E at pH 7; pass when slope >= 95 %.
* DO: 0 % (N2) and 100 % (air) readings, each taken when stable, and the t63 response time
  measured from the step N2 -> air; pass when t63 < 30 s.
* Off-gas O2/CO2: N2 zero (0.0 +- 0.1 %), room-air span (O2 20.9 +- 0.2 %, CO2 about 0.04 %),
  stable within +- 0.05 % for 5 min, drift against the previous calibration < 0.2 %.
* Pressure zero open to atmosphere: 0.000 +- 0.005 bar g.
* OD-probe blank in sterile medium: the blank is recorded (no acceptance limit).

Also: a stability detector over a live stream of (t, value), the t63 of a recorded step and the
wizards' step plans. The policy (which kinds are mandatory, how long each stays valid) and the
validity intervals of a channel's history are in :mod:`bptwin.eln.calibration_validity`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bptwin.eln.errors import NotebookValidationError


class CalibrationKind(str, Enum):
    """The calibration wizards; the value is stored as ``CalibrationRecord.kind``."""

    PH = "ph_two_point"
    DO = "do_zero_span"
    OFFGAS = "offgas_zero_span"
    PRESSURE = "pressure_zero"
    OD_PROBE = "od_probe_blank"


# Short names used in settings (``[calibration] mandatory = ["ph", "do", "offgas"]``).
KIND_BY_SETTING: dict[str, CalibrationKind] = {
    "ph": CalibrationKind.PH,
    "do": CalibrationKind.DO,
    "offgas": CalibrationKind.OFFGAS,
    "pressure": CalibrationKind.PRESSURE,
    "od_probe": CalibrationKind.OD_PROBE,
}
KIND_CHANNELS: dict[CalibrationKind, tuple[str, ...]] = {
    CalibrationKind.PH: ("ph",),
    CalibrationKind.DO: ("do",),
    CalibrationKind.OFFGAS: ("offgas_o2", "offgas_co2"),
    CalibrationKind.PRESSURE: ("pressure",),
    CalibrationKind.OD_PROBE: ("od_probe",),
}
KIND_LABELS: dict[CalibrationKind, str] = {
    CalibrationKind.PH: "pH two-point (7.00, 4.01)",
    CalibrationKind.DO: "DO 0 % / 100 % and t63",
    CalibrationKind.OFFGAS: "Off-gas O₂/CO₂ zero and span",
    CalibrationKind.PRESSURE: "Pressure zero",
    CalibrationKind.OD_PROBE: "OD-probe blank",
}
CHANNEL_KIND: dict[str, CalibrationKind] = {
    channel: kind for kind, channels in KIND_CHANNELS.items() for channel in channels
}
DEFAULT_MANDATORY_KINDS: tuple[CalibrationKind, ...] = (
    CalibrationKind.PH,
    CalibrationKind.DO,
    CalibrationKind.OFFGAS,
)
# A calibration at setup must still hold at the end of a 30 h batch: 72 h covers both.
DEFAULT_VALIDITY_HOURS: dict[str, float] = {
    "ph": 72.0,
    "do": 72.0,
    "offgas": 72.0,
    "pressure": 720.0,
    "od_probe": 72.0,
}

# ---- limits (docs/process.md) --------------------------------------------------------------------

NERNST_SLOPE_25C_MV = 59.16  # 2.303·R·T/F at 25 °C (same value as twin.units)
KELVIN_OFFSET = 273.15
REFERENCE_TEMPERATURE_K = 298.15
PH_BUFFER_FIRST = 7.00
PH_BUFFER_SECOND = 4.01
PH_SLOPE_PASS_PERCENT = 95.0
PH_SLOPE_TYPICAL_MAX_PERCENT = 102.0
PH_OFFSET_TYPICAL_MV = 30.0
PH_TEMPERATURE_RANGE_C = (0.0, 60.0)
PH_MV_RANGE = (-1000.0, 1000.0)

DO_T63_PASS_S = 30.0
# Not in the SOP table, but a "calibration" whose 100 % reads barely above its 0 % is a dead
# membrane: refuse it rather than store a gain of 10x.
DO_MIN_SPAN_PERCENT = 50.0
DO_STABILITY_WINDOW_S = 60.0
DO_STABILITY_TOLERANCE_PERCENT = 0.5

OFFGAS_ZERO_TOLERANCE_PERCENT = 0.1
OFFGAS_O2_SPAN_PERCENT = 20.9
OFFGAS_O2_SPAN_TOLERANCE_PERCENT = 0.2
OFFGAS_CO2_SPAN_PERCENT = 0.04
# "CO2 ≈ 0.04 %": room air in an occupied lab reads 0.04-0.06 %; 0.03 % either side is "about".
OFFGAS_CO2_SPAN_TOLERANCE_PERCENT = 0.03
OFFGAS_DRIFT_LIMIT_PERCENT = 0.2
OFFGAS_STABILITY_WINDOW_S = 300.0
OFFGAS_STABILITY_TOLERANCE_PERCENT = 0.05

PRESSURE_ZERO_TOLERANCE_BAR = 0.005
PRESSURE_STABILITY_WINDOW_S = 10.0
PRESSURE_STABILITY_TOLERANCE_BAR = 0.002

OD_BLANK_STABILITY_WINDOW_S = 30.0
OD_BLANK_STABILITY_TOLERANCE_AU = 0.01
OD_BLANK_RANGE_AU = (-0.5, 2.0)

PH_STABILITY_WINDOW_S = 30.0
PH_STABILITY_TOLERANCE_MV = 0.5
PH_STABILITY_TOLERANCE_PH = 0.01

T63_FRACTION = 1.0 - math.exp(-1.0)  # 0.632: one time constant of a first-order response


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One acceptance criterion: what was found, against which limit, and whether it holds."""

    name: str
    value: float | None
    unit: str
    limit: str
    passed: bool

    def line(self) -> str:
        shown = "—" if self.value is None else f"{self.value:.4g} {self.unit}".rstrip()
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name} {shown} ({self.limit})"


@dataclass(frozen=True, slots=True)
class CalibrationOutcome:
    """A computed calibration of one channel, ready for ``NotebookService.record_calibration``."""

    kind: CalibrationKind
    channel: str
    measured: dict[str, Any]
    results: dict[str, Any]
    checks: tuple[LimitCheck, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failures(self) -> list[str]:
        return [check.line() for check in self.checks if not check.passed]

    def summary(self) -> str:
        """Plain lines for the screen: each check, then any remark."""
        return "\n".join([*(check.line() for check in self.checks), *self.notes])

    def record_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``record_calibration`` (without actor, time and validity)."""
        return {
            "channel": self.channel,
            "kind": self.kind.value,
            "measured": dict(self.measured),
            "results": dict(self.results),
            "passed": self.passed,
            "notes": "; ".join(self.notes),
        }


def _finite(field_name: str, value: float, low: float, high: float, unit: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise NotebookValidationError(field_name, f"{field_name} must be a finite number")
    if not low <= number <= high:
        raise NotebookValidationError(
            field_name,
            f"{field_name} {number:g} {unit} is outside {low:g}–{high:g} {unit}".replace("  ", " "),
        )
    return number


def nernst_slope_mv(temperature_c: float) -> float:
    """Ideal electrode slope S_T = 59.16 mV × (T + 273.15) / 298.15 per pH unit."""
    return NERNST_SLOPE_25C_MV * (temperature_c + KELVIN_OFFSET) / REFERENCE_TEMPERATURE_K


def ph_from_mv(mv: float, slope_percent: float, offset_mv: float, temperature_c: float) -> float:
    """pH from an electrode potential with a two-point calibration (inverse of the wizard)."""
    slope = nernst_slope_mv(temperature_c) * slope_percent / 100.0
    return PH_BUFFER_FIRST - (mv - offset_mv) / slope


def mv_from_ph(ph: float, slope_percent: float, offset_mv: float, temperature_c: float) -> float:
    """Electrode potential that a transmitter showing ``ph`` with this calibration measured."""
    slope = nernst_slope_mv(temperature_c) * slope_percent / 100.0
    return offset_mv - (ph - PH_BUFFER_FIRST) * slope


def evaluate_ph(
    mv_at_ph7: float,
    mv_at_ph4: float,
    temperature_c: float,
    *,
    buffer_first: float = PH_BUFFER_FIRST,
    buffer_second: float = PH_BUFFER_SECOND,
) -> CalibrationOutcome:
    """Slope % = (E₄ − E₇) / (ΔpH · S_T) × 100, offset = E₇; pass when slope ≥ 95 %."""
    e7 = _finite("pH 7 buffer mV", mv_at_ph7, *PH_MV_RANGE, "mV")
    e4 = _finite("pH 4 buffer mV", mv_at_ph4, *PH_MV_RANGE, "mV")
    temperature = _finite("buffer temperature", temperature_c, *PH_TEMPERATURE_RANGE_C, "°C")
    delta_ph = buffer_first - buffer_second
    if delta_ph <= 0:
        raise NotebookValidationError("buffers", "the first buffer must be the higher pH (7.00)")
    ideal = nernst_slope_mv(temperature)
    slope_percent = (e4 - e7) / (delta_ph * ideal) * 100.0
    notes = []
    if slope_percent > PH_SLOPE_TYPICAL_MAX_PERCENT:
        notes.append(
            f"slope above the typical {PH_SLOPE_TYPICAL_MAX_PERCENT:g} %: check the buffers"
        )
    if abs(e7) > PH_OFFSET_TYPICAL_MV:
        notes.append(f"offset beyond the typical ± {PH_OFFSET_TYPICAL_MV:g} mV: ageing reference")
    return CalibrationOutcome(
        kind=CalibrationKind.PH,
        channel="ph",
        measured={
            "buffer_first_ph": buffer_first,
            "buffer_second_ph": buffer_second,
            "e_first_mv": e7,
            "e_second_mv": e4,
            "temperature_c": temperature,
        },
        results={
            "slope_percent": round(slope_percent, 3),
            "offset_mv": e7,
            "nernst_slope_mv": round(ideal, 4),
        },
        checks=(
            LimitCheck(
                "slope",
                slope_percent,
                "%",
                f"≥ {PH_SLOPE_PASS_PERCENT:g} %",
                slope_percent >= PH_SLOPE_PASS_PERCENT,
            ),
        ),
        notes=tuple(notes),
    )


def evaluate_do(
    zero_percent: float, span_percent: float, t63_s: float | None
) -> CalibrationOutcome:
    """Two-point DO (0 % under N₂, 100 % under air) and the response time of the step between.

    The transmitter's new gain maps the raw span reading to 100 % and the zero to 0 %; the
    calibration passes when t63 < 30 s (and the probe responded at all).
    """
    zero = _finite("DO zero reading", zero_percent, -20.0, 60.0, "%")
    span = _finite("DO span reading", span_percent, 0.0, 200.0, "%")
    response = None if t63_s is None else _finite("t63", t63_s, 0.0, 3600.0, "s")
    spread = span - zero
    gain = 100.0 / spread if spread > 0 else None
    checks = [
        LimitCheck(
            "span − zero",
            spread,
            "%",
            f"≥ {DO_MIN_SPAN_PERCENT:g} %",
            spread >= DO_MIN_SPAN_PERCENT,
        ),
        LimitCheck(
            "t63",
            response,
            "s",
            f"< {DO_T63_PASS_S:g} s",
            response is not None and response < DO_T63_PASS_S,
        ),
    ]
    return CalibrationOutcome(
        kind=CalibrationKind.DO,
        channel="do",
        measured={"zero_raw_percent": zero, "span_raw_percent": span, "t63_s": response},
        results={
            "zero_offset_percent": zero,
            "gain": None if gain is None else round(gain, 5),
            "t63_s": response,
        },
        checks=tuple(checks),
        notes=() if response is not None else ("no step response measured",),
    )


@dataclass(frozen=True, slots=True)
class OffgasReadings:
    """Stable analyser readings (% v/v) under N₂ zero gas and room air."""

    o2_zero: float
    co2_zero: float
    o2_span: float
    co2_span: float


def previous_offgas_readings(
    o2_record: Mapping[str, Any] | None, co2_record: Mapping[str, Any] | None
) -> dict[str, float]:
    """The zero/span readings of the last off-gas calibration, from its ``measured`` tables."""
    found: dict[str, float] = {}
    for gas, measured in (("o2", o2_record), ("co2", co2_record)):
        if not measured:
            continue
        for point in ("zero", "span"):
            value = measured.get(f"{point}_percent")
            if isinstance(value, int | float) and math.isfinite(value):
                found[f"{gas}_{point}"] = float(value)
    return found


def evaluate_offgas(
    readings: OffgasReadings,
    *,
    previous: Mapping[str, float] | None = None,
    stable_for_s: Mapping[str, float | None] | None = None,
) -> tuple[CalibrationOutcome, CalibrationOutcome]:
    """O₂ and CO₂ outcomes: zero, span, drift against ``previous`` (same keys as
    ``previous_offgas_readings``), and stability (seconds each point was held within ± 0.05 %;
    None = typed by hand, not verified)."""
    values = {
        "o2_zero": _finite("O₂ zero reading", readings.o2_zero, -5.0, 100.0, "%"),
        "co2_zero": _finite("CO₂ zero reading", readings.co2_zero, -5.0, 20.0, "%"),
        "o2_span": _finite("O₂ span reading", readings.o2_span, -5.0, 100.0, "%"),
        "co2_span": _finite("CO₂ span reading", readings.co2_span, -5.0, 20.0, "%"),
    }
    previous = dict(previous or {})
    stable_for_s = dict(stable_for_s or {})
    span_targets = {
        "o2": (OFFGAS_O2_SPAN_PERCENT, OFFGAS_O2_SPAN_TOLERANCE_PERCENT),
        "co2": (OFFGAS_CO2_SPAN_PERCENT, OFFGAS_CO2_SPAN_TOLERANCE_PERCENT),
    }
    outcomes = []
    for gas, channel in (("o2", "offgas_o2"), ("co2", "offgas_co2")):
        zero, span = values[f"{gas}_zero"], values[f"{gas}_span"]
        target, tolerance = span_targets[gas]
        label = "O₂" if gas == "o2" else "CO₂"
        checks = [
            LimitCheck(
                f"{label} zero",
                zero,
                "%",
                f"0.0 ± {OFFGAS_ZERO_TOLERANCE_PERCENT:g} %",
                abs(zero) <= OFFGAS_ZERO_TOLERANCE_PERCENT + 1e-9,
            ),
            LimitCheck(
                f"{label} span",
                span,
                "%",
                f"{target:g} ± {tolerance:g} %",
                abs(span - target) <= tolerance + 1e-9,
            ),
        ]
        notes = []
        drifts = [
            abs(values[f"{gas}_{point}"] - previous[f"{gas}_{point}"])
            for point in ("zero", "span")
            if f"{gas}_{point}" in previous
        ]
        drift = max(drifts) if drifts else None
        if drift is None:
            notes.append(f"{label}: no previous calibration, drift not assessed")
        else:
            checks.append(
                LimitCheck(
                    f"{label} drift",
                    drift,
                    "%",
                    f"< {OFFGAS_DRIFT_LIMIT_PERCENT:g} %",
                    drift < OFFGAS_DRIFT_LIMIT_PERCENT,
                )
            )
        held = {point: stable_for_s.get(f"{gas}_{point}") for point in ("zero", "span")}
        typed = [point for point, seconds in held.items() if seconds is None]
        if typed:
            notes.append(f"{label} {' and '.join(typed)}: typed by hand, stability not verified")
        for point, seconds in held.items():
            if seconds is not None:
                checks.append(
                    LimitCheck(
                        f"{label} {point} stable",
                        seconds / 60.0,
                        "min",
                        f"± {OFFGAS_STABILITY_TOLERANCE_PERCENT:g} % for "
                        f"{OFFGAS_STABILITY_WINDOW_S / 60:g} min",
                        seconds >= OFFGAS_STABILITY_WINDOW_S - 1e-6,
                    )
                )
        outcomes.append(
            CalibrationOutcome(
                kind=CalibrationKind.OFFGAS,
                channel=channel,
                measured={
                    "zero_percent": zero,
                    "span_percent": span,
                    "zero_stable_s": held["zero"],
                    "span_stable_s": held["span"],
                },
                results={
                    "zero_offset_percent": zero,
                    "span_gain": None
                    if span - zero == 0
                    else round((target - 0.0) / (span - zero), 6),
                    "drift_percent": None if drift is None else round(drift, 4),
                },
                checks=tuple(checks),
                notes=tuple(notes),
            )
        )
    return outcomes[0], outcomes[1]


def evaluate_pressure_zero(reading_bar_g: float) -> CalibrationOutcome:
    """Open to atmosphere the transmitter must read 0.000 ± 0.005 bar g; the reading is the zero."""
    reading = _finite("pressure reading", reading_bar_g, -0.5, 2.0, "bar g")
    return CalibrationOutcome(
        kind=CalibrationKind.PRESSURE,
        channel="pressure",
        measured={"open_reading_bar_g": reading},
        results={"zero_offset_bar": reading},
        checks=(
            LimitCheck(
                "zero",
                reading,
                "bar g",
                f"0.000 ± {PRESSURE_ZERO_TOLERANCE_BAR:g} bar g",
                abs(reading) <= PRESSURE_ZERO_TOLERANCE_BAR + 1e-12,
            ),
        ),
    )


def evaluate_od_blank(reading_au: float) -> CalibrationOutcome:
    """The probe's reading in sterile medium becomes its blank (no SOP acceptance limit)."""
    reading = _finite("OD-probe blank", reading_au, *OD_BLANK_RANGE_AU, "AU")
    return CalibrationOutcome(
        kind=CalibrationKind.OD_PROBE,
        channel="od_probe",
        measured={"blank_au": reading},
        results={"blank_au": reading},
        checks=(
            LimitCheck(
                "blank",
                reading,
                "AU",
                f"recorded; within {OD_BLANK_RANGE_AU[0]:g}–{OD_BLANK_RANGE_AU[1]:g} AU",
                True,
            ),
        ),
    )


# ---- live signals ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stability:
    """The detector's view after the latest reading."""

    stable: bool
    mean: float | None
    spread: float | None  # largest distance of a reading from the window mean
    covered_s: float  # how far back the readings in the window reach
    count: int

    def describe(self, unit: str = "") -> str:
        if self.mean is None:
            return "waiting for readings"
        where = f"{self.mean:.4g} {unit}".rstrip()
        state = "STABLE" if self.stable else "settling"
        return f"{state}: {where}, ± {self.spread:.2g} over {self.covered_s:.0f} s"


class StabilityDetector:
    """Stable = every reading of the last ``window_s`` seconds lies within ± ``tolerance`` of
    their mean, and the readings cover the whole window. Feed it live; it keeps only the window.
    """

    def __init__(self, window_s: float, tolerance: float, *, min_count: int = 3) -> None:
        if window_s <= 0 or tolerance <= 0:
            raise ValueError("window and tolerance must be positive")
        self.window_s = float(window_s)
        self.tolerance = float(tolerance)
        self.min_count = min_count
        self._points: deque[tuple[float, float]] = deque()
        # Running sum and monotonic min/max queues: each reading costs O(1), not O(window).
        self._sum = 0.0
        self._lows: deque[tuple[float, float]] = deque()
        self._highs: deque[tuple[float, float]] = deque()
        self._stable_since: float | None = None

    def reset(self) -> None:
        self._points.clear()
        self._lows.clear()
        self._highs.clear()
        self._sum = 0.0
        self._stable_since = None

    def add(self, t: float, value: float) -> Stability:
        """Take one reading (NaN and out-of-order times are ignored) and judge the window."""
        if (
            math.isfinite(value)
            and math.isfinite(t)
            and (not self._points or t > self._points[-1][0])
        ):
            self._points.append((t, value))
            self._sum += value
            while self._lows and self._lows[-1][1] >= value:
                self._lows.pop()
            self._lows.append((t, value))
            while self._highs and self._highs[-1][1] <= value:
                self._highs.pop()
            self._highs.append((t, value))
            # Keep one reading at or before the window start so coverage can reach the full window.
            while len(self._points) > 1 and self._points[1][0] <= t - self.window_s:
                gone_t, gone = self._points.popleft()
                self._sum -= gone
                if self._lows[0][0] <= gone_t:
                    self._lows.popleft()
                if self._highs[0][0] <= gone_t:
                    self._highs.popleft()
        return self.state()

    def state(self) -> Stability:
        if not self._points:
            return Stability(False, None, None, 0.0, 0)
        newest = self._points[-1][0]
        count = len(self._points)
        mean = self._sum / count
        spread = max(self._highs[0][1] - mean, mean - self._lows[0][1], 0.0)
        covered = newest - self._points[0][0]
        stable = (
            covered >= self.window_s - 1e-9
            and count >= self.min_count
            and spread <= self.tolerance + 1e-12
        )
        if stable and self._stable_since is None:
            self._stable_since = newest
        elif not stable:
            self._stable_since = None
        return Stability(stable, mean, spread, covered, count)

    @property
    def held_s(self) -> float:
        """Seconds the signal has been within tolerance, counting the window that proved it."""
        if self._stable_since is None or not self._points:
            return 0.0
        return self._points[-1][0] - self._stable_since + self.window_s


def t63_seconds(
    readings: Iterable[tuple[float, float]], step_at: float, start_value: float, final_value: float
) -> float | None:
    """Time from ``step_at`` until the signal first covers 63.2 % of start → final, interpolated
    between readings; None when it never gets there (or the step has no size)."""
    if final_value == start_value:
        return None
    threshold = start_value + T63_FRACTION * (final_value - start_value)
    rising = final_value > start_value
    previous: tuple[float, float] | None = None
    for t, value in readings:
        if t < step_at or not math.isfinite(value):
            continue
        crossed = value >= threshold if rising else value <= threshold
        if crossed:
            if previous is None or previous[1] == value:
                return max(0.0, t - step_at)
            t0, v0 = previous
            crossing = t0 + (threshold - v0) * (t - t0) / (value - v0)
            return max(0.0, crossing - step_at)
        previous = (t, value)
    return None


@dataclass
class StepRecorder:
    """Readings from the moment a step was started, for a t63 once the new level is stable."""

    step_at: float
    start_value: float
    readings: list[tuple[float, float]] = field(default_factory=list)
    max_readings: int = 36_000  # 10 h at 1 Hz: an abandoned step cannot eat memory

    def add(self, t: float, value: float) -> None:
        if t >= self.step_at and len(self.readings) < self.max_readings:
            self.readings.append((t, value))

    def t63(self, final_value: float) -> float | None:
        return t63_seconds(self.readings, self.step_at, self.start_value, final_value)


# ---- wizard plans ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One value a wizard step takes: from a live channel when stable, or typed by hand.

    ``key`` names the value in the captured table. ``from_ph``: the live channel reports pH and
    the electrode potential is recovered through the calibration in force (see mv_from_ph).
    """

    key: str
    channel: str
    label: str
    unit: str
    window_s: float
    tolerance: float
    from_ph: bool = False


@dataclass(frozen=True, slots=True)
class CalibrationStep:
    """One step of a wizard: what the operator does, and the values taken at its end.

    ``step_response``: the step starts when the operator switches the gas, and the t63 of the
    first signal is measured from then (DO span).
    """

    title: str
    instruction: str
    signals: tuple[SignalSpec, ...]
    step_response: bool = False


def _ph_signal(key: str, buffer: float) -> SignalSpec:
    return SignalSpec(
        key,
        "ph",
        f"pH {buffer:.0f} buffer mV",
        "mV",
        PH_STABILITY_WINDOW_S,
        PH_STABILITY_TOLERANCE_MV,
        from_ph=True,
    )


def _offgas_signals(point: str) -> tuple[SignalSpec, ...]:
    return (
        SignalSpec(
            f"o2_{point}",
            "offgas_o2",
            f"O₂ {point} %",
            "%",
            OFFGAS_STABILITY_WINDOW_S,
            OFFGAS_STABILITY_TOLERANCE_PERCENT,
        ),
        SignalSpec(
            f"co2_{point}",
            "offgas_co2",
            f"CO₂ {point} %",
            "%",
            OFFGAS_STABILITY_WINDOW_S,
            OFFGAS_STABILITY_TOLERANCE_PERCENT,
        ),
    )


PLANS: dict[CalibrationKind, tuple[CalibrationStep, ...]] = {
    CalibrationKind.PH: (
        CalibrationStep(
            "Buffer pH 7.00",
            "Rinse the probe, immerse it in the pH 7.00 buffer and wait for a stable reading.",
            (_ph_signal("e_first_mv", PH_BUFFER_FIRST),),
        ),
        CalibrationStep(
            "Buffer pH 4.01",
            "Rinse, immerse the probe in the pH 4.01 buffer and wait for a stable reading.",
            (_ph_signal("e_second_mv", PH_BUFFER_SECOND),),
        ),
    ),
    CalibrationKind.DO: (
        CalibrationStep(
            "Zero: N₂ sparge",
            "Sparge N₂ (about 15 min) until the DO reading is stable near 0 %.",
            (
                SignalSpec(
                    "zero",
                    "do",
                    "DO zero %",
                    "%",
                    DO_STABILITY_WINDOW_S,
                    DO_STABILITY_TOLERANCE_PERCENT,
                ),
            ),
        ),
        CalibrationStep(
            "Span: air, 1.0 vvm, 30 °C, 500 rpm",
            "Mark the moment you switch N₂ → air (the t63 clock starts), then wait for 100 %.",
            (
                SignalSpec(
                    "span",
                    "do",
                    "DO span %",
                    "%",
                    DO_STABILITY_WINDOW_S,
                    DO_STABILITY_TOLERANCE_PERCENT,
                ),
            ),
            step_response=True,
        ),
    ),
    CalibrationKind.OFFGAS: (
        CalibrationStep(
            "Zero: N₂ on the analyser",
            "Flow N₂ through the analyser; wait until O₂ and CO₂ hold within ± 0.05 % for 5 min.",
            _offgas_signals("zero"),
        ),
        CalibrationStep(
            "Span: room air",
            "Flow room air; wait until O₂ (20.9 %) and CO₂ (0.04 %) hold for 5 min.",
            _offgas_signals("span"),
        ),
    ),
    CalibrationKind.PRESSURE: (
        CalibrationStep(
            "Zero: open to atmosphere",
            "Open the vessel (or the sensor port) to atmosphere and wait for a stable reading.",
            (
                SignalSpec(
                    "zero",
                    "pressure",
                    "Pressure bar g",
                    "bar g",
                    PRESSURE_STABILITY_WINDOW_S,
                    PRESSURE_STABILITY_TOLERANCE_BAR,
                ),
            ),
        ),
    ),
    CalibrationKind.OD_PROBE: (
        CalibrationStep(
            "Blank: sterile medium",
            "With the probe in sterile medium (before inoculation), wait for a stable reading.",
            (
                SignalSpec(
                    "blank",
                    "od_probe",
                    "OD blank AU",
                    "AU",
                    OD_BLANK_STABILITY_WINDOW_S,
                    OD_BLANK_STABILITY_TOLERANCE_AU,
                ),
            ),
        ),
    ),
}


def compute_outcomes(
    kind: CalibrationKind,
    values: Mapping[str, float],
    *,
    temperature_c: float | None = None,
    t63_s: float | None = None,
    stable_for_s: Mapping[str, float | None] | None = None,
    previous: Mapping[str, float] | None = None,
) -> tuple[CalibrationOutcome, ...]:
    """The outcome(s) of a finished wizard from the values its steps took (keys of PLANS)."""
    if kind is CalibrationKind.PH:
        if temperature_c is None:
            raise NotebookValidationError("buffer temperature", "buffer temperature is required")
        return (evaluate_ph(values["e_first_mv"], values["e_second_mv"], temperature_c),)
    if kind is CalibrationKind.DO:
        return (evaluate_do(values["zero"], values["span"], t63_s),)
    if kind is CalibrationKind.OFFGAS:
        readings = OffgasReadings(
            values["o2_zero"], values["co2_zero"], values["o2_span"], values["co2_span"]
        )
        return evaluate_offgas(readings, previous=previous, stable_for_s=stable_for_s)
    if kind is CalibrationKind.PRESSURE:
        return (evaluate_pressure_zero(values["zero"]),)
    return (evaluate_od_blank(values["blank"]),)


# The policy and validity rules live in calibration_validity (split off to keep this module to the
# wizards' rules); code that still reaches them through this module keeps working.
_MOVED_TO_VALIDITY = frozenset(
    {
        "CalibrationLike",
        "CalibrationPolicy",
        "ValidityPeriod",
        "accepted",
        "blocking_problem",
        "kind_from_setting",
        "period_at",
        "validity_periods",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_VALIDITY:
        from bptwin.eln import calibration_validity

        return getattr(calibration_validity, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
