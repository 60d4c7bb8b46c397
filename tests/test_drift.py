"""Drift watch: training-distribution reference per 2 h of the batch, PSI and residuals."""

from __future__ import annotations

import math

import numpy as np

from bptwin.twin.drift import (
    MIN_WINDOWS,
    BatchDriftWatch,
    _psi,
    feature_reference,
)


def _training(rng: np.random.Generator, shift: float = 0.0):
    hours = np.tile(np.arange(0, 8, 0.5 / 60), 6)
    batches = np.repeat(np.arange(1, 7), len(hours) // 6)
    x = hours + rng.normal(0, 0.3, len(hours)) + shift  # rises through the batch
    y = rng.normal(0, 1, len(hours))
    return np.column_stack([hours, x, y]), hours, batches


def _watch(reference: dict) -> BatchDriftWatch:
    return BatchDriftWatch(reference, ["x", "y"], [1, 2], band_half_log=0.05, hours_position=0)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    reference = np.full(10, 0.1)
    assert _psi(reference, np.full(10, 30.0)) == 0.0
    shifted = np.array([0, 0, 0, 0, 0, 30, 60, 90, 60, 60], float)
    assert _psi(reference, shifted) > 1.0


def test_a_batch_like_the_training_batches_stays_quiet_a_shifted_one_trips() -> None:
    rng = np.random.default_rng(3)
    matrix, hours, batches = _training(rng)
    reference = feature_reference(matrix, ["time_since_inoculation_h", "x", "y"], hours, batches)
    assert set(reference) == {"time_since_inoculation_h", "x", "y"}
    assert len(reference["x"]["fractions"]) == 16 and reference["x"]["limit"] >= 0.25
    for shift, trips in ((0.0, False), (3.0, True)):
        watch = _watch(reference)
        live, _, _ = _training(np.random.default_rng(9), shift=shift)
        for row in live[: len(live) // 6]:
            watch.add_window(row)
        assert watch.state().tripped is trips
        if trips:
            assert "x outside its training distribution" in watch.state().reason


def test_a_sample_far_outside_the_band_trips_the_watch() -> None:
    rng = np.random.default_rng(3)
    matrix, hours, batches = _training(rng)
    reference = feature_reference(matrix, ["time_since_inoculation_h", "x", "y"], hours, batches)
    watch = _watch(reference)
    watch.add_residual(math.log(1.10))  # within 3 × 5 %: quiet
    assert not watch.state().tripped
    watch.add_residual(math.log(1.25))
    assert watch.state().tripped and "25 % off the model" in watch.state().reason
    assert MIN_WINDOWS <= 240


def test_a_tripped_drift_watch_raises_one_alarm_asking_for_a_sample() -> None:
    from unittest.mock import Mock

    from bptwin.tui.runtime.shadow_worker import ShadowWorker
    from bptwin.twin.alarm_rules import DEFAULT_RULES
    from bptwin.twin.predictor import Prediction
    from bptwin.twin.shadow import Shadow

    shadow = Shadow(["R1"], alarm_rules=DEFAULT_RULES)
    worker = ShadowWorker(shadow, latest=Mock(), recorder=Mock(), bus=Mock(), prefix="bptwin")
    state = Mock(reactor="R1")
    quiet = Prediction(1.7e9, 5.0, 4.5, 5.5, "v1", reactor="R1")
    worker.on_prediction(quiet, state)
    assert not shadow.alarms.active_alarms()
    tripped = Prediction(
        1.7e9 + 30, 5.0, 3.0, 8.0, "v1", reactor="R1", drift="a sample is 40 % off"
    )
    worker.on_prediction(tripped, state)
    raised = worker.transitions  # an event alarm: raised and returned, awaiting its ack
    worker.on_prediction(Prediction(1.7e9 + 60, 5.0, 3.0, 8.0, "v1", "R1", drift="x"), state)
    alarms = shadow.alarms.active_alarms()
    assert [a.rule for a in alarms] == ["model_drift"]
    assert "take a sample" in alarms[0].message
    assert raised > 0 and worker.transitions == raised  # once per batch, not every window
