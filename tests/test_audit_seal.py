"""The audit key file and the anchor (eln.audit_seal), and the settings that name them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bptwin.eln.audit_seal import Anchor, AuditKeyError, load_or_create_key, seal_from_files
from bptwin.tui.settings import Settings, SettingsError


def test_the_key_is_created_on_first_use_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key  # the same key every time after


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_others_can_read_is_refused_naming_the_file_and_the_fix(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "audit.key"
    path.write_text("ab" * 32)
    os.chmod(path, mode)
    with pytest.raises(AuditKeyError, match=r"notebook.audit_key_file: .*chmod 600"):
        load_or_create_key(path)


@pytest.mark.parametrize("content", ["not hex", "abcd"])
def test_a_key_that_is_not_a_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "audit.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(AuditKeyError, match=r"notebook\.audit_key_file"):
        load_or_create_key(path)


def test_the_anchor_moves_forward_only_and_a_forged_one_is_named(tmp_path: Path) -> None:
    seal = seal_from_files(tmp_path / "audit.key", tmp_path / "audit.anchor")
    assert seal.read_anchor() is None
    seal.advance_anchor(Anchor(7, "a" * 64))
    seal.advance_anchor(Anchor(5, "b" * 64))  # an older commit finishing late
    assert seal.read_anchor() == Anchor(7, "a" * 64)
    assert stat.S_IMODE((tmp_path / "audit.anchor").stat().st_mode) == 0o600
    forged = json.loads((tmp_path / "audit.anchor").read_text())
    forged["last_id"] = 3
    (tmp_path / "audit.anchor").write_text(json.dumps(forged))
    with pytest.raises(AuditKeyError, match="not sealed with this station's audit key"):
        seal.read_anchor()


def test_settings_name_a_bad_key_file_as_a_settings_error(tmp_path: Path) -> None:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.notebook.audit_key_file = tmp_path / "shared.key"
    (tmp_path / "shared.key").write_text("ab" * 32)
    (tmp_path / "shared.key").chmod(0o666)
    with pytest.raises(SettingsError, match=r"shared\.key"):
        settings.notebook_url()
