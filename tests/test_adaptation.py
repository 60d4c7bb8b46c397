"""Adaptation of the nowcast to a batch's own samples: causal, learns a foreign probe, leaves a
good model alone."""

from __future__ import annotations

import numpy as np
import pytest

from bptwin.twin.adaptation import BatchAdapter, adapt_batch

HOURS = np.arange(0.5, 24.0, 0.5 / 60)  # a window every 30 s
SAMPLE_HOURS = np.array([0.05, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 22.0])
K = 0.16  # OD per mmol/L of CO2


def _batch(seed: int, bias: float, slope: float = 0.0, k_true: float = K):
    """A growth curve, the CO2 that made it, a model off by ``bias``·(1 + slope·ln growth)."""
    rng = np.random.default_rng(seed)
    od0 = 0.4

    def od(hours: np.ndarray) -> np.ndarray:
        return od0 * np.exp(0.22 * np.clip(hours, 0, 20)) / (1 + 0.004 * np.exp(0.22 * hours))

    truth = od(HOURS)
    co2 = (truth - od0) / k_true
    growth = np.log(truth / od0)
    model_log = np.log(truth) - bias - slope * growth + rng.normal(0, 0.01, len(HOURS))
    samples = od(SAMPLE_HOURS) * (1 + 0.03 * rng.standard_normal(len(SAMPLE_HOURS)))
    return truth, co2, model_log, samples


def _run(seed: int, bias: float, **kwargs):
    truth, co2, model_log, samples = _batch(seed, bias, **kwargs)
    out = adapt_batch(HOURS * 3600, model_log, co2, SAMPLE_HOURS * 3600, samples, K)
    return truth, np.exp(model_log), out


def _mre(truth: np.ndarray, values: np.ndarray, after_h: float) -> float:
    keep = after_h < HOURS
    return float(np.mean(np.abs(values[keep] / truth[keep] - 1)))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_foreign_probe_is_learnt_from_the_first_samples(seed: int) -> None:
    truth, model, out = _run(seed, bias=-0.15, slope=-0.02)
    assert _mre(truth, model, 4.0) > 0.15
    assert _mre(truth, out["od600"], 2.0) < 0.05
    assert _mre(truth, out["od600"], 4.0) < 0.03


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_noisy_samples_do_not_pull_a_good_model_around(seed: int) -> None:
    truth, model, out = _run(seed, bias=0.0)
    assert _mre(truth, out["od600"], 0.0) < _mre(truth, model, 0.0) + 0.005


def test_a_window_sees_only_the_samples_taken_before_it() -> None:
    _, co2, model_log, samples = _batch(5, bias=-0.2)
    ends = HOURS * 3600
    full = adapt_batch(ends, model_log, co2, SAMPLE_HOURS * 3600, samples, K)
    early = adapt_batch(ends, model_log, co2, SAMPLE_HOURS[:3] * 3600, samples[:3], K)
    before_fourth = ends <= SAMPLE_HOURS[3] * 3600
    np.testing.assert_array_equal(full["od600"][before_fourth], early["od600"][before_fourth])
    assert not np.allclose(full["od600"][~before_fourth], early["od600"][~before_fourth])


def test_without_samples_the_model_stands_as_trained() -> None:
    adapter = BatchAdapter(K)
    estimate = adapter.estimate(np.log(5.0), 30.0)
    assert estimate.od600 == pytest.approx(5.0)
    assert estimate.model_weight == 1.0 and estimate.samples_seen == 0


def test_bad_samples_are_ignored() -> None:
    adapter = BatchAdapter(K)
    for value in (float("nan"), 0.0, -1.0):
        adapter.observe(0.0, value, np.log(0.4), 0.0)
    assert adapter.samples_seen == 0


def _live_bands(samples: list[tuple[float, float]], correct_at: int | None = None):
    """Run LiveAdaptation over a synthetic foreign batch; optionally correct one sample late."""
    from bptwin.twin.adaptation import LiveAdaptation

    _, co2, model_log, _ = _batch(5, bias=0.2)
    live = LiveAdaptation(K, base_log_sd=0.02)
    live.set_samples("R1", [t for t, _ in samples], [v for _, v in samples])
    out = []
    for index, hours in enumerate(HOURS):
        if correct_at is not None and index == correct_at:
            fixed = list(samples)
            fixed[3] = (fixed[3][0], fixed[3][1] * 1.5)
            live.set_samples("R1", [t for t, _ in fixed], [v for _, v in fixed])
        estimate = live.adapt("R1", index, hours * 3600, model_log[index], co2[index])
        bands = live.bands("R1", False, model_log[index], np.log(estimate.od600))
        assert bands is not None
        out.append(bands)
    return np.array(out)


def test_a_corrected_sample_restarts_the_live_bands_as_if_it_had_been_right() -> None:
    """A corrected sample rebuilds the reactor's bands from its stored windows: afterwards they
    are those of a reactor that had the corrected value all along."""
    _, _, _, values = _batch(5, bias=0.2)
    samples = list(zip((SAMPLE_HOURS * 3600).tolist(), values.tolist(), strict=True))
    corrected = list(samples)
    corrected[3] = (corrected[3][0], corrected[3][1] * 1.5)
    late = int(np.searchsorted(HOURS, 14.0))
    restarted = _live_bands(samples, correct_at=late)
    right_from_start = _live_bands(corrected)
    wrong_all_along = _live_bands(samples)
    np.testing.assert_allclose(restarted[late:], right_from_start[late:], rtol=1e-12)
    assert not np.allclose(wrong_all_along[late:], right_from_start[late:])
