"""HISTORY.json is append-only: every promote and every restore is an entry with time and actor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bptwin.tui.cli import main
from bptwin.twin.registry import HISTORY_FILE, ModelError, Registry
from tests.test_model_data import random_artifact


def _registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "models")
    for name, score in (("a", 0.05), ("b", 0.04), ("c", 0.03)):
        registry.add(random_artifact(name, holdout_mre=score))
    return registry


def test_restore_keeps_the_promotion_it_steps_back_from(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.promote("a", actor="ana")
    registry.promote("b", actor="ben")
    registry.restore_previous(actor="sam")
    history = registry.history()
    assert [(e.action, e.version, e.previous, e.actor) for e in history] == [
        ("promote", "a", None, "ana"),
        ("promote", "b", "a", "ben"),
        ("restore", "a", "b", "sam"),
    ]
    assert all(e.when.endswith("+00:00") for e in history)
    assert registry.current_version() == "a"


def test_history_only_grows_over_promotes_and_restores(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    path = registry.root / HISTORY_FILE
    seen: list[dict[str, object]] = []
    for step in ("a", "b", "restore", "b", "c", "restore", "restore"):
        if step == "restore":
            registry.restore_previous(actor="sam")
        else:
            registry.promote(step, actor="ana")
        entries = json.loads(path.read_text())
        assert entries[: len(seen)] == seen  # nothing earlier rewritten or dropped
        assert len(entries) == len(seen) + 1
        seen = entries
    assert registry.current_version() == "a"
    assert registry.in_service() == ["a"]
    with pytest.raises(ModelError, match="no previous model"):
        registry.restore_previous()
    assert len(json.loads(path.read_text())) == 7  # a refused restore writes nothing


def test_restore_steps_back_through_the_models_in_service(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    for name in ("a", "b", "c"):
        registry.promote(name)
    assert registry.restore_previous().version == "b"
    assert registry.restore_previous().version == "a"
    assert registry.in_service() == ["a"]


def test_history_written_before_restores_existed_still_reads(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    registry.root.joinpath(HISTORY_FILE).write_text(
        json.dumps(
            [
                {
                    "version": "a",
                    "previous": None,
                    "when": "2026-12-01T08:00:00+00:00",
                    "reason": "first model",
                },
            ]
        )
    )
    registry.root.joinpath("CURRENT").write_text("a\n")
    registry.promote("b", actor="ben")
    assert [(e.action, e.actor) for e in registry.history()] == [
        ("promote", ""),
        ("promote", "ben"),
    ]
    assert registry.restore_previous().version == "a"


def test_cli_promote_and_restore_leave_both_on_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _registry(tmp_path)
    root = str(registry.root)
    assert main(["models", "--registry", root, "promote", "a", "--actor", "ana"]) == 0
    assert main(["models", "--registry", root, "promote", "b", "--actor", "ben"]) == 0
    assert main(["models", "--registry", root, "restore", "--actor", "sam"]) == 0
    capsys.readouterr()
    assert main(["models", "--registry", root, "history"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 3
    assert "promote  b" in lines[1] and "by ben" in lines[1]
    assert "restore  a" in lines[2] and "(was b; by sam)" in lines[2]
