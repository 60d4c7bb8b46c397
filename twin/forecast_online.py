"""The batch's own carbon budget and growth rate, learnt online for the forecast (causal).

The card's carbon budget (C_end, the CO₂ per litre a batch evolves) is the training batches'
mean; a batch whose yield or initial glycerol differs ends elsewhere (a 3 % higher yield on
glycerol means ~12 % less CO₂). Glycerol carbon ends up in biomass or CO₂, so

    C_end = S₀ / (g · (1 + r)),   r = κ · (OD − OD₀) / CO₂

with S₀ the initial glycerol (g/L), g the grams of glycerol per mmol of carbon, r the biomass
carbon formed per CO₂ carbon so far, κ the biomass carbon per OD unit (mmol C/L per OD) and
(OD − OD₀)/CO₂ read from the nowcast and the cumulative CO₂ of the batch itself. S₀ and κ are
a weighted least-squares fit to the batch's offline samples taken so far (glycerol: S = S₀ −
g·(CO₂ + κ·ΔOD); dry weight: DCW = b·κ·OD, b the grams of biomass per mmol of carbon), with
priors from the card (κ implied by its C_end, its OD-per-CO₂ k and the nominal initial
glycerol). μ is a log-linear fit of CER over the last 2 h. Every estimate uses the windows and
samples up to the forecast time only: data added later never changes an earlier estimate.
"""

from __future__ import annotations

import bisect
import math
import statistics
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

GLYCEROL_G_PER_MMOL_C = 92.094 / 3.0 / 1000.0  # C3H8O3: g glycerol per mmol carbon
BIOMASS_G_PER_MMOL_C = 26.7 / 1000.0  # g dry biomass per mmol carbon (CH1.8O0.5N0.2 + ash)
NOMINAL_INITIAL_GLYCEROL_G_L = 36.0  # the home recipe: 40 g/L BSM diluted by the inoculum
INITIAL_GLYCEROL_PRIOR_SD = 2.0  # g/L
KAPPA_PRIOR_RELATIVE_SD = 0.05  # OD-to-biomass factor of another lab or batch
# Offline measurement errors (HPLC glycerol, gravimetric dry weight): relative and absolute SD.
GLYCEROL_CV, GLYCEROL_ABS_SD = 0.02, 0.1
DCW_CV, DCW_ABS_SD = 0.05, 0.03
MU_WINDOW_S = 7200.0  # CER fit span for μ
MU_MIN_POINTS = 30
CER_MIN_FOR_MU = 0.3  # mmol/L/h: below this the log CER is noise
WINDOWS_CAPACITY = 3000  # 30 s windows: a 25 h batch before the first doubling
OD0_WINDOWS = 20  # without an inoculation sample, the first windows' nowcast is OD₀
INOCULATION_SAMPLE_S = 3600.0  # a sample this soon after the first window is the inoculum's
MIN_CO2_FOR_RATIO = 1.0  # mmol/L: below this the OD-per-CO₂ ratio is noise
# Relative SD of the OD-per-CO₂ ratio read from the nowcast and the cumulative CO₂ against the
# true one (home training campaign, windows at 6–20 h, robust SD; the nowcast is in-sample
# there, so this is a lower bound).
RATIO_RELATIVE_SD = 0.027
# The OD-per-CO₂ ratio is read from the nowcast: a nowcast that misses the batch's own OD
# samples (a foreign probe before adaptation) by more than this (median |log ratio|, samples
# above OD 0.5) would bend it, and the batch estimate is then not made; nor is it before one
# such sample has vouched for the nowcast.
NOWCAST_MAX_SAMPLE_ERROR = 0.08
NOWCAST_CHECK_MIN_OD = 0.5
# The projection ignores the slower growth once the DO is held low (a fraction of the time to
# go) and the uptake fading as glycerol runs out (Monod: a nearly fixed delay). On the home
# training campaign (batches 2–15, windows at 6, 8, …, 20 h, this module's estimates from the
# shipped model's nowcast and the batches' samples) the true time to depletion was
# delay + stretch × the projected one (least squares).
ONLINE_TIME_STRETCH = 1.033
ONLINE_DEPLETION_DELAY_S = 155.0
# Robust (MAD) SDs of that corrected projection's error on the same windows: a fraction of the
# time still to go, and in seconds (the DO forecast averages over the depletion time).
ONLINE_DEPLETION_ERROR_FRACTION = 0.013
ONLINE_DEPLETION_ERROR_SD_S = 395.0


