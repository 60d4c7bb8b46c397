"""The online OD600 band (twin/conformal.py): coverage on synthetic streams, causality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptwin.twin.conformal import (
    BandConfig,
    OnlineBand,
    abs_quantile,
    band_batch,
    deconvolved_log_sd,
)

HOUR = 3600.0
TRAINED_BAND_NO_DRIFT = BandConfig(skip_first=1, drifted_prior_weight=6.0)
SAMPLE_HOURS = (0.1, 2, 4, 6, 8, 12, 16, 21)


def _stream(
    rng: np.random.Generator, bias: float, error_sd: float, hours: float = 22.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A batch of 30 s windows: centre (log), truth (log) off by a smooth error, 3 % samples."""
    ends = np.arange(0.5, hours * 120) * 30.0
    # A slowly varying error (an AR(1) with a ~1 h memory), as a model's error is.
    phi = math.exp(-30.0 / HOUR)
    noise = rng.normal(0.0, error_sd * math.sqrt(1 - phi**2), len(ends))
    error = np.empty(len(ends))
    error[0] = rng.normal(0.0, error_sd)
    for i in range(1, len(ends)):
        error[i] = phi * error[i - 1] + noise[i]
    truth = np.log(0.5) + 4.0 * ends / ends[-1]
    centre = truth - bias - error
    times = np.array(SAMPLE_HOURS) * HOUR
    values = np.exp(np.interp(times, ends, truth) + rng.normal(0.0, 0.03, len(times)))
    return ends, centre, truth, times, values


def _coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((np.log(lower) <= truth) & (truth <= np.log(upper))))


def test_deconvolution_removes_the_label_noise() -> None:
    # Card band ± 1.645 × 5 % against labels with 3 % noise: the model's own SD is 4 %.
    assert deconvolved_log_sd(-1.6449 * 0.05, 1.6449 * 0.05) == pytest.approx(0.04, rel=1e-4)
    # A band narrower than the labels' noise leaves the floor, never a negative variance.
    assert deconvolved_log_sd(-0.01, 0.01) == pytest.approx(0.005)
    assert math.isnan(deconvolved_log_sd(0.0, 0.0))


def test_abs_quantile_is_the_two_sided_quantile() -> None:
    assert abs_quantile(0.0, 1.0) == pytest.approx(1.6449, abs=1e-3)
    # A large bias: the band reaches past it by the one-sided 90 % quantile.
    assert abs_quantile(10.0, 1.0) == pytest.approx(10.0 + 1.2816, abs=1e-3)


def test_a_calibrated_base_covers_90_percent_of_the_truth_at_home() -> None:
    """Model error as large as the base: pooled coverage near 90 %, every batch 75–100 %."""
    rng = np.random.default_rng(1)
    base = 0.02
    pooled = []
    for _ in range(40):
        ends, centre, truth, times, values = _stream(rng, bias=0.0, error_sd=base)
        lower, upper = band_batch(ends, centre, np.full(len(ends), base), times, values)
        pooled.append(_coverage(lower, upper, truth))
    assert 0.82 <= float(np.mean(pooled)) <= 0.95
    assert min(pooled) > 0.5


def test_a_biased_model_gets_a_band_that_reaches_the_truth() -> None:
    """A foreign probe 25 % off, the mean left as trained: the band learns from the misses."""
    rng = np.random.default_rng(2)
    base = 0.02
    covered, card = [], []
    for _ in range(10):
        ends, centre, truth, times, values = _stream(rng, bias=0.25, error_sd=0.02)
        drifted = ends > times[0]  # the residual test trips at the first sample
        lower, upper = band_batch(ends, centre, np.full(len(ends), base), times, values, drifted)
        covered.append(_coverage(lower, upper, truth))
        half = 1.6449 * base
        card.append(_coverage(np.exp(centre - half), np.exp(centre + half), truth))
    assert max(card) < 0.05  # the fixed band misses everything
    assert 0.80 <= float(np.mean(covered)) <= 0.99


def test_a_future_sample_never_changes_a_past_band() -> None:
    rng = np.random.default_rng(3)
    ends, centre, _truth, times, values = _stream(rng, bias=0.05, error_sd=0.02)
    scale = np.full(len(ends), 0.02)
    lower, upper = band_batch(ends, centre, scale, times, values)
    changed = values.copy()
    changed[5] *= 1.5  # the 12 h sample, wildly off
    lower2, upper2 = band_batch(ends, centre, scale, times, changed)
    before = ends <= times[5]
    assert np.array_equal(lower[before], lower2[before])
    assert np.array_equal(upper[before], upper2[before])
    assert not np.allclose(upper[~before], upper2[~before])  # and it does count afterwards


