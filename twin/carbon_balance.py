"""Biomass from the carbon balance: X(t)·V(t) = X₀·V₀ + Y_X/CO₂ · (total CO₂ released by t).

The two constants come from the settings (or the dataset record) or are fitted from the
batch's own dry-weight samples as they arrive, causally: at each window only the samples
taken by then count (docs/process.md, "Off-gas balances"). One sample fixes X₀·V₀ with the
stated yield; two or more whose CO₂ differs enough fit the yield as well (least squares).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_CO2_SPREAD_MMOL = 5.0  # below this, the samples cannot tell a yield from noise
YIELD_RANGE = (0.005, 0.2)  # g DCW per mmol CO₂ a fit may give (0.046 for glycerol)


@dataclass(frozen=True)
class CarbonBalancePlan:
    """X₀ (g/L at V₀), Y_X/CO₂ (g/mmol) and whether to fit them from dry-weight samples."""

    initial_biomass_g_l: float
    yield_g_per_mmol: float
    fit: bool = False
    samples: tuple[tuple[float, float], ...] = ()  # (Unix s, g DCW/L) known ahead

    def __post_init__(self) -> None:
        if self.initial_biomass_g_l < 0 or not self.yield_g_per_mmol > 0:
            raise ValueError("X0 must not be negative and Y_X/CO2 must be positive")


class CarbonBalance:
    """The carbon-balance biomass per window; fitted constants follow the samples taken."""

    def __init__(self, plan: CarbonBalancePlan, initial_volume_l: float) -> None:
        self.plan = plan
        self.initial_volume_l = initial_volume_l
        self.intercept_g = plan.initial_biomass_g_l * initial_volume_l  # X₀·V₀
        self.yield_g_per_mmol = plan.yield_g_per_mmol
        self.fitted_samples = 0
        self._pending = sorted(plan.samples) if plan.fit else []
        self._history: list[tuple[float, float, float]] = []  # end, CO₂ total, volume
        self._points: list[tuple[float, float]] = []  # CO₂ total, X·V at each sample

    def note_sample(self, timestamp: float, dry_weight_g_l: float) -> None:
        """A dry-weight sample taken now (live); used once the windows reach it."""
        if self.plan.fit and math.isfinite(dry_weight_g_l) and dry_weight_g_l > 0:
            bisect.insort(self._pending, (float(timestamp), float(dry_weight_g_l)))

    def biomass(self, end: float, co2_total_mmol: float, volume_l: float) -> float:
        """X (g/L) at the end of a window; NaN while no CO₂ total is known."""
        if not math.isfinite(co2_total_mmol):
            return math.nan
        if self.plan.fit:
            self._history.append((end, co2_total_mmol, volume_l))
            while self._pending and self._pending[0][0] <= end:
                self._take(*self._pending.pop(0))
        return (self.intercept_g + self.yield_g_per_mmol * co2_total_mmol) / volume_l

    def _take(self, timestamp: float, dry_weight: float) -> None:
        ends = [h[0] for h in self._history]
        totals = [h[1] for h in self._history]
        volumes = [h[2] for h in self._history]
        co2 = float(np.interp(timestamp, ends, totals))
        volume = float(np.interp(timestamp, ends, volumes))
        self._points.append((co2, dry_weight * volume))
        self.fitted_samples = len(self._points)
        self._refit()

    def _refit(self) -> None:
        co2 = np.array([p[0] for p in self._points])
        mass = np.array([p[1] for p in self._points])
        if len(co2) >= 2 and float(co2.max() - co2.min()) >= MIN_CO2_SPREAD_MMOL:
            slope, intercept = np.polyfit(co2, mass, 1)
            if YIELD_RANGE[0] <= slope <= YIELD_RANGE[1] and intercept >= 0:
                self.yield_g_per_mmol, self.intercept_g = float(slope), float(intercept)
                return
        # Too little spread (or a fit outside reason): keep the yield, place the intercept.
        self.intercept_g = max(0.0, float(np.mean(mass - self.yield_g_per_mmol * co2)))


def samples_with_dry_weight(
    times: Iterable[float], dry_weights: Iterable[float]
) -> tuple[tuple[float, float], ...]:
    return tuple(
        (float(t), float(x))
        for t, x in zip(times, dry_weights, strict=True)
        if math.isfinite(t) and math.isfinite(x) and x > 0
    )
