"""Advisory DO-cascade and RQ controller: setpoint recommendations with reasons, every 30 s.

Pure process logic (no bus, no database): :class:`AdvisoryController` gets each new
:class:`~bptwin.twin.features.ProcessState` and the actuators' current setpoints and says what it
would change, and why. The rules follow the campaign SOP (docs/process.md, DO control): keep DO
above 20 % by raising the stirrer from 500 to 1000 rpm in 50 rpm steps, then O2 enrichment up to
0.3 vvm; give back O2 first, then stirrer, when DO is well above the band. The RQ watch explains
an RQ above the glycerol band (O2 limitation, or overfeeding / by-products when DO is fine).

Against chattering: steps up at most once per ``step_up_interval_s``; steps down only after DO
has stayed above the release level for ``release_windows`` windows, at most once per
``*_step_down_interval_s`` and never within ``reversal_hold_s`` of a step up. Standing advice is
emitted once and repeated only after ``repeat_s`` (so the audit trail is not flooded).
Whether advice is sent to the reactor is :mod:`bptwin.twin.actuation`'s business. See
docs/control.md.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from bptwin.twin.features import MODEL_CHANNELS, ProcessState

STIRRER = "stirrer_speed"
O2_FLOW = "o2_flow"
PARAMETERS: tuple[str, ...] = (STIRRER, O2_FLOW)
UNITS = {STIRRER: "rpm", O2_FLOW: "L/min"}

_DO = MODEL_CHANNELS.index("do")
_STIRRER = MODEL_CHANNELS.index(STIRRER)
_O2 = MODEL_CHANNELS.index(O2_FLOW)

# Rule names (stored in the audit record and the MQTT payload; stable).
RULE_DO_LOW_STIRRER = "do_low_stirrer_up"
RULE_DO_FALLING_STIRRER = "do_falling_stirrer_up"
RULE_DO_LOW_O2 = "do_low_o2_up"
RULE_DO_FALLING_O2 = "do_falling_o2_up"
RULE_CASCADE_EXHAUSTED = "cascade_exhausted"
RULE_DO_HIGH_O2 = "do_high_o2_down"
RULE_DO_HIGH_STIRRER = "do_high_stirrer_down"
RULE_DEPLETED_O2_OFF = "depletion_o2_off"
RULE_RQ_HIGH = "rq_high_watch"
RULE_DO_MISSING = "do_missing_hold"


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Thresholds and limits of the advisory controller (DO in % saturation)."""

    do_low_pct: float = 30.0  # step up below this, so DO stays above 20 % (SOP)
    do_critical_pct: float = 20.0  # below this a step may follow every window
    lookahead_s: float = 120.0  # step up early when DO would cross do_low_pct within this
    falling_band_pct: float = 10.0  # ... and is no more than this above it
    o2_release_pct: float = 60.0  # give O2 back above this (enrichment is a deviation)
    stirrer_release_pct: float = 80.0  # slow the stirrer only near saturation
    release_windows: int = 4  # DO above the release level this many windows in a row
    stirrer_min_rpm: float = 500.0
    stirrer_max_rpm: float = 1000.0
    stirrer_step_rpm: float = 50.0
    o2_max_vvm: float = 0.3
    volume_l: float = 1.0  # vvm × volume = standard L/min of O2
    o2_step_l_min: float = 0.02
    step_up_interval_s: float = 60.0  # probe lag (18 s) + one window before judging a step
    critical_step_interval_s: float = 30.0
    o2_step_down_interval_s: float = 120.0
    stirrer_step_down_interval_s: float = 300.0
    reversal_hold_s: float = 600.0  # no step down within this of any step up
    rq_band: tuple[float, float] = (0.65, 0.75)  # glycerol, electron balance (DOMAIN)
    rq_alert: float = 0.82  # smoothed RQ above this counts as "above the band"
    rq_persist_windows: int = 6  # 3 min in a row
    repeat_s: float = 600.0  # re-emit unchanged standing advice after this

    def __post_init__(self) -> None:
        checks = {
            "do_critical_pct < do_low_pct": self.do_critical_pct < self.do_low_pct,
            "do_low_pct < o2_release_pct": self.do_low_pct < self.o2_release_pct,
            "o2_release_pct <= stirrer_release_pct": self.o2_release_pct
            <= self.stirrer_release_pct,
            "0 < stirrer_min_rpm <= stirrer_max_rpm": 0
            < self.stirrer_min_rpm
            <= self.stirrer_max_rpm,
            "stirrer_step_rpm > 0": self.stirrer_step_rpm > 0,
            "o2_step_l_min > 0": self.o2_step_l_min > 0,
            "o2_max_vvm >= 0": self.o2_max_vvm >= 0,
            "volume_l > 0": self.volume_l > 0,
            "release_windows >= 1": self.release_windows >= 1,
            "rq_persist_windows >= 1": self.rq_persist_windows >= 1,
            "rq_band low < high": self.rq_band[0] < self.rq_band[1],
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError(f"invalid control configuration: {', '.join(wrong)}")

    @property
    def o2_max_l_min(self) -> float:
        return self.o2_max_vvm * self.volume_l

    def step(self, parameter: str) -> float:
        return self.stirrer_step_rpm if parameter == STIRRER else self.o2_step_l_min


@dataclass(frozen=True, slots=True)
class Setpoints:
    """What the actuators are set to now: stirrer (rpm) and O2 enrichment (standard L/min)."""

    stirrer_speed: float
    o2_flow: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAMETERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"setpoint {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"setpoint {name} must be finite and >= 0, got {value!r}")

    def get(self, parameter: str) -> float:
        return float(getattr(self, parameter))

    @classmethod
    def from_state(cls, state: ProcessState) -> Setpoints | None:
        """The window's measured stirrer speed and O2 flow (None when a channel is missing)."""
        rpm = float(state.channel_mean[_STIRRER])
        o2 = float(state.channel_mean[_O2])
        if not math.isfinite(rpm):
            return None
        # A closed O2 mass-flow controller that reports nothing means no enrichment.
        return cls(round(rpm, 0), round(o2, 3) if math.isfinite(o2) and o2 > 0 else 0.0)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One piece of advice on one actuator; ``recommended == current`` means "hold" advice."""

    timestamp: float  # Unix s (end of the window it was made from)
    reactor: str
    parameter: str  # "stirrer_speed" or "o2_flow"
    current: float
    recommended: float
    unit: str
    reason: str
    rule: str
    confidence: float  # 0–1: how much the data behind it can be trusted

    @property
    def is_change(self) -> bool:
        return not math.isclose(self.current, self.recommended, rel_tol=0.0, abs_tol=1e-9)

    @property
    def direction(self) -> int:
        """+1 up, −1 down, 0 hold."""
        if not self.is_change:
            return 0
        return 1 if self.recommended > self.current else -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Memory:
    last_step_at: dict[str, float] = field(default_factory=dict)  # advised or observed step
    last_up_at: float = -math.inf
    last_seen: Setpoints | None = None
    emitted: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # rule, value, at


def _fmt(parameter: str, value: float) -> str:
    return f"{value:.0f} rpm" if parameter == STIRRER else f"{value:.2f} L/min"


class AdvisoryController:
    """Turns each window's process state into setpoint advice for one reactor."""

    def __init__(self, config: ControlConfig | None = None, history_windows: int = 20) -> None:
        self.config = config or ControlConfig()
        self.history: deque[ProcessState] = deque(maxlen=max(history_windows, 2))
        self._memory = _Memory()
        self._advice: dict[str, Recommendation] = {}

    @property
    def advice(self) -> tuple[Recommendation, ...]:
        """The standing advice (at most one per actuator), for the dashboard."""
        return tuple(self._advice[p] for p in PARAMETERS if p in self._advice)

    def reset(self) -> None:
        """Forget history and rate-limit memory (a new batch)."""
        self.history.clear()
        self._memory = _Memory()
        self._advice.clear()

    def note_applied(self, parameter: str, value: float, at: float) -> None:
        """Tell the controller a setpoint was sent (closed loop), for its rate limits."""
        self._step_taken(parameter, +1 if self._rising(parameter, value) else -1, at)

    def _rising(self, parameter: str, value: float) -> bool:
        seen = self._memory.last_seen
        return seen is None or value >= seen.get(parameter)

    def _step_taken(self, parameter: str, direction: int, at: float) -> None:
        self._memory.last_step_at[parameter] = at
        if direction > 0:
            self._memory.last_up_at = at

    # ------------------------------------------------------------------ the rules

    def update(self, state: ProcessState, current: Setpoints | None = None) -> list[Recommendation]:
        """Advice new in this window (possibly none); ``advice`` holds all that stands.

        ``current`` is what the actuators are set to; None takes the window's measured means.
        """
        if current is None:
            current = Setpoints.from_state(state)
        self.history.append(state)
        if current is None:
            self._advice.clear()
            return []
        self._observe(current, state.end)
        proposals = self._propose(state, current)
        fresh: list[Recommendation] = []
        for parameter in PARAMETERS:
            if parameter not in proposals:
                self._advice.pop(parameter, None)
                self._memory.emitted.pop(parameter, None)
                continue
            proposal = proposals[parameter]
            if proposal is None:  # waiting out a rate limit: standing advice stays
                continue
            self._advice[parameter] = proposal
            if self._is_new(proposal):
                fresh.append(proposal)
                self._memory.emitted[parameter] = (proposal.rule, proposal.recommended, state.end)
                if proposal.is_change:
                    self._step_taken(parameter, proposal.direction, state.end)
        return fresh

    def _observe(self, current: Setpoints, at: float) -> None:
        """Steps made by someone else (operator, the reactor's own cascade) count too."""
        seen = self._memory.last_seen
        if seen is not None:
            for parameter in PARAMETERS:
                delta = current.get(parameter) - seen.get(parameter)
                if abs(delta) < 0.5 * self.config.step(parameter):
                    continue
                emitted = self._memory.emitted.get(parameter)
                if emitted is not None and math.isclose(
                    emitted[1], current.get(parameter), abs_tol=1e-6
                ):
                    continue  # our own advice being followed: its step was counted then
                self._step_taken(parameter, 1 if delta > 0 else -1, at)
        self._memory.last_seen = current

    def _is_new(self, proposal: Recommendation) -> bool:
        emitted = self._memory.emitted.get(proposal.parameter)
        if emitted is None:
            return True
        rule, value, at = emitted
        if rule != proposal.rule or not math.isclose(value, proposal.recommended, abs_tol=1e-9):
            return True
        return proposal.timestamp - at >= self.config.repeat_s

    def _since_step(self, parameter: str | None, now: float) -> float:
        """Seconds since the last step of ``parameter`` (None: of any actuator)."""
        steps = self._memory.last_step_at
        if parameter is None:
            return now - max(steps.values(), default=-math.inf)
        return now - steps.get(parameter, -math.inf)

    def _propose(self, state: ProcessState, current: Setpoints) -> dict[str, Recommendation | None]:
        """Advice per actuator: absent = none stands, None = keep what stands (rate limit)."""
        cfg = self.config
        now = state.end
        do = float(state.channel_mean[_DO])
        rpm, o2 = current.stirrer_speed, current.o2_flow

        def make(
            parameter: str, value: float, rule: str, reason: str, confidence: float
        ) -> Recommendation:
            return Recommendation(
                timestamp=now,
                reactor=state.reactor,
                parameter=parameter,
                current=current.get(parameter),
                recommended=round(value, 3),
                unit=UNITS[parameter],
                reason=reason,
                rule=rule,
                confidence=round(confidence, 2),
            )

        if not math.isfinite(do) or "do" in state.gap_channels:
            parameter = O2_FLOW if o2 > 0 else STIRRER
            reason = (
                "DO probe reports no usable value in this window: the controller holds the "
                "setpoints until DO is back (check the probe and its cable)"
            )
            return {
                parameter: make(parameter, current.get(parameter), RULE_DO_MISSING, reason, 0.3)
            }

        confidence = 0.9
        if "do" in state.filled_channels:
            confidence -= 0.2
        if "our_inconsistent_with_do" in state.flags:
            confidence -= 0.2
        slope = float(state.channel_slope[_DO])  # % sat per hour over the last 5 min
        slope = slope if math.isfinite(slope) else 0.0
        projected = do + slope * cfg.lookahead_s / 3600.0
        rq_note = self._rq_note(state, do)
        do_text = f"DO {do:.1f} %"
        if slope <= -1.0:
            do_text += f" falling {-slope:.0f} %/h"

        low = do < cfg.do_low_pct
        falling = (
            not low
            and do < cfg.do_low_pct + cfg.falling_band_pct
            and slope < 0
            and projected < cfg.do_low_pct
        )
        if low or falling:
            interval = (
                cfg.critical_step_interval_s if do < cfg.do_critical_pct else cfg.step_up_interval_s
            )
            why = (
                f"{do_text}, below the {cfg.do_low_pct:.0f} % cascade level (SOP: keep DO > 20 %)"
                if low
                else f"{do_text}: about {projected:.1f} % within {cfg.lookahead_s:.0f} s, "
                f"under the {cfg.do_low_pct:.0f} % cascade level"
            )
            if rpm < cfg.stirrer_max_rpm - 1e-6:
                if self._since_step(None, now) < interval:  # one cascade step at a time
                    return {STIRRER: None}
                target = min(cfg.stirrer_max_rpm, rpm + cfg.stirrer_step_rpm)
                rule = RULE_DO_LOW_STIRRER if low else RULE_DO_FALLING_STIRRER
                reason = f"{why}: raise the stirrer {rpm:.0f} → {target:.0f} rpm (+50 rpm step)"
                return {STIRRER: make(STIRRER, target, rule, reason + rq_note, confidence)}
            if o2 < cfg.o2_max_l_min - 1e-9:
                if self._since_step(None, now) < interval:
                    return {O2_FLOW: None}
                target = min(cfg.o2_max_l_min, o2 + cfg.o2_step_l_min)
                rule = RULE_DO_LOW_O2 if low else RULE_DO_FALLING_O2
                reason = (
                    f"{why}; stirrer already at its {cfg.stirrer_max_rpm:.0f} rpm limit: enrich "
                    f"with O2 {o2:.2f} → {target:.2f} L/min ({target / cfg.volume_l:.2f} vvm, "
                    f"max {cfg.o2_max_vvm:.2f}); O2 enrichment is a level-2 deviation to log"
                )
                return {O2_FLOW: make(O2_FLOW, target, rule, reason + rq_note, confidence)}
            if not low:
                return {}
            reason = (
                f"{do_text} with stirrer {rpm:.0f} rpm and O2 {o2:.2f} L/min at their limits: "
                "the cascade is exhausted, no setpoint left to raise; consider lowering the "
                "temperature setpoint within the SOP or log the O2 limitation as a deviation"
            )
            return {O2_FLOW: make(O2_FLOW, o2, RULE_CASCADE_EXHAUSTED, reason + rq_note, 0.8)}

        # Step down: O2 first, the stirrer only when DO is near saturation and O2 is off.
        if now - self._memory.last_up_at >= cfg.reversal_hold_s:
            if o2 > 1e-9 and state.depleted:
                reason = (
                    f"glycerol depletion confirmed ({do_text}): the batch no longer needs O2 "
                    f"enrichment, close it {o2:.2f} → 0.00 L/min"
                )
                return {O2_FLOW: make(O2_FLOW, 0.0, RULE_DEPLETED_O2_OFF, reason, 0.95)}
            recent = list(self.history)[-cfg.release_windows :]
            enough = len(recent) >= cfg.release_windows
            minutes = cfg.release_windows * (state.end - state.start) / 60.0
            if (
                o2 > 1e-9
                and enough
                and all(float(s.channel_mean[_DO]) > cfg.o2_release_pct for s in recent)
                and self._since_step(O2_FLOW, now) >= cfg.o2_step_down_interval_s
            ):
                target = max(0.0, o2 - cfg.o2_step_l_min)
                reason = (
                    f"{do_text}, above {cfg.o2_release_pct:.0f} % for {minutes:.0f} min: give O2 "
                    f"enrichment back first, {o2:.2f} → {target:.2f} L/min"
                )
                return {O2_FLOW: make(O2_FLOW, target, RULE_DO_HIGH_O2, reason, confidence)}
            if (
                o2 <= 1e-9
                and rpm > cfg.stirrer_min_rpm + 1e-6
                and enough
                and all(float(s.channel_mean[_DO]) > cfg.stirrer_release_pct for s in recent)
                and self._since_step(STIRRER, now) >= cfg.stirrer_step_down_interval_s
            ):
                target = max(cfg.stirrer_min_rpm, rpm - cfg.stirrer_step_rpm)
                reason = (
                    f"{do_text}, above {cfg.stirrer_release_pct:.0f} % for {minutes:.0f} min "
                    f"with no O2 enrichment: slow the stirrer {rpm:.0f} → {target:.0f} rpm "
                    "(-50 rpm step; less shear and power)"
                )
                return {STIRRER: make(STIRRER, target, RULE_DO_HIGH_STIRRER, reason, confidence)}

        if rq_note:
            parameter = O2_FLOW if o2 > 0 else STIRRER
            reason = (
                f"{do_text} is not limiting, yet{rq_note.removeprefix(';')}: no setpoint change "
                "advised; check for overfeeding / by-product formation or off-gas analyser drift"
            )
            return {parameter: make(parameter, current.get(parameter), RULE_RQ_HIGH, reason, 0.5)}
        return {}

    def _rq_note(self, state: ProcessState, do: float) -> str:
        """Text about a persistently high RQ ('' when RQ is in band, gated or too short)."""
        cfg = self.config
        recent = list(self.history)[-cfg.rq_persist_windows :]
        if len(recent) < cfg.rq_persist_windows:
            return ""
        for item in recent:
            if item.low_signal or item.rq_gate_reason or not item.rq_smooth > cfg.rq_alert:
                return ""
        low, high = cfg.rq_band
        minutes = len(recent) * (state.end - state.start) / 60.0
        text = (
            f"; RQ {state.rq_smooth:.2f} above the glycerol band {low:.2f}–{high:.2f} for "
            f"{minutes:.0f} min"
        )
        if do < cfg.do_low_pct:
            text += (
                ", consistent with O2 limitation (overflow to by-products): more O2 transfer "
                "should bring it back"
            )
        return text
