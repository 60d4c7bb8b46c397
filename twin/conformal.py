"""The OD600 band: a calibrated base width, adapted online and causally from the batch's samples.

The 90 % band must cover the *true* OD600, but the only truth a reactor ever shows is its
offline samples, and those carry their own 3 % noise (more than the model's own error at home).
Two steps:

* **Base width, deconvolved.** The card's interval holds the 5th/95th percentiles of the
  out-of-fold log residuals against the training *labels*, which are interpolated samples:
  residual = model error + label error. Assuming both Gaussian and independent, and the label
  error as large as one sample's noise (3 % SD; measured against the simulator's truth the
  carbon-guided labels are 2.7–2.9 % RMS), the model's own SD is
  √(s_card² − 0.03²) with s_card = half the interval / 1.645.
* **Online, from the batch's own samples** (each window uses only the samples taken before
  its end). At every sample the band's centre had an error e (log sample − log centre, the
  centre computed before the sample was seen). In units of the band's scale s (the base SD,
  about the model as trained and about the adapted nowcast alike) z = e / s, and the sample
  noise is r = 0.03 / s. The truth's error is taken as N(μ, v) in those units: μ and v are estimated
  from the recent z (older samples fade), v net of the noise r², both pulled to the prior
  (0, 1) by ``prior_weight`` pseudo-samples — many while the drift watch is quiet (the base
  holds until the samples clearly disagree), few once it has tripped (outside what the model
  learnt the base says little). The band is symmetric about the centre, half-width
  s · q(μ, v), q the 90 % quantile of |N(μ, v)|: a biased model (a foreign probe before the
  mean is adapted) gets a band that reaches the truth. Tripped by its features before any
  sample, the band is at least the drift watch's 15 % log SD.
* **Growth between samples.** A centre's error drifts between two samples (the adapted
  nowcast is best just after one): v grows by ``growth_per_h`` (units of s²) per hour since
  the last sample, so the band is narrowest at a sample and widest before the next.
* **Adaptive conformal inference** (Gibbs & Candès 2021) on top: a log factor θ on the
  half-width, θ ← θ + γ·(miss − α) at every sample, where a miss is judged against the band
  *widened by the sample noise* (q of |N(μ, v + r²)|): under the Gaussian assumption a band
  that covers the truth 90 % of the time lets exactly 10 % of the noisy samples out, so ACI
  steers the truth's coverage, not the samples'.

``band_batch`` replays a batch for validation; live, ``adaptation.LiveAdaptation`` feeds the
same ``OnlineBand`` sample by sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Relative SD of an offline OD600 sample (spectrophotometer after dilution).
SAMPLE_LOG_SD = 0.03
# The training labels are interpolated samples: their error against the truth is assumed as
# large as one sample's noise (measured 2.7–2.9 % RMS on the simulated home campaign).
LABEL_LOG_SD = SAMPLE_LOG_SD
NOMINAL = 0.90
BAND_Z = 1.6449  # two-sided 90 % of a normal
MIN_LOG_SD = 0.005


def deconvolved_log_sd(
    lower_log: float, upper_log: float, label_log_sd: float = LABEL_LOG_SD
) -> float:
    """The model's own log SD against the truth from a band fitted against noisy labels."""
    half = 0.5 * (upper_log - lower_log)
    if not (math.isfinite(half) and half > 0):
        return math.nan
    total = (half / BAND_Z) ** 2
    return math.sqrt(max(total - label_log_sd**2, MIN_LOG_SD**2))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def abs_quantile(mean: float, variance: float, level: float = NOMINAL) -> float:
    """h with P(|X| ≤ h) = level for X ~ N(mean, variance) (bisection; h ≥ 0)."""
    sd = math.sqrt(max(variance, 1e-12))
    low, high = 0.0, abs(mean) + 10.0 * sd
    for _ in range(40):  # 10 SDs / 2⁴⁰: far below a band's precision
        middle = 0.5 * (low + high)
        inside = _normal_cdf((middle - mean) / sd) - _normal_cdf((-middle - mean) / sd)
        if inside < level:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@dataclass(frozen=True, slots=True)
