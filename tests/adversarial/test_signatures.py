"""Signed notebook records changed behind bptwin's back are named by ``bptwin audit verify``
(docs/security.md, docs/signatures.md), on SQLite and the real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from bptwin.database.relational import make_engine
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.cli import main

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def closed(
    notebook_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[NotebookService]:
    """Batch 9 ended and closed: its closure signed by supervisor sam (final OD600 38.2)."""
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPTWIN_NOTEBOOK__URL", notebook_url)
    notebook = NotebookService(make_engine(notebook_url))
    notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321", "Sam S")
    notebook.operators.create_operator("sam", "ana", OperatorRole.OPERATOR, "1234", "Ana A")
    notebook.batches.create_batch("ana", 9, "B")
    start = datetime.now(timezone.utc) - timedelta(hours=20)
    notebook.batches.start_batch("sam", 9, inoculated_at=start, override_reason="threat test")
    notebook.batches.end_batch("ana", 9)
    notebook.batches.close_batch(
        "ana", 9, outcome="complete", final_od600=38.2, missing_samples_reason="threat test"
    )
    notebook.batches.sign_off_batch("sam", 9, pin="4321")
    yield notebook
    notebook.engine.dispose()


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify"])
    return code, capsys.readouterr().out


def test_a_signed_closure_changed_by_sql_is_named_by_audit_verify(
    closed: NotebookService, capsys: pytest.CaptureFixture[str]
) -> None:
    """The final OD600 of a signed closure rewritten by SQL (the notebook's own writes refuse):
    the row no longer matches its audit entry, and the signature no longer matches its content."""
    code, out = verify(capsys)
    assert code == 0 and "signatures OK: 1 verified" in out
    with closed.engine.begin() as connection:
        connection.execute(text("UPDATE batch_closure SET final_od600 = 52.0"))
    code, out = verify(capsys)
    assert code == 1
    assert "row mismatch: batch_closure 1: final_od600 differ(s) from audit entry" in out
    assert (
        "signature BROKEN: signature 1 on batch_closure 1: the record was changed after "
        "signing (final_od600) without a new signature" in out
    )


def test_a_forged_manifestation_is_named_by_audit_verify(
    closed: NotebookService, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed name of a signature rewritten by SQL: it differs from the audited row."""
    with closed.engine.begin() as connection:
        connection.execute(text("UPDATE signature SET printed_name = 'Dr Someone Else'"))
    code, out = verify(capsys)
    assert code == 1 and "differs from its audited image" in out


def test_a_signature_deleted_by_sql_is_named_by_audit_verify(
    closed: NotebookService, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting the signature would make the closure editable again: the trail still has it."""
    with closed.engine.begin() as connection:
        connection.execute(text("DELETE FROM signature"))
    code, out = verify(capsys)
    assert code == 1 and "the signature (closed by sam) was removed" in out


def test_a_signature_by_a_demoted_signer_is_named_by_audit_verify(
    closed: NotebookService, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signature claiming a supervisor whose role (in the trail) was operator when signing."""
    with closed.engine.begin() as connection:
        connection.execute(text("UPDATE signature SET signer = 'ana'"))
    code, out = verify(capsys)
    assert code == 1 and "was not a supervisor when signing" in out
