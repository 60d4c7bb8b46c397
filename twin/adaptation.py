"""Adaptation of the OD600 nowcast to a reactor from the batch's own offline samples.

A model trained on one reactor meets another one with a differently calibrated OD probe
(gain, saturation, path length), another strain yield and another OD-to-DCW factor. Both
errors are systematic within a batch, and both are visible in the batch's own samples. The
adapter corrects the nowcast **causally**: at a window ending at time t only samples taken
before t have been seen (``observe`` is called when a sample is taken, ``estimate`` for each
window after it).

Two estimators, both updated by a recursive Bayesian (Kalman) step at every sample:

* **calibrated model** — the probe's calibration in the model's log space,
  ln OD = m + a + c·(m − ln OD₀), with m the model's log nowcast and OD₀ the inoculation
  sample: ``a`` (gain; a random walk, so it can follow a drifting probe) and ``c`` (how the
  error grows with OD, i.e. a saturation that differs from the training reactor's). Prior:
  a = c = 0, the model as trained.
* **carbon balance** (the mechanistic backbone) — OD = OD₀ + k·ΔCO₂ with ΔCO₂ the cumulative
  CO₂ since inoculation (mmol/L): k = Y_X/CO₂ / (OD-to-DCW factor) is the one number a new
  strain or a new OD-to-DCW factor changes. Prior: the card's k with a 30 % SD.

The adapted nowcast is their inverse-variance blend in log space. Each estimator's variance is
its parameter uncertainty plus its own structural error, learnt from its one-step-ahead
errors at the samples (the error it made on a sample *before* seeing it), starting from the
training reactor's residuals. Without samples the blend leans on the model as trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bptwin.twin.conformal import ADAPTED_BAND, SAMPLE_LOG_SD, TRAINED_BAND, OnlineBand


@dataclass(frozen=True, slots=True)
class AdaptationConfig:
    """Priors and noise of the two estimators (log-space SDs unless said otherwise)."""

    sample_log_sd: float = SAMPLE_LOG_SD
    # The calibration is either not needed (H0: the model is right within its own error on
    # its training reactor) or needed (H1: a, c ~ N(0, prior SD²)); the samples decide
    # between the two by their marginal likelihoods (Bayesian model averaging). The home
    # reactor's samples (3 % SD, more than the model's own error) then leave a good model
    # alone, while a foreign probe's consistent error is taken up from the first samples.
    offset_prior_sd: float = 0.15  # a under H1: probe gain error, ln units (~15 %)
    slope_prior_sd: float = 0.02  # c under H1: change of the log error per unit ln(OD/OD0)
    prior_needs_calibration: float = 0.25  # P(H1) before any sample
    # Under H1 the offset also wanders (a model's error is not one number over a batch): a
    # random walk of this SD per √h, so recent samples count more than old ones.
    offset_walk_sd_per_h: float = 0.03
    k_prior_rel_sd: float = 0.30  # k of the card, 30 % relative SD
    k_walk_rel_sd_per_h: float = 0.005
    model_error_sd: float = 0.02  # the model's own error on its training reactor
    balance_error_sd: float = 0.10  # the carbon balance's own error (analyser, maintenance)
    error_floor_sd: float = 0.01
    prior_weight: float = 4.0  # pseudo-samples behind each structural error SD
    forget: float = 0.6  # weight of a one-step error per later sample
    min_co2_mmol_l: float = 3.0  # below this a sample says nothing about k


@dataclass(frozen=True, slots=True)
class AdaptedEstimate:
    """One adapted nowcast: OD600, its log SD, the blend weight of the model and the parts."""

    od600: float
    log_sd: float
    model_weight: float
    model_od600: float  # the calibrated model alone
    balance_od600: float  # the adapted carbon balance alone (NaN without OD0 or CO2)
    samples_seen: int


@dataclass
class BatchAdapter:
    """The adaptation state of one batch; ``observe`` samples, ``estimate`` windows."""

    k_prior: float
    config: AdaptationConfig = field(default_factory=AdaptationConfig)
    od0: float = math.nan
    samples_seen: int = 0
    last_time: float = math.nan
    # Calibration: (hours since the first sample, ln(m/OD0)) and log error of each sample.
    _rows: list[tuple[float, float]] = field(default_factory=list)
    _errors: list[float] = field(default_factory=list)
    first_time: float = math.nan
    theta: np.ndarray = field(init=False)  # posterior mean of (a, c) under H1 at the last sample
    theta_cov: np.ndarray = field(init=False)
    _last_hours: float = 0.0
    needs_calibration: float = field(init=False)  # P(H1 | samples)
    k: float = field(init=False)
    k_var: float = field(init=False)
    model_sq_errors: list[float] = field(default_factory=list)
    balance_sq_errors: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.config
        self.theta = np.zeros(2)
        self.theta_cov = np.diag([cfg.offset_prior_sd**2, cfg.slope_prior_sd**2])
        self.needs_calibration = cfg.prior_needs_calibration
        usable_k = self.k_prior if math.isfinite(self.k_prior) and self.k_prior > 0 else math.nan
        self.k = usable_k
        self.k_var = (cfg.k_prior_rel_sd * usable_k) ** 2 if math.isfinite(usable_k) else math.nan

    # -- the two estimators -----------------------------------------------------------
    def _regressor(self, model_log: float) -> np.ndarray:
        reference = math.log(self.od0) if self.od0 > 0 else model_log
        return np.array([1.0, model_log - reference])

    def _model_part(self, model_log: float, hours: float = math.nan) -> tuple[float, float]:
        """(log OD, parameter variance) of the calibrated model, averaged over H0 and H1.

        ``hours`` since the first sample: the offset's random walk widens the variance after
        the last sample (NaN: at the last sample)."""
        x = self._regressor(model_log)
        p1 = self.needs_calibration
        shift = float(x @ self.theta)
        walk = 0.0
        if math.isfinite(hours) and hours > self._last_hours:
            walk = self.config.offset_walk_sd_per_h**2 * (hours - self._last_hours)
        variance = p1 * (float(x @ self.theta_cov @ x) + walk) + p1 * (1.0 - p1) * shift**2
        return model_log + p1 * shift, variance

    def _balance_part(self, cum_co2: float) -> tuple[float, float]:
        """(log OD, parameter variance) of the carbon balance; NaN when it cannot be used."""
        if not (self.od0 > 0 and math.isfinite(self.k) and math.isfinite(cum_co2)):
            return math.nan, math.nan
        od = self.od0 + self.k * max(cum_co2, 0.0)
        if od <= 0:
            return math.nan, math.nan
        return math.log(od), (max(cum_co2, 0.0) / od) ** 2 * self.k_var

    def _structural(self, errors: list[float], prior_sd: float) -> float:
        """Estimator error variance: one-step errors net of the samples' own noise.

        Older errors fade (``forget`` per sample): the first ones mostly show the estimator
        still learning its parameters, not how good it is once it has.
        """
        cfg = self.config
        weights = cfg.forget ** np.arange(len(errors) - 1, -1, -1, dtype=float)
        prior_weight = cfg.prior_weight * cfg.forget ** len(errors)
        net = np.asarray(errors, dtype=float) - cfg.sample_log_sd**2
        variance = (prior_weight * prior_sd**2 + float(weights @ net)) / (
            prior_weight + float(weights.sum())
        )
        return max(variance, cfg.error_floor_sd**2)

    # -- the samples ------------------------------------------------------------------
    def _calibrate(self) -> None:
        """Posterior of (a, c) under H1 at the last sample and P(H1), from all samples so far.

        Closed form (a Gaussian process in the samples): errors e = X·(a, c) + w + ε with w
        the offset's random walk (cov q·min(tᵢ, tⱼ)) and ε the sample and model noise. The
        offset at the last sample is a + w(t_last); it is folded into θ[0].
        """
        cfg = self.config
        hours = np.array([h for h, _ in self._rows])
        design = np.array([[1.0, shift] for _, shift in self._rows])
        errors = np.array(self._errors)
        noise = (cfg.sample_log_sd**2 + cfg.model_error_sd**2) * np.eye(len(errors))
        prior = np.diag([cfg.offset_prior_sd**2, cfg.slope_prior_sd**2])
        walk = cfg.offset_walk_sd_per_h**2 * np.minimum.outer(hours, hours)
        covariance = design @ prior @ design.T + walk + noise
        # Cross-covariance of (a + w(t_last), c) with the errors.
        last = hours[-1]
        cross = prior @ design.T
        cross[0] += cfg.offset_walk_sd_per_h**2 * np.minimum(hours, last)
        solved = np.linalg.solve(covariance, cross.T)
        self.theta = solved.T @ errors
        state_prior = prior.copy()
        state_prior[0, 0] += cfg.offset_walk_sd_per_h**2 * last
        self.theta_cov = state_prior - cross @ solved
        self._last_hours = float(last)
        log_h1 = _log_normal(errors, covariance)
        log_h0 = _log_normal(errors, noise)
        p1 = cfg.prior_needs_calibration
        log_odds = math.log(p1 / (1.0 - p1)) + log_h1 - log_h0
        self.needs_calibration = 1.0 / (1.0 + math.exp(-max(min(log_odds, 700.0), -700.0)))

    def observe(self, timestamp: float, od600: float, model_log: float, cum_co2: float) -> None:
        """A sample of OD600 taken at ``timestamp``, with the window values at that time."""
        if not (math.isfinite(od600) and od600 > 0):
            return
        if not math.isfinite(self.od0):
            self.od0 = od600  # the inoculation sample anchors the carbon balance and c
        cfg = self.config
        if math.isfinite(self.last_time) and timestamp > self.last_time and math.isfinite(self.k):
            hours = (timestamp - self.last_time) / 3600.0
            self.k_var += (cfg.k_walk_rel_sd_per_h * self.k) ** 2 * hours
        self.last_time = timestamp
        y = math.log(od600)
        if math.isfinite(model_log):
            if self._errors:  # the first sample's error is what calibration learns from
                predicted, _ = self._model_part(model_log)
                self.model_sq_errors.append((y - predicted) ** 2)
            if not math.isfinite(self.first_time):
                self.first_time = timestamp
            hours = (timestamp - self.first_time) / 3600.0
            self._rows.append((hours, float(self._regressor(model_log)[1])))
            self._errors.append(y - model_log)
            self._calibrate()
        balance_log, _ = self._balance_part(cum_co2)
        if math.isfinite(balance_log) and self.samples_seen > 0:
            self.balance_sq_errors.append((y - balance_log) ** 2)
        if math.isfinite(self.k) and math.isfinite(cum_co2) and cum_co2 > cfg.min_co2_mmol_l:
            # OD − OD0 = k · ΔCO2 + e, e ~ N(0, (sd · OD)²): a linear Kalman step on k.
            variance = (cfg.sample_log_sd * od600) ** 2
            innovation_var = cum_co2**2 * self.k_var + variance
            gain = self.k_var * cum_co2 / innovation_var
            self.k += gain * (od600 - self.od0 - self.k * cum_co2)
            self.k_var *= 1.0 - gain * cum_co2
        self.samples_seen += 1

    # -- the windows ------------------------------------------------------------------
    def estimate(
        self, model_log: float, cum_co2: float, timestamp: float = math.nan
    ) -> AdaptedEstimate:
        """The adapted nowcast for a window (the model's log nowcast and ΔCO₂ there)."""
        cfg = self.config
        hours = (
            (timestamp - self.first_time) / 3600.0 if math.isfinite(self.first_time) else math.nan
        )
        model_value, model_var = self._model_part(model_log, hours)
        model_var += self._structural(self.model_sq_errors, cfg.model_error_sd)
        balance_value, balance_var = self._balance_part(cum_co2)
        # From the inoculation sample on (it anchors OD0), weighed by the balance's prior
        # error until its own one-step errors are known: before the second sample the model is
        # calibrated on one sample only, which on a foreign probe is the weaker of the two.
        if math.isfinite(balance_value) and self.samples_seen > 0:
            balance_var += self._structural(self.balance_sq_errors, cfg.balance_error_sd)
            weight = (1.0 / model_var) / (1.0 / model_var + 1.0 / balance_var)
            value = weight * model_value + (1.0 - weight) * balance_value
            variance = 1.0 / (1.0 / model_var + 1.0 / balance_var)
        else:
            weight, value, variance = 1.0, model_value, model_var
        return AdaptedEstimate(
            od600=math.exp(value),
            log_sd=math.sqrt(variance),
            model_weight=weight,
            model_od600=math.exp(model_value),
            balance_od600=math.exp(balance_value) if math.isfinite(balance_value) else math.nan,
            samples_seen=self.samples_seen,
        )


def _log_normal(values: np.ndarray, covariance: np.ndarray) -> float:
    """log N(values; 0, covariance)."""
    _sign, log_det = np.linalg.slogdet(covariance)
    quadratic = float(values @ np.linalg.solve(covariance, values))
    return -0.5 * (quadratic + float(log_det) + len(values) * math.log(2.0 * math.pi))


def adapt_batch(
    window_end: np.ndarray,
    model_log: np.ndarray,
    cum_co2: np.ndarray,
    sample_times: np.ndarray,
    sample_od: np.ndarray,
    k_prior: float,
    config: AdaptationConfig | None = None,
) -> dict[str, np.ndarray]:
    """Adapt a whole batch causally (validation): each window sees the samples before it.

    A sample is observed with the window values of the last window ending at or before it
    (what the live shadow has when the sample is entered).
    """
    adapter = BatchAdapter(k_prior, config or AdaptationConfig())
    order = np.argsort(sample_times)
    times, values = sample_times[order], sample_od[order]
    out = {
        name: np.full(len(window_end), np.nan)
        for name in ("od600", "log_sd", "model_weight", "model_od600", "balance_od600", "seen")
    }
    pending = 0
    for row, end in enumerate(window_end):
        while pending < len(times) and times[pending] < end:
            at = int(np.searchsorted(window_end, times[pending], side="right")) - 1
            if at >= 0:
                adapter.observe(
                    float(times[pending]),
                    float(values[pending]),
                    float(model_log[at]),
                    float(cum_co2[at]),
                )
            else:
                adapter.observe(float(times[pending]), float(values[pending]), math.nan, 0.0)
            pending += 1
        estimate = adapter.estimate(float(model_log[row]), float(cum_co2[row]), float(end))
        out["od600"][row] = estimate.od600
        out["log_sd"][row] = estimate.log_sd
        out["model_weight"][row] = estimate.model_weight
        out["model_od600"][row] = estimate.model_od600
        out["balance_od600"][row] = estimate.balance_od600
        out["seen"][row] = estimate.samples_seen
    return out


class LiveAdaptation:
    """Adaptation in serving: one :class:`BatchAdapter` per reactor, fed as samples arrive.

    ``set_samples`` (any thread) hands over the reactor's samples so far, as the notebook
    holds them; ``adapt`` (the inference thread) observes those taken before the window's
    end, using the model's nowcast and ΔCO₂ of the window they fell in, and returns the
    adapted estimate. A sample list that is not an extension of the one already used (a
    corrected or deleted sample) restarts the reactor's adapter from its stored windows; a
    window index that goes back (a new batch) starts afresh.
    """

    WINDOWS_KEPT = 4000  # 33 h of 30 s windows

    def __init__(
        self,
        k_prior: float,
        config: AdaptationConfig | None = None,
        base_log_sd: float = math.nan,
    ) -> None:
        """``base_log_sd``: the model's deconvolved SD (``conformal.card_base_log_sd``); the
        online bands (``bands``) need it, NaN leaves them out."""
        import threading
        from collections import deque

        self.k_prior = k_prior
        self.config = config or AdaptationConfig()
        self.base_log_sd = base_log_sd
        # Per reactor: the online band about the model as trained and about the adapted nowcast.
        self._bands: dict[str, tuple[OnlineBand, OnlineBand]] = {}
        self._lock = threading.Lock()
        self._samples: dict[str, list[tuple[float, float]]] = {}
        self._adapters: dict[str, BatchAdapter] = {}
        self._used: dict[str, list[tuple[float, float]]] = {}
        self._windows: dict[str, deque[tuple[float, float, float]]] = {}
        self._last_index: dict[str, int] = {}
        # Per reactor: the end of the window ``adapt`` made last (the bands widen with the time
        # from the last sample to it).
        self._last_end: dict[str, float] = {}
        self._deque = deque
        # Log errors of the model (as trained) at the samples observed by the last ``adapt``.
        self.new_errors: list[float] = []

    def set_samples(self, reactor: str, times: list[float], values: list[float]) -> None:
        pairs = sorted(
            (float(t), float(v))
            for t, v in zip(times, values, strict=True)
            if math.isfinite(t) and math.isfinite(v) and v > 0
        )
        with self._lock:
            self._samples[reactor] = pairs

    def add_sample(self, reactor: str, timestamp: float, value: float) -> None:
        with self._lock:
            current = list(self._samples.get(reactor, []))
        self.set_samples(
            reactor, [t for t, _ in current] + [timestamp], [v for _, v in current] + [value]
        )

    def new_batch(self, reactor: str, window_index: int) -> bool:
        """Whether ``window_index`` starts a new batch (the index went back)."""
        return 0 <= window_index < self._last_index.get(reactor, -1)

    def reset(self, reactor: str) -> None:
        """A new batch on ``reactor``: forget its samples, windows and adapter."""
        with self._lock:
            self._samples.pop(reactor, None)
        self._adapters.pop(reactor, None)
        self._used.pop(reactor, None)
        self._windows.pop(reactor, None)
        self._bands.pop(reactor, None)
        self._last_end.pop(reactor, None)

    def adapt(
        self, reactor: str, window_index: int, end: float, model_log: float, cum_co2: float
    ) -> AdaptedEstimate:
        if self.new_batch(reactor, window_index):
            self.reset(reactor)
        self._last_index[reactor] = window_index
        windows = self._windows.setdefault(reactor, self._deque(maxlen=self.WINDOWS_KEPT))
        with self._lock:
            samples = list(self._samples.get(reactor, []))
        due = [pair for pair in samples if pair[0] < end]
        used = self._used.get(reactor, [])
        adapter = self._adapters.get(reactor)
        bands = self._bands.get(reactor)
        if adapter is None or bands is None or due[: len(used)] != used:
            adapter = BatchAdapter(self.k_prior, self.config)
            # A restart replays the samples under the drift watch's present state.
            drifted = bands[0].drifted if bands is not None else False
            bands = (OnlineBand(TRAINED_BAND, drifted), OnlineBand(ADAPTED_BAND, drifted))
            used = []
        self.new_errors = []
        for timestamp, value in due[len(used) :]:
            model_then, co2_then, end_then = self._window_at(windows, timestamp)
            if math.isfinite(model_then):
                # The bands learn from the sample's error against the centres the window
                # before it had (the adapted one not having seen this sample yet), as
                # ``conformal.band_batch`` does in validation.
                adapted_then = adapter.estimate(model_then, co2_then, end_then).od600
                bands[0].observe(math.log(value) - model_then, self.base_log_sd)
                bands[1].observe(math.log(value / adapted_then), self.base_log_sd)
            adapter.observe(timestamp, value, model_then, co2_then)
            if math.isfinite(model_then):
                self.new_errors.append(math.log(value) - model_then)
        self._bands[reactor] = bands
        self._adapters[reactor] = adapter
        self._used[reactor] = due
        windows.append((end, model_log, cum_co2))
        estimate = adapter.estimate(model_log, cum_co2, end)
        self._last_end[reactor] = end
        return estimate

    def bands(
        self, reactor: str, drifted: bool, model_log: float, adapted_log: float
    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The online 90 % bands of the window ``adapt`` just made, (lower, upper) OD600 about
        the model as trained and about the adapted nowcast; ``drifted``: the drift watch's state
        including this window. None without a base SD or before ``adapt``."""
        bands = self._bands.get(reactor)
        if bands is None or not (math.isfinite(self.base_log_sd) and self.base_log_sd > 0):
            return None
        for band in bands:
            band.set_drift(drifted)
        end = self._last_end.get(reactor, math.nan)
        adapter = self._adapters.get(reactor)
        last_sample = adapter.last_time if adapter is not None else math.nan
        since = (end - last_sample) / 3600.0 if math.isfinite(end - last_sample) else 0.0
        return (
            bands[0].bounds(model_log, self.base_log_sd, since),
            bands[1].bounds(adapted_log, self.base_log_sd, since),
        )

    @staticmethod
    def _window_at(windows: Any, timestamp: float) -> tuple[float, float, float]:
        """The model's log nowcast, ΔCO₂ and end of the last window ending at or before a time."""
        for end, model_log, cum_co2 in reversed(windows):
            if end <= timestamp:
                return model_log, cum_co2, end
        return math.nan, 0.0, math.nan