class BandConfig:
    """How fast the band learns from the batch's samples."""

    level: float = NOMINAL
    sample_log_sd: float = SAMPLE_LOG_SD
    prior_weight: float = 6.0  # pseudo-samples behind the prior (0, 1) while the watch is quiet
    drifted_prior_weight: float = 0.5  # once the drift watch has tripped
    forget: float = 0.7  # weight of a sample per later sample
    # Floor of v (units of the scale): 3 %-noisy samples that happen to fall close to the
    # model cannot show a model better than ~0.8 × its deconvolved base.
    min_variance: float = 0.6
    aci_step: float = 0.3  # γ of adaptive conformal inference
    aci_limit: float = 1.5  # |θ| bound
    # Tripped by its features before any sample: the band of an uncalibrated probe (15 % log
    # SD, as the drift watch's), until the samples say how far off the model is.
    drifted_log_sd: float = 0.15
    # Samples whose error says nothing about the centre's own error: about the adapted nowcast
    # the first sample's error is the model's as trained (nothing was adapted yet).
    skip_first: int = 0
    # Errors beyond this many SDs of the band's present estimate count as this far (Huber):
    # about the adapted nowcast a large one-step error is the adapter still learning, and a
    # lasting one is taken up by the adapter itself. inf: every error counts in full.
    clip: float = math.inf
    # Between samples the centre drifts (an adapted nowcast is best at its last sample): the
    # truth's error variance grows by this much (units of the scale²) per hour since the last
    # sample the band learnt from.
    growth_per_h: float = 0.0


# The band about the model as trained, and the band about the adapted nowcast: that one does
# not learn from the first sample (the model's own error), clips the large one-step errors of
# an adapter still learning, and keeps its prior when the drift watch trips (the watch judged
# the model as trained, whose error the adapter takes up).
# Their parameters were chosen on tuning batches simulated apart from every hold-out set
# (batches 4–15 of campaign seed 5 at home and on lab-b, 4–9 on lab-c; even batches 4–14 of
# seed 3 at home and on lab-b; docs/model.md "Bands"), never on the hold-out batches 16–18.
TRAINED_BAND = BandConfig(prior_weight=2.0, drifted_prior_weight=1.0, growth_per_h=0.05)
ADAPTED_BAND = BandConfig(
    skip_first=1, clip=2.0, drifted_prior_weight=6.0, forget=0.5, growth_per_h=0.1
)


