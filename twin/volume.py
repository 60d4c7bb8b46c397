"""The liquid volume of a batch over time: V_L(t) = V₀ + feed + base − samples − evaporation.

Rates per litre (OUR, CER) divide by V_L; a fixed volume is right only for a batch without
additions (docs/process.md, "Liquid volume"). What the volume follows is the batch's own
record: the cumulative feed and base channels (their rise since the batch's first reading),
the samples taken so far times the volume each removes, and an evaporation rate. With nothing
to follow it stays at V₀.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

FOLLOWS = ("feed", "base", "samples")
MIN_FRACTION = 0.05  # a volume below 5 % of the start is a wrong record, not a reactor


@dataclass(frozen=True)
class VolumePlan:
    """What the volume starts at and follows (from the dataset record or the settings)."""

    initial_l: float = 1.0
    follows: tuple[str, ...] = ()
    sample_ml: float = 0.0  # removed per offline sample
    evaporation_ml_per_h: float = 0.0
    sample_times: tuple[float, ...] = ()  # Unix s of the batch's samples, when known ahead

    def __post_init__(self) -> None:
        if not self.initial_l > 0:
            raise ValueError(f"initial liquid volume must be positive, got {self.initial_l} L")
        unknown = sorted(set(self.follows) - set(FOLLOWS))
        if unknown:
            raise ValueError(f"the volume can follow {', '.join(FOLLOWS)}, not {unknown}")
        if self.sample_ml < 0 or self.evaporation_ml_per_h < 0:
            raise ValueError("sample volume and evaporation must not be negative")

    @property
    def fixed(self) -> bool:
        return not self.follows and self.evaporation_ml_per_h == 0


class LiquidVolume:
    """V_L per window; feed and base count from their first reading, gaps keep the last one."""

    def __init__(self, plan: VolumePlan) -> None:
        self.plan = plan
        self._first = {"feed": math.nan, "base": math.nan}
        self._last = {"feed": math.nan, "base": math.nan}
        self._sample_times = sorted(plan.sample_times)
        self.added_ml = 0.0  # feed and base so far
        self.removed_ml = 0.0  # samples and evaporation so far

    def note_sample(self, timestamp: float) -> None:
        """A sample taken now (live): it removes ``sample_ml`` from then on."""
        bisect.insort(self._sample_times, float(timestamp))

    def _rise(self, what: str, total_ml: float) -> float:
        if what not in self.plan.follows:
            return 0.0
        if math.isfinite(total_ml):
            if math.isnan(self._first[what]):
                self._first[what] = total_ml
            self._last[what] = total_ml
        last, first = self._last[what], self._first[what]
        return last - first if math.isfinite(last) else 0.0

    def at(self, end: float, hours: float, feed_total_ml: float, base_total_ml: float) -> float:
        """The volume (L) at the end of a window ``hours`` after inoculation."""
        plan = self.plan
        if plan.fixed:
            return plan.initial_l
        self.added_ml = self._rise("feed", feed_total_ml) + self._rise("base", base_total_ml)
        taken = bisect.bisect_right(self._sample_times, end) if "samples" in plan.follows else 0
        self.removed_ml = taken * plan.sample_ml + plan.evaporation_ml_per_h * max(hours, 0.0)
        volume = plan.initial_l + (self.added_ml - self.removed_ml) / 1000.0
        return max(volume, MIN_FRACTION * plan.initial_l)

    @property
    def follows_feed(self) -> bool:
        return "feed" in self.plan.follows and self.added_ml > 0


def volume_plan(
    initial_l: float,
    follows: Iterable[str] = (),
    *,
    sample_ml: float = 0.0,
    evaporation_ml_per_h: float = 0.0,
    sample_times: Iterable[float] = (),
) -> VolumePlan:
    return VolumePlan(
        float(initial_l),
        tuple(follows),
        float(sample_ml),
        float(evaporation_ml_per_h),
        tuple(float(t) for t in sample_times),
    )
