"""``bptwin batch``: end, abort, closure, signed close and amend, media, process changes,
deviation review; and ``bptwin audit verify`` over the signatures, on SQLite and Postgres."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import pytest

from bptwin.database.relational import make_engine
from bptwin.eln.models import BatchStatus, OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.cli import main

NOW = datetime.now(timezone.utc).replace(microsecond=0)


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def notebook(notebook_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> NotebookService:
    """Batch 3 running since 20 h ago with 3 samples; ana operates, sam supervises."""
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPTWIN_NOTEBOOK__URL", notebook_url)
    monkeypatch.setenv("BPTWIN_STATION__OPERATOR", "ana")
    service = NotebookService(make_engine(notebook_url))
    service.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321", "Sam Sup")
    service.operators.create_operator("sam", "ana", OperatorRole.OPERATOR, "1234", "Ana Op")
    service.batches.create_batch("ana", 3, "B")
    service.preparation.record_inoculum(
        "ana", 3, od600_raw=3.0, volume_ml=100, microscopy_clean=True
    )
    start = NOW - timedelta(hours=20)
    service.batches.start_batch("sam", 3, inoculated_at=start, override_reason="CLI test")
    for hours in (0, 2, 4):
        service.samples.add_sample(
            "ana", 3, taken_at=start + timedelta(hours=hours), od_raw=0.4, sop_timepoint_h=hours
        )
    yield service
    service.engine.dispose()


def pin_on_stdin(monkeypatch: pytest.MonkeyPatch, pin: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(pin + "\n"))


def test_an_operator_ends_records_the_closure_and_a_supervisor_signs_it(
    notebook: NotebookService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "list"]) == 0
    assert "running" in capsys.readouterr().out
    assert main(["batch", "end", "3"]) == 0
    assert "batch 3 ended" in capsys.readouterr().out
    assert notebook.batches.get_batch(3).ended_by == "ana"

    closure = ["batch", "closure", "3", "--outcome", "complete", "--final-od600", "38.2"]
    assert main([*closure, "--final-dcw", "19.5", "--harvest-volume", "1400"]) == 1
    assert "3 of the 8 SOP samples" in capsys.readouterr().err
    assert main([*closure, "--final-dcw", "mg", "--missing-samples-reason", "x"]) == 1
    assert "final DCW 'mg' is not a number" in capsys.readouterr().err
    assert (
        main([*closure, "--harvest-volume", "1400", "--missing-samples-reason", "pump down"]) == 0
    )
    capsys.readouterr()

    pin_on_stdin(monkeypatch, "1234")
    assert main(["batch", "close", "3", "--signer", "ana"]) == 1
    assert "supervisor" in capsys.readouterr().err
    pin_on_stdin(monkeypatch, "0000")
    assert main(["batch", "close", "3", "--signer", "sam"]) == 1
    assert "wrong PIN" in capsys.readouterr().err
    pin_on_stdin(monkeypatch, "4321")
    assert main(["batch", "close", "3", "--signer", "sam"]) == 0
    out = capsys.readouterr().out
    assert "signed: Sam Sup (sam, supervisor) closed on" in out and "UTC" in out and "local" in out

    assert main(["batch", "list"]) == 0
    assert "closed by sam" in capsys.readouterr().out
    pin_on_stdin(monkeypatch, "4321")
    amend = ["batch", "amend", "3", "--signer", "sam", "--reason", "re-read", "--final-od600"]
    assert main([*amend, "40.1"]) == 0
    capsys.readouterr()
    assert main(["batch", "show", "3"]) == 0
    shown = capsys.readouterr().out
    assert "final OD600 40.1" in shown and "harvest 1400 mL" in shown
    assert shown.count("closed on") == 2 and "superseded" in shown
    assert main(["audit", "verify"]) == 0
    assert "signatures OK: 2 verified" in capsys.readouterr().out


def test_abort_needs_its_reason(
    notebook: NotebookService, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["batch", "abort", "3"])
    assert "--reason" in capsys.readouterr().err
    assert main(["batch", "abort", "3", "--reason", " "]) == 1
    assert "say why the batch is aborted" in capsys.readouterr().err
    assert main(["batch", "abort", "3", "--reason", "foam-over"]) == 0
    assert notebook.batches.get_batch(3).status == BatchStatus.ABORTED


def test_media_process_changes_and_a_signed_deviation_review(
    notebook: NotebookService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    media = ["batch", "media", "3", "--autoclave", "AC-12", "--sterile", "y"]
    assert main([*media, "--recipe", "glycerol=forty"]) == 1
    assert "amount of glycerol 'forty' is not a number" in capsys.readouterr().err
    assert main([*media, "--recipe", "glycerol=40, basal_salts=26.7"]) == 0
    capsys.readouterr()
    assert main(["batch", "media", "3"]) == 0
    assert "glycerol=40, basal_salts=26.7 · autoclave AC-12 · sterile" in capsys.readouterr().out

    plan = ["batch", "plan-change", "3", "--parameter", "stirrer_rpm", "--old", "800"]
    assert main([*plan, "--new", "950", "--reason", "DO low"]) == 0
    [change] = notebook.process_changes.list_process_changes(3)
    capsys.readouterr()
    pin_on_stdin(monkeypatch, "4321")
    assert main(["batch", "approve-change", str(change.id), "--signer", "sam"]) == 0
    assert "approved on" in capsys.readouterr().out
    assert main(["batch", "changes", "3"]) == 0
    assert "800 → 950 · approved by sam" in capsys.readouterr().out

    deviation = notebook.deviations.log_deviation(
        "ana", 3, level=1, category="sampling", title="late sample"
    )
    pin_on_stdin(monkeypatch, "1234")
    review = ["batch", "review-deviation", str(deviation.id), "--signer", "ana"]
    assert main([*review, "--root-cause", "shift change"]) == 0
    assert "Ana Op (ana, operator) reviewed on" in capsys.readouterr().out
