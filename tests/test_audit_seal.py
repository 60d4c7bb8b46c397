"""The audit key file and the anchor (eln.audit_seal), and the settings that name them."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from bptwin.database.migrate import upgrade
from bptwin.database.relational import make_engine
from bptwin.eln.audit import GENESIS_HASH, entry_hash
from bptwin.eln.audit import _hash_view as hash_view
from bptwin.eln.audit import _redact as redact
from bptwin.eln.audit_seal import (
    Anchor,
    AuditKeyError,
    attach_seal,
    detach_seal,
    load_or_create_key,
    seal_from_files,
)
from bptwin.eln.services import NotebookService
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


def test_a_notebook_audited_before_migration_0005_verifies_and_its_operators_log_in(
    tmp_path: Path,
) -> None:
    """Entries written before the key and the lockout columns existed: no seal, after-images
    without ``failed_pins``/``locked_until``. After the upgrade they verify, then get sealed."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url, "0004")
    old = make_engine(url)
    pin_hash = "scrypt$16384$8$1$00$00"
    # What bptwin at schema 0004 wrote: the operator row and its (unsealed) audit entry.
    after = redact(
        {
            "id": 1,
            "name": "sue",
            "display_name": "Sue",
            "role": "supervisor",
            "pin_hash": pin_hash,
            "active": True,
            "created_at": "2026-11-01T08:00:00+00:00",
        }
    )
    entry = {
        "id": 1,
        "at": datetime(2026, 11, 1, 8, tzinfo=timezone.utc),
        "actor": "setup",
        "action": "insert",
        "table_name": "operator",
        "record_id": "1",
        "before": None,
        "after": after,
    }
    digest = entry_hash(GENESIS_HASH, hash_view(entry))
    with old.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO operator (id, name, display_name, role, pin_hash, active, created_at)"
                " VALUES (1, 'sue', 'Sue', 'supervisor', :h, 1, '2026-11-01 08:00:00')"
            ),
            {"h": pin_hash},
        )
        connection.execute(
            text(
                "INSERT INTO audit_entry (id, at, actor, action, table_name, record_id, before, "
                "after, prev_hash, hash) VALUES (1, '2026-11-01 08:00:00.000000', 'setup', "
                "'insert', 'operator', '1', NULL, :after, :prev, :hash)"
            ),
            {"after": json.dumps(after), "prev": GENESIS_HASH, "hash": digest},
        )
        connection.execute(
            text("UPDATE audit_head SET last_id = 1, last_hash = :h WHERE id = 1"), {"h": digest}
        )
    old.dispose()
    upgrade(url)
    seal = seal_from_files(tmp_path / "audit.key", tmp_path / "audit.anchor")
    attach_seal(url, seal)
    try:
        notebook = NotebookService.from_url(url)
        report = notebook.audit.verify_trail()
        assert report.ok, report.problems()
        assert (report.sealed, report.unsealed) == (0, 1)
        # The old supervisor still acts (their row matches its pre-0005 image), now sealed.
        notebook.operators.create_operator("sue", "olga", "operator", "1234")
        report = notebook.audit.verify_trail()
        assert report.ok, report.problems()
        assert (report.sealed, report.unsealed) == (1, 1)
        notebook.engine.dispose()
    finally:
        detach_seal(url)