def test_misses_widen_and_hits_narrow() -> None:
    band = OnlineBand(BandConfig())
    start = band.half_width(0.02)
    band.observe(0.2, 0.02)  # a 20 % miss
    assert band.half_width(0.02) > 3 * start
    quiet = OnlineBand(BandConfig())
    for _ in range(8):
        quiet.observe(0.0, 0.02)
    assert quiet.half_width(0.02) < start


def test_the_drift_watch_discounts_the_prior() -> None:
    calm, drifted = OnlineBand(), OnlineBand()
    drifted.set_drift(True)
    for band in (calm, drifted):
        band.observe(0.15, 0.02)
    assert drifted.half_width(0.02) > calm.half_width(0.02)


def test_unusable_samples_change_nothing() -> None:
    band = OnlineBand()
    before = band.half_width(0.02)
    band.observe(math.nan, 0.02)
    band.observe(0.1, 0.0)
    assert band.samples_seen == 0 and band.half_width(0.02) == before


def test_the_adapted_band_does_not_learn_from_the_models_own_first_miss() -> None:
    """About the adapted nowcast the first sample's error is the model's as trained (nothing
    was adapted yet): it is counted, not learnt from."""
    from bptwin.twin.conformal import ADAPTED_BAND, TRAINED_BAND

    adapted, trained = OnlineBand(ADAPTED_BAND), OnlineBand(TRAINED_BAND)
    start = adapted.half_width(0.02)
    for band in (adapted, trained):
        band.observe(0.3, 0.02)
    assert adapted.samples_seen == 1 and adapted.half_width(0.02) == start
    assert trained.half_width(0.02) > 3 * start
    adapted.observe(0.3, 0.02)
    # Then it learns, a large one-step error clipped (an adapter still learning its probe).
    assert 1.5 * start < adapted.half_width(0.02) < trained.half_width(0.02)


def test_the_adapted_band_lets_a_learning_transient_fade() -> None:
    """One huge one-step error (the adapter before it has learnt the probe), then errors of
    the base's size: the adapted band returns near the base within a few samples; unclipped
    it would stay much wider."""
    from bptwin.twin.conformal import ADAPTED_BAND

    clipped, unclipped = OnlineBand(ADAPTED_BAND), OnlineBand(TRAINED_BAND_NO_DRIFT)
    for band in (clipped, unclipped):
        band.set_drift(True)
        for error in (0.0, 0.2, 0.01, -0.02, 0.015, 0.0):
            band.observe(error, 0.02)
    base = 1.6449 * 0.02
    assert clipped.half_width(0.02) < 1.6 * base
    assert unclipped.half_width(0.02) > 1.5 * clipped.half_width(0.02)


def test_between_samples_the_band_widens_with_the_time_since_the_last_one() -> None:
    """With a growth term the band is narrowest at a sample and widens until the next; a new
    sample brings it back. Without samples learnt from, no growth (nothing to drift from)."""
    band = OnlineBand(BandConfig(growth_per_h=0.2))
    assert band.half_width(0.02, 6.0) == band.half_width(0.02, 0.0)
    band.observe(0.01, 0.02)
    at_sample, later = band.half_width(0.02, 0.0), band.half_width(0.02, 4.0)
    assert later > 1.2 * at_sample
    flat = OnlineBand(BandConfig())
    flat.observe(0.01, 0.02)
    assert flat.half_width(0.02, 4.0) == flat.half_width(0.02, 0.0)


def test_band_batch_grows_from_the_last_sample_before_each_window() -> None:
    rng = np.random.default_rng(5)
    ends, centre, _truth, times, values = _stream(rng, bias=0.0, error_sd=0.02)
    scale = np.full(len(ends), 0.02)
    _lower, upper = band_batch(
        ends, centre, scale, times, values, config=BandConfig(growth_per_h=0.2)
    )
    half = np.log(upper) - centre
    # Between the 12 h and the 16 h sample the half-width rises steadily.
    between = (ends > times[5] + 60) & (ends < times[6])
    assert np.all(np.diff(half[between]) >= -1e-12) and half[between][-1] > half[between][0]