@dataclass
class OnlineBand:
    """The band of one batch: ``observe`` each sample's error, ``half_width`` for a window.

    Causal by construction: the state changes only in ``observe`` (a sample, with the centre
    and scale the window before it had) and ``set_drift``; a window's band reads the state.
    """

    config: BandConfig = field(default_factory=BandConfig)
    drifted: bool = False
    samples_seen: int = 0
    theta: float = 0.0
    mean: float = 0.0
    variance: float = 1.0
    _scores: list[tuple[float, float]] = field(default_factory=list)  # (z, r²)
    _quantile: float = BAND_Z

    def __post_init__(self) -> None:
        self._refit()

    def set_drift(self, tripped: bool) -> None:
        """The drift watch's state: tripped, the prior counts for little."""
        if tripped != self.drifted:
            self.drifted = tripped
            self._refit()

    def observe(self, log_error: float, scale: float) -> None:
        """A sample missed the centre by ``log_error`` where the band's scale was ``scale``."""
        if not (math.isfinite(log_error) and math.isfinite(scale) and scale > 0):
            return
        cfg = self.config
        self.samples_seen += 1
        if self.samples_seen <= cfg.skip_first:
            return
        z = log_error / scale
        noise = (cfg.sample_log_sd / scale) ** 2
        # ACI: judged against the band as it stood, widened by the sample's own noise.
        widened = abs_quantile(self.mean, self.variance + noise, cfg.level) * math.exp(self.theta)
        miss = 1.0 if abs(z) > widened else 0.0
        reach = cfg.clip * math.sqrt(self.variance + noise)
        z = min(max(z, self.mean - reach), self.mean + reach)
        self.theta += cfg.aci_step * (miss - (1.0 - cfg.level))
        self.theta = max(-cfg.aci_limit, min(cfg.aci_limit, self.theta))
        self._scores.append((z, noise))
        self._refit()

    def _refit(self) -> None:
        cfg = self.config
        prior = cfg.drifted_prior_weight if self.drifted else cfg.prior_weight
        count = len(self._scores)
        weights = [cfg.forget ** (count - 1 - i) for i in range(count)]
        total = prior + sum(weights)
        pairs = list(zip(weights, self._scores, strict=True))
        mean = sum(w * z for w, (z, _) in pairs) / total
        spread = sum(w * ((z - mean) ** 2 - noise) for w, (z, noise) in pairs)
        self.mean = mean
        self.variance = max((prior + spread) / total, cfg.min_variance)
        self._quantile = abs_quantile(self.mean, self.variance, cfg.level)

    def half_width(self, scale: float, hours_since_sample: float = 0.0) -> float:
        """The band's log half-width for a window whose scale is ``scale``, ``hours_since_sample``
        after the last sample (growth of the error between samples)."""
        growth = self.config.growth_per_h * max(hours_since_sample, 0.0) if self._scores else 0.0
        quantile = (
            abs_quantile(self.mean, self.variance + growth, self.config.level)
            if growth > 0
            else self._quantile
        )
        half = scale * quantile * math.exp(self.theta)
        if self.drifted and not self._scores:
            return max(half, BAND_Z * self.config.drifted_log_sd)
        return half

    def bounds(
        self, centre_log: float, scale: float, hours_since_sample: float = 0.0
    ) -> tuple[float, float]:
        """(lower, upper) OD600 of the band about ``centre_log``."""
        half = self.half_width(scale, hours_since_sample)
        return math.exp(centre_log - half), math.exp(centre_log + half)


def band_batch(
    window_end: np.ndarray,
    centre_log: np.ndarray,
    scale: np.ndarray,
    sample_times: np.ndarray,
    sample_values: np.ndarray,
    drifted: np.ndarray | None = None,
    config: BandConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of every window of a batch, replayed causally (validation).

    A window sees the samples taken before its end; a sample's error is against the centre
    and scale of the last window ending at or before it (what the live band had then).
    ``drifted``: the drift watch's state at each window (tripped so far).
    """
    band = OnlineBand(config or BandConfig())
    order = np.argsort(sample_times)
    times, values = sample_times[order], sample_values[order]
    lower = np.full(len(window_end), np.nan)
    upper = np.full(len(window_end), np.nan)
    pending = 0
    last_sample = math.nan
    for row, end in enumerate(window_end):
        while pending < len(times) and times[pending] < end:
            last_sample = float(times[pending])
            at = int(np.searchsorted(window_end, times[pending], side="right")) - 1
            if at >= 0 and values[pending] > 0:
                band.observe(math.log(values[pending]) - centre_log[at], float(scale[at]))
            pending += 1
        if drifted is not None:
            band.set_drift(bool(drifted[row]))
        if math.isfinite(centre_log[row]) and math.isfinite(scale[row]):
            since = (end - last_sample) / 3600.0 if math.isfinite(last_sample) else 0.0
            lower[row], upper[row] = band.bounds(
                float(centre_log[row]), float(scale[row]), float(since)
            )
    return lower, upper


def card_base_log_sd(card: Any) -> float:
    """The deconvolved base SD of a model card's interval (NaN without one)."""
    interval = getattr(card, "interval", None) or {}
    try:
        return deconvolved_log_sd(float(interval["lower_log"]), float(interval["upper_log"]))
    except (KeyError, TypeError, ValueError):
        return math.nan