@dataclass(frozen=True)
class BatchEstimate:
    """What the batch's own data say at ``made_at``."""

    made_at: float
    cum_co2_at_depletion: float  # mmol/L
    cum_co2_at_depletion_sd: float
    growth_rate: float  # h⁻¹, NaN while CER is too low
    initial_glycerol_g_l: float
    biomass_carbon_per_od: float  # κ, mmol C/L per OD unit
    samples_used: int
    od_per_mmol_co2: float = math.nan  # the batch's own OD gained per CO₂ so far


class OnlineBudget:
    """Windows and samples of one batch as they arrive; :meth:`estimate` at any time."""

    def __init__(
        self,
        cum_co2_at_depletion: float,
        od_per_mmol_co2: float,
        initial_glycerol_g_l: float = NOMINAL_INITIAL_GLYCEROL_G_L,
    ) -> None:
        self.prior_glycerol = initial_glycerol_g_l
        initial_carbon = initial_glycerol_g_l / GLYCEROL_G_PER_MMOL_C
        self.prior_kappa = max(initial_carbon / cum_co2_at_depletion - 1.0, 0.1) / od_per_mmol_co2
        # Window end, CER, cumulative CO₂, nowcast OD per row; grown by doubling.
        self._windows = np.empty((WINDOWS_CAPACITY, 4))
        self._count = 0
        self._samples: list[tuple[float, float, float, float]] = []  # time, DCW, glycerol, OD

    def add_window(self, end: float, cer: float, cum_co2: float, od: float) -> None:
        """One window (in time order; a window at or before the last one is ignored)."""
        count = self._count
        if count and end <= self._windows[count - 1, 0]:
            return
        if count == len(self._windows):
            self._windows = np.concatenate([self._windows, np.empty_like(self._windows)])
        self._windows[count] = (end, cer, cum_co2, od)
        self._count = count + 1

    def add_sample(
        self, taken_at: float, dcw_g_l: float, glycerol_g_l: float, od600: float = math.nan
    ) -> None:
        """An offline sample (NaN for a value not measured); any order."""
        sample = (float(taken_at), float(dcw_g_l), float(glycerol_g_l), float(od600))
        bisect.insort(self._samples, sample)

    def set_samples(self, rows: list[tuple[float, float, float, float]]) -> None:
        """All the batch's samples at once (after a correction or a deletion)."""
        self._samples = sorted(
            (float(t), float(dcw), float(glycerol), float(od)) for t, dcw, glycerol, od in rows
        )

    @property
    def last_window_end(self) -> float:
        return float(self._windows[self._count - 1, 0]) if self._count else -math.inf

    def estimate(self, now: float) -> BatchEstimate | None:
        """From the windows ending at or before ``now`` and the samples taken by then."""
        all_ends = self._windows[: self._count, 0]
        count = int(np.searchsorted(all_ends, now, side="right"))
        if count < OD0_WINDOWS:
            return None
        ends, cer, co2, od = self._windows[:count].T
        taken = self._samples[: bisect.bisect_right(self._samples, (now, math.inf, math.inf, 0))]
        if not _nowcast_agrees(ends, od, taken):
            return None
        co2_now, od_now = float(co2[-1]), float(od[-1])
        if not (math.isfinite(co2_now) and co2_now >= MIN_CO2_FOR_RATIO and math.isfinite(od_now)):
            return None
        od0 = _initial_od(ends, od, taken)
        s0, kappa, covariance, used = self._fit(ends, co2, od, od0, taken)
        ratio = (od_now - od0) / co2_now
        r = kappa * ratio
        if not (math.isfinite(r) and r > 0):
            return None
        scale = GLYCEROL_G_PER_MMOL_C * (1.0 + r)
        c_end = s0 / scale
        gradient = np.array([1.0 / scale, -s0 * ratio / (scale * (1.0 + r))])
        # The ratio's own error (nowcast and CO₂ analyser) adds C_end · r/(1 + r) · its SD.
        ratio_sd = c_end * r / (1.0 + r) * RATIO_RELATIVE_SD
        sd = math.sqrt(max(float(gradient @ covariance @ gradient), 0.0) + ratio_sd**2)
        mu = _growth_rate(ends, cer)
        return BatchEstimate(now, c_end, sd, mu, s0, kappa, used, ratio)

    def _fit(
        self,
        ends: np.ndarray,
        co2: np.ndarray,
        od: np.ndarray,
        od0: float,
        samples: list[tuple[float, float, float, float]],
    ) -> tuple[float, float, np.ndarray, int]:
        """Weighted least squares of (S₀, κ) on the samples, with the priors as rows.

        Normal equations summed row by row (two unknowns, a handful of samples)."""
        w_glycerol = INITIAL_GLYCEROL_PRIOR_SD**-2
        w_kappa = (KAPPA_PRIOR_RELATIVE_SD * self.prior_kappa) ** -2
        # precision [[a, b], [b, c]] and right-hand side (u, v) for (S₀, κ)
        a, b, c = w_glycerol, 0.0, w_kappa
        u, v = w_glycerol * self.prior_glycerol, w_kappa * self.prior_kappa
        used = 0
        for taken_at, dcw, glycerol, _od in samples:
            od_then = _value_at(ends, od, taken_at)
            if not math.isfinite(od_then):
                continue
            if math.isfinite(dcw) and dcw > 0:  # DCW/b = κ·OD
                weight = (math.hypot(DCW_CV * dcw, DCW_ABS_SD) / BIOMASS_G_PER_MMOL_C) ** -2
                c += weight * od_then * od_then
                v += weight * od_then * dcw / BIOMASS_G_PER_MMOL_C
                used += 1
            if math.isfinite(glycerol) and glycerol >= 0:  # S + g·CO₂ = S₀ − g·ΔOD·κ
                weight = math.hypot(GLYCEROL_CV * glycerol, GLYCEROL_ABS_SD) ** -2
                slope = -GLYCEROL_G_PER_MMOL_C * (od_then - od0)
                co2_then = _value_at(ends, co2, taken_at)
                target = glycerol + GLYCEROL_G_PER_MMOL_C * (
                    co2_then if math.isfinite(co2_then) else 0.0
                )
                a += weight
                b += weight * slope
                c += weight * slope * slope
                u += weight * target
                v += weight * slope * target
                used += 1
        determinant = a * c - b * b
        covariance = np.array([[c, -b], [-b, a]]) / determinant
        s0 = (c * u - b * v) / determinant
        kappa = (a * v - b * u) / determinant
        return s0, kappa, covariance, used


