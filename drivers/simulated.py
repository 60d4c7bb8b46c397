"""The simulated reactor as a sensor source, in real time or accelerated.

Steps :class:`bptwin.twin.simulator.ReactorSimulator` once per simulated second and emits every
channel the simulator reports for that second (``vessel_weight`` every 10 s, as the real
balance). Timestamps are the simulator's, anchored at ``start_time``: one simulated hour per
wall minute at ``speed=60``; ``speed=0`` runs as fast as the sink takes the readings. By
default the batch is re-based to the station clock (:meth:`default_start`): it starts far
enough in the past that no reading is ever stamped ahead of the wall clock when it is emitted
(the station refuses readings from the future as a clock fault), and an accelerated batch
catches up with the wall clock at its last reading.

Offline samples (OD600, DCW, glycerol on the SOP schedule) are not sensor readings: they are
kept in :attr:`SimulatedReactorDriver.samples` and handed to ``on_sample`` for the notebook.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from bptwin.drivers.base import Driver, ReadingSink

if TYPE_CHECKING:
    from bptwin.twin.sim_config import SimulationConfig
    from bptwin.twin.simulator import OfflineSample, ReactorSimulator, SimStep


class SimulatedReactorDriver(Driver):
    """Emits a simulated batch; ends by itself when the batch is over (or at ``duration_s``)."""

    def __init__(
        self,
        sink: ReadingSink,
        *,
        reactor: str = "R1",
        seed: int = 0,
        config: SimulationConfig | None = None,
        speed: float = 1.0,
        start_time: float | None = None,
        duration_s: float | None = None,
        on_sample: Callable[[OfflineSample], None] | None = None,
        name: str = "simulated",
    ) -> None:
        if not math.isfinite(speed) or speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        super().__init__(name, reactor, sink)
        self.seed = seed
        self.config = config
        self.speed = speed
        self.start_time = start_time
        self.duration_s = duration_s
        self.on_sample = on_sample
        self.samples: list[OfflineSample] = []
        self.simulator: ReactorSimulator | None = None
        self.last_step: SimStep | None = None
        self.finished = False

    def run(self, stop: threading.Event) -> None:
        from bptwin.twin.simulator import ReactorSimulator

        start = self.start_time if self.start_time is not None else self.default_start()
        simulator = ReactorSimulator(self.config, self.seed, start_timestamp=start)
        self.simulator = simulator
        started = time.monotonic()
        self._set_connected(True)
        try:
            while not stop.is_set():
                if self._batch_over(simulator):
                    self.finished = True
                    return
                step = simulator.step()
                if self.speed > 0:
                    delay = started + step.time_s / self.speed - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                for reading in step.to_readings(self.reactor):
                    self._emit(reading)
                self.last_step = step
                if step.sample is not None:
                    self._sample(step.sample)
        finally:
            self._set_connected(False)

    def default_start(self, now: float | None = None) -> float:
        """The wall clock now, moved back by what an accelerated batch gains on it.

        A batch ``D`` long at ``speed`` s > 1 gains ``D (1 - 1/s)`` on the wall clock; starting
        that much in the past, every reading is stamped at or before the moment it is emitted
        and the last one (at ``max_hours``) at about the wall clock. Real time and slower start
        now; ``speed=0`` starts a whole batch back.
        """
        from bptwin.twin.sim_config import SimulationConfig

        now = time.time() if now is None else now
        duration_s = self.duration_s or (self.config or SimulationConfig()).max_hours * 3600
        lead_s = duration_s * (1 - 1 / self.speed) if self.speed > 0 else duration_s
        return now - max(0.0, lead_s)

    def _batch_over(self, simulator: ReactorSimulator) -> bool:
        elapsed = simulator.time_s
        if self.duration_s is not None:
            return elapsed >= self.duration_s
        if simulator.step_index >= simulator.n_steps:
            return True
        depleted_at = simulator.depletion_time_s
        tail_s = simulator.config.after_depletion_h * 3600
        return depleted_at is not None and elapsed > depleted_at + tail_s

    def _sample(self, sample: OfflineSample) -> None:
        self.samples.append(sample)
        if self.on_sample is not None:
            try:
                self.on_sample(sample)
            except Exception as exc:  # the notebook's problem must not stop acquisition
                self._count_error("on_sample", f"on_sample failed: {exc!r}")


def simulator_channel_values(
    seed: int = 0, config: SimulationConfig | None = None, start_time: float | None = None
) -> Iterator[dict[str, float]]:
    """Channel values of a simulated batch, one dict per simulated second, until it ends."""
    from bptwin.twin.simulator import ReactorSimulator

    simulator = ReactorSimulator(config, seed, start_timestamp=start_time)
    while simulator.step_index < simulator.n_steps:
        yield simulator.step().readings
