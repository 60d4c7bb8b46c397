"""The validation report: scores, verdict, files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bptwin.twin.labels import LabelError
from bptwin.twin.metrics import CONDITIONAL, FAIL, PASS
from bptwin.twin.model import TrainResult
from bptwin.twin.validation import evaluate, write_report
from tests.test_model_data import shared_small_dataset, shared_small_training


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
    shap = validation.attributions
    assert shap["rows"] == score.n_windows and 0 < shap["leading_share"] <= 1
    assert sum(t["share"] for t in shap["top"]) <= 1 + 1e-9
    assert shap["concentrated"] == (shap["leading_share"] > 0.5)
    adapted = validation.adaptation[0]
    assert adapted["batch"] == 4 and adapted["samples"] >= 2
    assert 0 <= adapted["adapted_band_coverage"] <= 1
    assert 0 <= adapted["band_coverage"] <= 1
    assert validation.table[["band_lower", "band_upper"]].notna().all().all()


def test_scoring_training_batches_is_an_error_unless_forced(
    small_training: TrainResult, small_dataset, tmp_path: Path
) -> None:
    import shutil

    from bptwin.twin.validation import TrainingBatchError

    with pytest.raises(TrainingBatchError, match=r"batches \[1\] .* were used to train"):
        evaluate(small_training.artifact, small_dataset, [1, 4], n_boot=20)
    result = evaluate(small_training.artifact, small_dataset, [1], n_boot=20, force=True)
    assert "optimistic" in result.baseline["warning"]
    # The same batch in another dataset folder (a copy) is still a training batch.
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    with pytest.raises(TrainingBatchError):
        evaluate(small_training.artifact, copy, [2], n_boot=20)


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


@pytest.fixture(scope="module")
def whole_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One nominal hold-out batch (another campaign seed than the shipped model's), simulated
    from inoculation to past depletion, so the DO forecast has a whole batch to be scored on."""
    from bptwin.twin.campaign import generate_campaign

    folder = tmp_path_factory.mktemp("whole-batch")
    generate_campaign(folder, 7, batches=[16], workers=1)
    return folder


def test_do_forecast_of_the_shipped_model_is_scored_and_in_the_verdict(
    whole_batch: Path, tmp_path: Path
) -> None:
    from bptwin.twin.registry import SHIPPED_MODELS_DIR, Registry

    artifact = Registry(SHIPPED_MODELS_DIR).load("current")
    result = evaluate(artifact, whole_batch, [16], n_boot=50, jobs=1)
    assert result.do_reference == "simulator truth"
    (row,) = result.do_forecast
    assert row["batch"] == 16 and row["forecasts"] >= 20
    # Scored against the truth, it must beat "the DO stays where it is" by far (this batch's
    # carbon budget is off the training mean: depletion ~25 min late, DO RMSE ~11 % sat).
    assert row["rmse_to_end"] < 0.5 * row["persistence_rmse_to_end"]
    assert row["rmse_to_end_from_start"] >= row["rmse_to_end"]
    assert 0.5 < row["band_coverage"] <= 1.0
    assert set(row["rmse_at_horizon_min"]) == {"30", "60", "120"}
    assert result.scores[0].do_rmse == pytest.approx(row["rmse_to_end"])
    criterion = next(c for c in result.verdict.criteria if c.name == "do_rmse")
    assert criterion.status == (PASS if row["rmse_to_end"] < 5.0 else FAIL)
    assert all(math.isfinite(f["do_rmse_to_end"]) for f in result.forecast)
    report = write_report(result, tmp_path / "report")
    assert "## DO forecast" in report.read_text()
    assert (tmp_path / "report" / "forecast_do.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["do_forecast"]["per_batch"][0]["batch"] == 16
    assert data["per_batch"][0]["do_rmse"] == pytest.approx(row["rmse_to_end"])
