"""Scores and the campaign verdict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bptwin.twin.metrics import (
    CONDITIONAL,
    FAIL,
    PASS,
    BatchScore,
    Interval,
    block_bootstrap_mean,
    campaign_verdict,
    depletion_error_min,
    json_safe,
    mre,
    mre_interval,
    r2,
    relative_errors,
    rmse,
)


def test_mre_rmse_r2_on_known_values() -> None:
    truth = [1.0, 2.0, 4.0]
    pred = [1.1, 1.8, 4.0]
    assert mre(truth, pred) == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert rmse(truth, pred) == pytest.approx(math.sqrt((0.01 + 0.04) / 3))
    assert r2(truth, truth) == 1.0
    assert r2(truth, [np.mean(truth)] * 3) == pytest.approx(0.0)


def test_relative_errors_skip_nan_and_non_positive_truth() -> None:
    errors = relative_errors([0.0, -1.0, np.nan, 2.0], [1.0, 1.0, 1.0, 3.0])
    assert errors.tolist() == [0.5]


def test_mismatched_lengths_are_refused_with_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        mre([1, 2, 3], [1, 2])


def test_empty_input_gives_nan_not_a_crash() -> None:
    assert math.isnan(mre([], []))
    assert math.isnan(block_bootstrap_mean([]).estimate)


def test_block_bootstrap_is_wider_than_iid_for_a_correlated_series() -> None:
    rng = np.random.default_rng(0)
    # A slowly wandering error (random walk), as soft-sensor residuals are.
    series = 0.05 + 0.002 * np.cumsum(rng.normal(size=3000))
    series = np.abs(series)
    blocked = block_bootstrap_mean(series, block=120, n_boot=500, seed=1)
    iid = block_bootstrap_mean(series, block=1, n_boot=500, seed=1)
    assert blocked.lower <= blocked.estimate <= blocked.upper
    assert (blocked.upper - blocked.lower) > 3 * (iid.upper - iid.lower)


def test_mre_interval_contains_the_point_estimate() -> None:
    truth = np.linspace(1, 50, 500)
    pred = truth * (1 + 0.03 * np.sin(np.arange(500) / 20))
    interval = mre_interval(truth, pred, n_boot=200)
    assert interval.lower <= interval.estimate <= interval.upper
    assert interval.estimate == pytest.approx(mre(truth, pred))


def test_depletion_error_is_signed_minutes() -> None:
    assert depletion_error_min(1000.0 + 600, 1000.0) == pytest.approx(10.0)
    assert math.isnan(depletion_error_min(None, 1000.0))


def _score(batch: int, estimate: float, upper: float, depletion: float = 5.0) -> BatchScore:
    return BatchScore(batch, 100, Interval(estimate, estimate / 2, upper), 0.97, 1.0, depletion)


def test_verdict_pass_when_two_of_three_batches_hold_with_their_ci() -> None:
    scores = [_score(16, 0.03, 0.05), _score(17, 0.04, 0.06), _score(18, 0.12, 0.15)]
    verdict = campaign_verdict(scores, pooled_r2=0.95)
    assert verdict.outcome == PASS
    assert {c.name: c.status for c in verdict.criteria}["do_rmse"] == "not_evaluated"


def test_verdict_conditional_when_a_ci_crosses_the_limit() -> None:
    scores = [_score(16, 0.07, 0.09), _score(17, 0.075, 0.10), _score(18, 0.03, 0.05)]
    assert campaign_verdict(scores, pooled_r2=0.95).outcome == CONDITIONAL


def test_verdict_fails_on_mre_r2_or_depletion() -> None:
    good = [_score(16, 0.03, 0.05), _score(17, 0.03, 0.05), _score(18, 0.03, 0.05)]
    assert campaign_verdict(good, pooled_r2=0.85).outcome == FAIL
    bad_mre = [_score(16, 0.09, 0.1), _score(17, 0.10, 0.12), _score(18, 0.03, 0.05)]
    assert campaign_verdict(bad_mre, pooled_r2=0.95).outcome == FAIL
    late = [*good[:2], _score(18, 0.03, 0.05, depletion=-45.0)]
    verdict = campaign_verdict(late, pooled_r2=0.95)
    assert verdict.outcome == FAIL
    assert "45.0 min" in {c.name: c.detail for c in verdict.criteria}["depletion"]


def test_json_safe_turns_nan_into_null() -> None:
    text = json.dumps(json_safe({"a": math.nan, "b": [1.0, math.inf], "c": np.float64(2.0)}))
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 2.0}
