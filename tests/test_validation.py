"""The validation report: scores, verdict, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_model_data import shared_small_dataset, shared_small_training
from twin.labels import LabelError
from twin.metrics import CONDITIONAL, FAIL, PASS
from twin.model import TrainResult
from twin.validation import evaluate, write_report


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_small_dataset(tmp_path_factory)


@pytest.fixture(scope="session")
def small_training(small_dataset: Path) -> TrainResult:
    return shared_small_training(small_dataset)


@pytest.fixture(scope="module")
def validation(small_training: TrainResult, small_dataset: Path):
    return evaluate(small_training.artifact, small_dataset, n_boot=100)


def test_scores_only_the_hold_out_by_default(validation) -> None:
    assert validation.batches == [4]
    assert validation.reference == "truth"
    score = validation.scores[0]
    assert score.batch == 4 and score.n_windows > 400
    assert score.mre.lower <= score.mre.estimate <= score.mre.upper
    assert validation.verdict.outcome in (PASS, CONDITIONAL, FAIL)
    assert 0.0 <= validation.coverage <= 1.0
    assert validation.importance and validation.importance[0]["gain_share"] > 0
    assert "warning" not in validation.baseline


def test_scoring_training_batches_is_flagged(small_training: TrainResult, small_dataset) -> None:
    result = evaluate(small_training.artifact, small_dataset, [1], n_boot=20)
    assert "optimistic" in result.baseline["warning"]


def test_report_folder_has_markdown_json_and_plots(validation, tmp_path: Path) -> None:
    report = write_report(validation, tmp_path / "report")
    text = report.read_text()
    assert "## Verdict" in text and "| 4 |" in text
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["per_batch"][0]["batch"] == 4
    assert data["verdict"]["outcome"] == validation.verdict.outcome
    for name in ("predicted_vs_time.png", "predicted_vs_actual.png"):
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"


def test_stress_test_without_a_sensor(small_training: TrainResult, small_dataset) -> None:
    result = evaluate(
        small_training.artifact, small_dataset, n_boot=20, drop_channels=("od_probe",)
    )
    assert result.dropped_channels == ("od_probe",)
    assert result.table["od_probe_mean"].isna().all()
    assert result.scores[0].n_windows > 400
    with pytest.raises(LabelError, match="unknown channel"):
        evaluate(small_training.artifact, small_dataset, drop_channels=("od_prob",))


def test_unknown_batch_is_a_clear_error(small_training: TrainResult, small_dataset) -> None:
    with pytest.raises(LabelError, match="no batch"):
        evaluate(small_training.artifact, small_dataset, [99])
