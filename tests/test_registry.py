"""Model artifacts, cards, feature checks, promotion and one-step restore."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptwin.twin.features import FEATURE_NAMES
from bptwin.twin.registry import (
    CARD_FILE,
    FeatureMismatchError,
    ModelError,
    Registry,
    check_feature_names,
    load_artifact,
    load_model,
)
from tests.test_model_data import random_artifact


def test_save_and_load_round_trip_keeps_card_and_predictions(tmp_path: Path) -> None:
    artifact = random_artifact("v1", holdout_mre=0.05)
    folder = artifact.save(tmp_path / "v1")
    row = np.zeros((1, len(FEATURE_NAMES)))
    for reference in (folder, folder / CARD_FILE, folder / "model.txt"):
        loaded = load_artifact(reference)
        assert loaded.card.feature_names == list(FEATURE_NAMES)
        assert loaded.card.holdout_mre == pytest.approx(0.05)
        assert loaded.booster.predict(row)[0] == pytest.approx(artifact.booster.predict(row)[0])


def test_feature_order_mismatch_is_named() -> None:
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(FeatureMismatchError, match=r"another order.*position 0"):
        check_feature_names(swapped, FEATURE_NAMES)


def test_missing_and_extra_features_are_listed() -> None:
    names = [*list(FEATURE_NAMES)[1:], "retired_feature"]
    with pytest.raises(FeatureMismatchError) as caught:
        check_feature_names(names, FEATURE_NAMES)
    message = str(caught.value)
    assert FEATURE_NAMES[0] in message and "retired_feature" in message
    assert "bptwin train" in message


def test_loading_a_model_with_other_features_is_refused(tmp_path: Path) -> None:
    artifact = random_artifact("v1")
    folder = artifact.save(tmp_path / "v1")
    card = json.loads((folder / CARD_FILE).read_text())
    card["feature_names"] = list(reversed(card["feature_names"]))
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(FeatureMismatchError):
        load_artifact(folder)


def test_damaged_card_gives_a_clear_error(tmp_path: Path) -> None:
    folder = random_artifact("v1").save(tmp_path / "v1")
    (folder / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_artifact(folder)
    with pytest.raises(ModelError, match="not found"):
        load_artifact(tmp_path / "nowhere")


def test_promote_only_when_better_and_restore_in_one_step(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    for name, score in (("a", 0.05), ("b", 0.04), ("c", 0.06)):
        registry.add(random_artifact(name, holdout_mre=score))
    assert registry.versions() == ["a", "b", "c"]
    assert registry.promote("a").reason == "first model"
    assert "4.00 % < 5.00 %" in registry.promote("b").reason
    with pytest.raises(ModelError, match="does not beat b"):
        registry.promote("c")
    assert registry.current_version() == "b"
    restored = registry.restore_previous()
    assert (restored.version, registry.current_version()) == ("a", "a")
    with pytest.raises(ModelError, match="no previous model"):
        registry.restore_previous()
    forced = registry.promote("c", force=True)
    assert forced.reason.startswith("forced")
    assert registry.load("current").version == "c"


def test_promotion_on_a_reused_hold_out_says_so_in_the_card(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    for name, score in (("a", 0.05), ("b", 0.04), ("c", 0.03)):
        registry.add(random_artifact(name, holdout_mre=score))
    registry.promote("a")
    assert (
        registry.load("a", check=False).card.promotion["earlier_promotions_on_this_holdout"] == []
    )
    registry.promote("b")
    third = registry.promote("c")
    assert "already chose 2 earlier promotion(s) (a, b)" in third.reason
    card = registry.load("c", check=False).card
    assert card.promotion["earlier_promotions_on_this_holdout"] == ["a", "b"]
    assert "fresh hold-out" in card.promotion["note"]


def test_registry_refuses_duplicates_and_bad_names(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.add(random_artifact("same"))
    with pytest.raises(ModelError, match="already exists"):
        registry.add(random_artifact("same"))
    with pytest.raises(ModelError, match="invalid model version"):
        registry.load("../etc")
    with pytest.raises(ModelError, match="no current model"):
        registry.load("current")


def test_load_model_prefers_the_users_current_model(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    registry.add(random_artifact("mine"))
    registry.promote("mine")
    assert load_model("current", data_dir=tmp_path).version == "mine"
    assert load_model("mine", data_dir=tmp_path).version == "mine"
    with pytest.raises(ModelError, match="not found"):
        load_model("no-such-model", data_dir=tmp_path)


def test_changed_feature_code_is_reported(tmp_path: Path) -> None:
    from bptwin.twin.registry import pipeline_fingerprint

    artifact = random_artifact("v1")
    artifact.card.pipeline_fingerprint = pipeline_fingerprint()
    assert artifact.pipeline_warning() is None
    artifact.card.pipeline_fingerprint = "0" * 64
    warning = artifact.pipeline_warning()
    assert warning is not None and "retrain" in warning
    reloaded = load_artifact(artifact.save(tmp_path / "v1"))
    assert reloaded.pipeline_warning() == warning


def test_shipped_model_loads_and_matches_the_pipeline() -> None:
    registry = Registry(Path(__file__).resolve().parent.parent / "models")
    if registry.current_version() is None:
        pytest.fail("the repository must ship a default model in models/ (run 'make model')")
    artifact = registry.load("current")
    assert artifact.card.feature_names == list(FEATURE_NAMES)
    assert artifact.card.holdout_batches == [16, 17, 18]
    assert not set(artifact.card.training_batches) & {16, 17, 18}
    size = sum(p.stat().st_size for p in artifact.path.iterdir() if p.is_file())
    assert size < 2_000_000