class LiveBudgets:
    """One :class:`OnlineBudget` per reactor for the live predictor (any thread may note
    samples; one worker feeds the windows). A window index going back starts a new batch."""

    def __init__(self, cum_co2_at_depletion: float, od_per_mmol_co2: float) -> None:
        self._card = (cum_co2_at_depletion, od_per_mmol_co2)
        self._lock = threading.Lock()
        self._budgets: dict[str, tuple[int, OnlineBudget]] = {}
        self._samples: dict[str, list[tuple[float, float, float, float]]] = {}

    def set_samples(self, reactor: str, rows: list[tuple[float, float, float, float]]) -> None:
        """The reactor's samples so far (time, DCW, glycerol, OD600; NaN: not measured)."""
        with self._lock:
            self._samples[reactor] = list(rows)
            if reactor in self._budgets:
                self._budgets[reactor][1].set_samples(rows)

    def add_sample(self, reactor: str, row: tuple[float, float, float, float]) -> None:
        with self._lock:
            self._samples.setdefault(reactor, []).append(row)
            if reactor in self._budgets:
                self._budgets[reactor][1].add_sample(*row)

    def observe(
        self, reactor: str, window_index: int, end: float, cer: float, cum_co2: float, od: float
    ) -> None:
        """One window of the reactor (every window, forecast or not)."""
        with self._lock:
            known = self._budgets.get(reactor)
            if known is None or window_index < known[0]:
                budget = OnlineBudget(*self._card)
                budget.set_samples(self._samples.get(reactor, []))
            else:
                budget = known[1]
            self._budgets[reactor] = (window_index, budget)
            budget.add_window(end, cer, cum_co2, od)

    def estimate(self, reactor: str, now: float) -> BatchEstimate | None:
        with self._lock:
            known = self._budgets.get(reactor)
            return known[1].estimate(now) if known is not None else None


