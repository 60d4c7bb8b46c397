"""The sensor layer of the simulated reactor: lag, noise, drift and faults.

Each channel's reading is ``lag(ideal) + noise + drift · t``, then faults (dropout →
NaN, frozen → the value at the fault's start, spike → one outlier). Every random draw is
made up front from the batch seed, so the scalar path (real-time ``step()``) and the
vectorised path (whole batch) give the same readings.

Controllers read their probe before fault injection: faults model the acquisition path
(historian, bus), not the controller's own analogue input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bptwin.database.channels import CHANNELS, CHANNELS_BY_NAME
from bptwin.twin.sim_config import FaultParameters, SensorParameters

# The simulated reactor runs a batch: it has no feed pump, so no feed channel.
NOT_SIMULATED = frozenset({"feed_total"})
CHANNEL_NAMES: tuple[str, ...] = tuple(
    entry.name for entry in CHANNELS if entry.name not in NOT_SIMULATED
)
CHANNEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CHANNEL_NAMES)}
NON_NEGATIVE = frozenset(
    {"air_flow", "o2_flow", "offgas_flow", "base_total", "stirrer_speed", "heater_output"}
)
# A closed mass-flow controller reads exactly zero; a noisy zero would bias the O2 balance.
ZERO_WHEN_OFF = frozenset({"o2_flow"})
# Channels faults are never injected into: the pump counter is a PLC integer, not a sensor.
FAULT_EXEMPT = frozenset({"base_total"})
FAULT_KINDS = ("dropout", "frozen", "spike")
LOOP_CHANNELS = ("do", "ph", "temp_broth")  # read by the controllers every step


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One injected sensor fault (``end_step`` exclusive)."""

    channel: str
    kind: str
    start_step: int
    end_step: int
    magnitude: float = 0.0

    def to_dict(self, dt_s: float) -> dict[str, object]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "start_s": self.start_step * dt_s,
            "duration_s": (self.end_step - self.start_step) * dt_s,
            "magnitude": self.magnitude,
        }


def _poisson_times(
    rng: np.random.Generator, per_day: float, n_steps: int, dt_s: float
) -> np.ndarray:
    expected = per_day * n_steps * dt_s / 86400.0
    count = int(rng.poisson(expected)) if expected > 0 else 0
    # Leave the first 10 min clean: the batch record starts with a settled reading.
    first = min(int(600 / dt_s), n_steps - 1)
    return np.sort(rng.integers(first, n_steps, size=count))


def draw_faults(
    params: FaultParameters, n_steps: int, dt_s: float, rng: np.random.Generator
) -> list[FaultEvent]:
    """The batch's fault schedule (empty unless ``params.enabled``)."""
    if not params.enabled:
        return []
    candidates = [name for name in CHANNEL_NAMES if name not in FAULT_EXEMPT]
    events: list[FaultEvent] = []
    plans = (
        ("dropout", params.dropouts_per_day, (5, 300)),
        ("frozen", params.frozen_per_day, (60, 1200)),
        ("spike", params.spikes_per_day, (1, 1)),
    )
    for kind, rate, (shortest_s, longest_s) in plans:
        for start in _poisson_times(rng, rate, n_steps, dt_s):
            name = candidates[int(rng.integers(len(candidates)))]
            length = max(1, int(rng.integers(shortest_s, longest_s + 1) / dt_s))
            entry = CHANNELS_BY_NAME[name]
            magnitude = 0.0
            if kind == "spike":
                span = entry.physical_max - entry.physical_min
                magnitude = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.1) * span)
            events.append(
                FaultEvent(name, kind, int(start), min(int(start) + length, n_steps), magnitude)
            )
    events.sort(key=lambda event: (event.start_step, event.channel))
    return events


def draw_foam_events(
    params: FaultParameters, n_steps: int, dt_s: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Foam collapse / antifoam shots as (start_step, end_step); kLa is raised meanwhile."""
    if not (params.enabled and params.foam_events):
        return []
    starts = _poisson_times(rng, params.foam_events_per_day, n_steps, dt_s)
    return [(int(s), int(s) + max(1, int(rng.uniform(40, 80) / dt_s))) for s in starts]


class ChunkedNoise:
    """The batch's sensor noise, drawn once from the batch's generator but kept an hour at a time.

    All ``steps x channels`` values are drawn at start, as before, so the generator is left
    exactly where the other draws expect it and a seed gives the same batch; only the
    generator's state at the start of each chunk is kept, and a chunk is drawn again when the
    live (scalar) path reaches it. A live simulated reactor so holds one hour of noise instead
    of the whole batch (about 17 MB for 30 h of 20 channels, per reactor).
    """

    CHUNK_STEPS = 3600

    def __init__(self, rng: np.random.Generator, n_steps: int, sd: np.ndarray) -> None:
        self.n_steps = n_steps
        self.sd = sd
        self._bit_generator = type(rng.bit_generator)
        self._states: list[Mapping[str, Any]] = []
        for start in range(0, n_steps, self.CHUNK_STEPS):
            self._states.append(rng.bit_generator.state)
            rng.standard_normal((min(self.CHUNK_STEPS, n_steps - start), len(sd)))
        self._chunk = -1
        self._values = np.empty((0, len(sd)))
        self._columns: dict[int, list[float]] = {}

    def _draw(self, chunk: int) -> np.ndarray:
        bit_generator = self._bit_generator()
        bit_generator.state = self._states[chunk]
        start = chunk * self.CHUNK_STEPS
        rows = min(self.CHUNK_STEPS, self.n_steps - start)
        draws = np.random.Generator(bit_generator).standard_normal((rows, len(self.sd)))
        scaled: np.ndarray = draws * self.sd
        return scaled

    def at(self, row: int, index: int, fast_columns: list[int]) -> float:
        """The noise of channel ``index`` at ``row`` (0 <= row < n_steps)."""
        chunk, offset = divmod(row, self.CHUNK_STEPS)
        if chunk != self._chunk:
            self._values = self._draw(chunk)
            self._chunk = chunk
            # Python-float copies of the channels read every step by the controllers:
            # indexing a list is several times faster than a NumPy scalar in the hot loop.
            self._columns = {i: self._values[:, i].tolist() for i in fast_columns}
        column = self._columns.get(index)
        return column[offset] if column is not None else float(self._values[offset, index])

    def whole(self) -> np.ndarray:
        """Every step's noise (the vectorised path simulates a whole batch at once)."""
        if not self._states:
            return np.empty((0, len(self.sd)))
        return np.vstack([self._draw(chunk) for chunk in range(len(self._states))])


class SensorLayer:
    """Turns ideal channel values into readings, one step or a whole batch at a time."""

    def __init__(
        self,
        params: SensorParameters,
        faults: list[FaultEvent],
        n_steps: int,
        dt_s: float,
        rng: np.random.Generator,
    ) -> None:
        count = len(CHANNEL_NAMES)
        self.dt_s = dt_s
        self.n_steps = n_steps
        sd = np.array([params.noise.get(name, 0.0) for name in CHANNEL_NAMES])
        self.noise = ChunkedNoise(rng, n_steps, sd)
        drift_sd = np.array([params.drift_per_day.get(name, 0.0) for name in CHANNEL_NAMES])
        drift = rng.standard_normal(count) * drift_sd / 86400.0
        self.drift_per_s = drift if params.drift else np.zeros(count)
        self.alpha = np.array(
            [
                1.0 - math.exp(-dt_s / params.lag_s[name]) if params.lag_s.get(name) else 1.0
                for name in CHANNEL_NAMES
            ]
        )
        self.faults = faults
        priority = {"spike": 0, "frozen": 1, "dropout": 2}
        self._ordered_faults = sorted(faults, key=lambda e: (priority[e.kind], e.start_step))
        self._lag_state: list[float | None] = [None] * count
        self._frozen: dict[int, float] = {}
        self._alpha_list = self.alpha.tolist()
        self._drift_list = self.drift_per_s.tolist()
        self._weight_index = CHANNEL_INDEX["vessel_weight"]
        self._weight_period = max(1, round(CHANNELS_BY_NAME["vessel_weight"].period_s / dt_s))
        self._non_negative = {CHANNEL_INDEX[name] for name in NON_NEGATIVE}
        self._zero_when_off = {CHANNEL_INDEX[name] for name in ZERO_WHEN_OFF}
        self._loop_columns = [CHANNEL_INDEX[name] for name in LOOP_CHANNELS]

    # -- scalar path ------------------------------------------------------------------
    def measure_one(self, step: int, index: int, ideal: float) -> float:
        """Lagged, noisy, drifting reading of one channel (no faults) at ``step``."""
        previous = self._lag_state[index]
        lagged = (
            ideal if previous is None else previous + self._alpha_list[index] * (ideal - previous)
        )
        self._lag_state[index] = lagged
        noise = self.noise.at(step % self.n_steps, index, self._loop_columns)
        value = lagged + noise + self._drift_list[index] * step * self.dt_s
        if index in self._non_negative and value < 0.0:
            value = 0.0
        if index in self._zero_when_off and ideal <= 0.0:
            value = 0.0
        return float(value)

    def apply_faults_one(self, step: int, values: list[float]) -> list[float]:
        """Faults and the vessel-weight cadence for one step (``values`` is modified).

        Spikes first, then frozen values, then dropouts: a frozen sensor does not spike
        and a silent one shows nothing at all.
        """
        for event in self._ordered_faults:
            if not event.start_step <= step < event.end_step:
                continue
            index = CHANNEL_INDEX[event.channel]
            if event.kind == "dropout":
                values[index] = math.nan
            elif event.kind == "frozen":
                if step == event.start_step:
                    self._frozen[id(event)] = values[index]
                values[index] = self._frozen.get(id(event), values[index])
            else:
                values[index] += event.magnitude
        if step % self._weight_period:
            values[self._weight_index] = math.nan
        return values

    # -- vectorised path --------------------------------------------------------------
    def measure_all(self, ideal: np.ndarray, done: dict[int, np.ndarray]) -> np.ndarray:
        """Readings for a whole batch; ``done`` holds channels already measured in the loop."""
        steps = ideal.shape[0]
        times = np.arange(steps) * self.dt_s
        rows = np.arange(steps) % self.n_steps
        noise = self.noise.whole()
        out = np.empty_like(ideal)
        for index in range(ideal.shape[1]):
            if index in done:
                out[:, index] = done[index]
                continue
            signal = ideal[:, index]
            alpha = self.alpha[index]
            if alpha < 1.0:
                from scipy.signal import lfilter  # lazy: scipy.signal costs seconds

                signal = lfilter([alpha], [1.0, alpha - 1.0], signal, zi=[(1 - alpha) * signal[0]])[
                    0
                ]
            out[:, index] = signal + noise[rows, index] + self.drift_per_s[index] * times
        for index in self._non_negative:
            np.maximum(out[:, index], 0.0, out=out[:, index])
        for index in self._zero_when_off:
            out[ideal[:, index] <= 0.0, index] = 0.0
        for event in self._ordered_faults:
            if event.start_step >= steps:
                continue
            index = CHANNEL_INDEX[event.channel]
            window = slice(event.start_step, min(event.end_step, steps))
            if event.kind == "dropout":
                out[window, index] = np.nan
            elif event.kind == "frozen":
                out[window, index] = out[event.start_step, index]
            else:
                out[window, index] += event.magnitude
        mask = np.arange(steps) % self._weight_period != 0
        out[mask, self._weight_index] = np.nan
        return out