def _value_at(ends: np.ndarray, values: np.ndarray, when: float) -> float:
    """``values`` interpolated at ``when`` (held at the ends), by bisection."""
    at = int(np.searchsorted(ends, when))
    if at <= 0:
        return float(values[0])
    if at >= len(ends):
        return float(values[-1])
    left, right = float(ends[at - 1]), float(ends[at])
    share = (when - left) / (right - left)
    return float(values[at - 1]) + share * (float(values[at]) - float(values[at - 1]))


def _growth_rate(ends: np.ndarray, cer: np.ndarray) -> float:
    """Slope of ln CER over the last :data:`MU_WINDOW_S` (h⁻¹); NaN with too few points."""
    start = int(np.searchsorted(ends, ends[-1] - MU_WINDOW_S))
    hours = (ends[start:] - ends[-1]) / 3600.0
    values = cer[start:]
    usable = np.isfinite(values) & (values > CER_MIN_FOR_MU)
    if usable.sum() < MU_MIN_POINTS:
        return math.nan
    x, y = hours[usable], np.log(values[usable])
    x_centred = x - x.mean()
    return float(np.dot(x_centred, y - y.mean()) / np.dot(x_centred, x_centred))


def _nowcast_agrees(
    ends: np.ndarray, od: np.ndarray, samples: list[tuple[float, float, float, float]]
) -> bool:
    """True when the OD samples taken so far vouch for the nowcast (see the constants)."""
    errors = []
    for taken_at, _dcw, _glycerol, measured in samples:
        if math.isfinite(measured) and measured > NOWCAST_CHECK_MIN_OD and taken_at >= ends[0]:
            nowcast = _value_at(ends, od, taken_at)
            if math.isfinite(nowcast) and nowcast > 0:
                errors.append(abs(math.log(measured / nowcast)))
    return bool(errors) and statistics.median(errors) <= NOWCAST_MAX_SAMPLE_ERROR


def sample_rows(frame: pd.DataFrame | None) -> list[tuple[float, float, float, float]]:
    """(Unix time, DCW g/L, glycerol g/L, OD600) of a samples table (NaN: not measured)."""
    if frame is None or frame.empty or "timestamp" not in frame.columns:
        return []

    def column(name: str) -> list[float]:
        values = frame[name] if name in frame.columns else pd.Series(np.nan, frame.index)
        return [float(v) for v in pd.to_numeric(values, errors="coerce")]

    names = ("timestamp", "dcw_g_l", "glycerol_g_l", "od600")
    rows = zip(*(column(name) for name in names), strict=True)
    return [(t, dcw, glycerol, od) for t, dcw, glycerol, od in rows if math.isfinite(t)]


def _initial_od(
    ends: np.ndarray, od: np.ndarray, samples: list[tuple[float, float, float, float]]
) -> float:
    """OD₀: the inoculation sample's OD600, else the first windows' nowcast (made before any
    sample could correct it, so the measured value is the better start)."""
    for taken_at, _dcw, _glycerol, measured in samples:
        if taken_at > ends[0] + INOCULATION_SAMPLE_S:
            break
        if math.isfinite(measured) and measured > 0:
            return measured
    return float(np.nanmean(od[:OD0_WINDOWS]))
