"""Someone with SQL access to the notebook (psql, sqlite3) changes the record behind bptwin's
back. Each test is one such tampering, on SQLite and on Postgres (``notebook_url`` runs both);
``bptwin audit verify`` must name it, and no permission may be granted by it.

The attacker here has the database, not the station's audit key or its data folder: the key
file and the anchor live outside the database (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from bptwin.eln.audit import _hash_view, entry_hash, jsonable
from bptwin.eln.audit_seal import AuditSeal, attach_seal, detach_seal, seal_from_files
from bptwin.eln.audit_verify import TrailReport
from bptwin.eln.errors import NotebookPermissionError
from bptwin.eln.pins import hash_pin
from bptwin.eln.services import NotebookService

SUPERVISOR, OPERATOR = "sue", "olga"
BATCH = 41


@dataclass
class Notebook:
    service: NotebookService
    seal: AuditSeal
    url: str

    def verify(self) -> TrailReport:
        return self.service.audit.verify_trail(self.seal)


@pytest.fixture
def notebook(notebook_url: str, tmp_path: Path) -> Iterator[Notebook]:
    """A sealed notebook with a supervisor, an operator, a batch, notes and alarm events."""
    seal = seal_from_files(tmp_path / "audit.key", tmp_path / "audit.anchor")
    attach_seal(notebook_url, seal)
    service = NotebookService.from_url(notebook_url)
    service.operators.create_operator("setup", SUPERVISOR, "supervisor", "4321")
    service.operators.create_operator(SUPERVISOR, OPERATOR, "operator", "1234")
    service.batches.create_batch(OPERATOR, BATCH, "B", strain="X-33", reactor_id="R1")
    service.notes.add_note(OPERATOR, BATCH, "Foam at 20 min, 0.2 mL antifoam added")
    service.notes.add_note(OPERATOR, BATCH, "Feed pump primed")
    for state in ("active", "acknowledged"):
        service.alarms.record_alarm_event(
            OPERATOR if state == "acknowledged" else None,
            reactor="R1",
            rule="ph/hi",
            priority="high",
            state=state,
            channel="ph",
            value=5.5,
            batch_number=BATCH,
        )
    before = service.audit.verify_trail(seal)
    assert before.ok, before.problems()
    yield Notebook(service, seal, notebook_url)
    service.engine.dispose()
    detach_seal(notebook_url)


@contextmanager
def psql(url: str, *, without_triggers: bool = False) -> Iterator[Connection]:
    """Plain SQL on the notebook database, as a person with a database client would write it.

    ``without_triggers``: as the database owner who also switches off the append-only
    triggers of ``audit_entry`` (only for this transaction on Postgres).
    """
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            if without_triggers:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SET LOCAL session_replication_role = replica"))
                else:
                    connection.execute(text("DROP TRIGGER IF EXISTS audit_entry_no_update"))
                    connection.execute(text("DROP TRIGGER IF EXISTS audit_entry_no_delete"))
            yield connection
    finally:
        engine.dispose()


def promote(connection: Connection, name: str) -> None:
    connection.execute(text("UPDATE operator SET role = 'supervisor' WHERE name = :n"), {"n": name})


def first_note_id(connection: Connection) -> int:
    return int(connection.execute(text("SELECT min(id) FROM note")).scalar_one())


def problems_of(report: TrailReport) -> str:
    return "\n".join(report.problems())


# ------------------------------------------------------------------ the data behind the chain


def test_a_note_rewritten_by_sql_is_named_by_table_row_and_column(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        note_id = first_note_id(sql)
        sql.execute(text("UPDATE note SET text = 'No foam seen' WHERE id = :id"), {"id": note_id})
    report = notebook.verify()
    assert not report.ok
    assert [(m.table, m.record_id, m.kind, m.columns) for m in report.mismatches] == [
        ("note", str(note_id), "changed", ("text",))
    ]
    assert f"note {note_id}: text differ" in problems_of(report)


def test_a_note_deleted_by_sql_is_named(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        note_id = first_note_id(sql)
        sql.execute(text("DELETE FROM note WHERE id = :id"), {"id": note_id})
    report = notebook.verify()
    assert [(m.table, m.record_id, m.kind) for m in report.mismatches] == [
        ("note", str(note_id), "deleted")
    ]
    assert "deleted outside the notebook" in problems_of(report)


def test_a_note_slipped_in_by_sql_is_named(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        batch_id = sql.execute(text("SELECT id FROM batch")).scalar_one()
        sql.execute(
            text(
                "INSERT INTO note (batch_id, author, text, created_at) "
                "VALUES (:batch, :author, 'Calibrated pH at 10 h', '2026-12-07 10:00:00')"
            ),
            {"batch": batch_id, "author": OPERATOR},
        )
        new_id = sql.execute(text("SELECT max(id) FROM note")).scalar_one()
    report = notebook.verify()
    assert [(m.table, m.record_id, m.kind) for m in report.mismatches] == [
        ("note", str(new_id), "unaudited")
    ]


def test_an_alarm_event_whose_state_was_changed_by_sql_is_named(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        event_id = sql.execute(text("SELECT min(id) FROM alarm_event")).scalar_one()
        sql.execute(
            text("UPDATE alarm_event SET state = 'cleared', value = 6.9 WHERE id = :id"),
            {"id": event_id},
        )
    report = notebook.verify()
    assert [(m.table, m.record_id, m.columns) for m in report.mismatches] == [
        ("alarm_event", str(event_id), ("state", "value"))
    ]


# ------------------------------------------------------------------ people


def test_an_operator_promoted_by_sql_is_named_and_gains_no_supervisor_right(
    notebook: Notebook,
) -> None:
    with psql(notebook.url) as sql:
        promote(sql, OPERATOR)
    report = notebook.verify()
    assert [(m.table, m.columns) for m in report.mismatches] == [("operator", ("role",))]
    operators = notebook.service.operators
    with pytest.raises(NotebookPermissionError, match="role different from the audit trail"):
        operators.create_operator(OPERATOR, "mallory", "supervisor", "9999")
    with pytest.raises(NotebookPermissionError, match="role different from the audit trail"):
        operators.set_operator_active(OPERATOR, SUPERVISOR, False)
    assert operators.get_operator("mallory") is None
    assert operators.get_operator(SUPERVISOR).active  # type: ignore[union-attr]


def test_a_supervisor_pin_replaced_by_sql_does_not_log_in(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        sql.execute(
            text("UPDATE operator SET pin_hash = :h WHERE name = :n"),
            {"h": hash_pin("0000"), "n": SUPERVISOR},
        )
    report = notebook.verify()
    assert [(m.table, m.columns) for m in report.mismatches] == [("operator", ("pin_hash",))]
    with pytest.raises(NotebookPermissionError, match="pin_hash different from the audit trail"):
        notebook.service.operators.authenticate(SUPERVISOR, "0000")


def test_an_operator_inserted_by_sql_is_named_and_cannot_act(notebook: Notebook) -> None:
    with psql(notebook.url) as sql:
        sql.execute(
            text(
                "INSERT INTO operator (name, display_name, role, pin_hash, active, created_at, "
                "failed_pins) VALUES ('mallory', 'M', 'supervisor', :h, :t, "
                "'2026-12-07 10:00:00', 0)"
            ),
            {"h": hash_pin("9999"), "t": True},
        )
    report = notebook.verify()
    assert [(m.table, m.kind) for m in report.mismatches] == [("operator", "unaudited")]
    with pytest.raises(NotebookPermissionError, match="not in the audit trail"):
        notebook.service.operators.authenticate("mallory", "9999")
    with pytest.raises(NotebookPermissionError, match="not in the audit trail"):
        notebook.service.operators.set_operator_active("mallory", OPERATOR, False)


def test_a_forged_audit_entry_promoting_an_operator_is_refused(notebook: Notebook) -> None:
    """The attacker also appends an audit entry that says the operator became a supervisor,
    with a correct hash chain: without the key its seal cannot be right."""
    with psql(notebook.url) as sql:
        promote(sql, OPERATOR)
        append_forged_entry(sql, "operator", OPERATOR)
    with pytest.raises(NotebookPermissionError, match="not sealed with the station's key"):
        notebook.service.operators.set_operator_active(OPERATOR, SUPERVISOR, False)
    report = notebook.verify()
    assert report.chain_break is not None
    assert "seal does not match" in report.chain_break.reason


# ------------------------------------------------------------------ the chain itself


def test_a_cut_tail_with_the_head_moved_back_is_caught_by_the_anchor(notebook: Notebook) -> None:
    with psql(notebook.url, without_triggers=True) as sql:
        last = sql.execute(text("SELECT max(id) FROM audit_entry")).scalar_one()
        sql.execute(text("DELETE FROM audit_entry WHERE id > :keep"), {"keep": last - 2})
        keep_hash = sql.execute(
            text("SELECT hash FROM audit_entry WHERE id = :id"), {"id": last - 2}
        ).scalar_one()
        sql.execute(
            text("UPDATE audit_head SET last_id = :id, last_hash = :h WHERE id = 1"),
            {"id": last - 2, "h": keep_hash},
        )
        # ... and the rows those entries recorded, so the data agrees with the shorter chain.
        sql.execute(text("DELETE FROM alarm_event"))
    report = notebook.verify()
    assert report.chain_break is None  # the shortened chain holds on its own
    assert report.anchor_problem is not None and "cut off the end" in report.anchor_problem
    assert not report.ok


def test_a_chain_recomputed_from_scratch_is_caught_by_its_seals(notebook: Notebook) -> None:
    """Rewrite a note in the data and in its audit entries, then recompute every hash (the
    algorithm is public) and keep the old seals."""
    with psql(notebook.url, without_triggers=True) as sql:
        note_id = first_note_id(sql)
        sql.execute(text("UPDATE note SET text = 'No foam seen' WHERE id = :id"), {"id": note_id})
        recompute_chain(sql, rewrite_note=(note_id, "No foam seen"), drop_seals=False)
    report = notebook.verify()
    assert report.mismatches == []  # data and chain agree again...
    assert report.chain_break is not None  # ...but not with the key
    assert "seal does not match" in report.chain_break.reason


def test_a_chain_recomputed_without_any_seal_is_caught_by_the_anchor(notebook: Notebook) -> None:
    with psql(notebook.url, without_triggers=True) as sql:
        note_id = first_note_id(sql)
        sql.execute(text("UPDATE note SET text = 'No foam seen' WHERE id = :id"), {"id": note_id})
        recompute_chain(sql, rewrite_note=(note_id, "No foam seen"), drop_seals=True)
    report = notebook.verify()
    assert report.mismatches == [] and report.chain_break is None
    assert report.anchor_problem is not None and "rewritten" in report.anchor_problem


def test_the_command_line_names_every_problem_and_fails(
    notebook: Notebook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptwin.tui.commands.audit import handle_verify
    from bptwin.tui.settings import Settings

    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.notebook.url = notebook.url
    assert handle_verify(None, settings) == 0  # type: ignore[arg-type]
    assert "audit chain OK" in capsys.readouterr().out
    with psql(notebook.url) as sql:
        sql.execute(text("UPDATE note SET text = '\x1b[2JAll fine' WHERE id = :id"), {"id": 1})
        promote(sql, OPERATOR)
    assert handle_verify(None, settings) == 1  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "row mismatch: note 1: text differ" in out
    assert "row mismatch: operator 2: role differ" in out
    assert "\x1b" not in out


# ------------------------------------------------------------------ the attacker's tools


def append_forged_entry(sql: Connection, table: str, name: str) -> None:
    """Append an entry recording the operator's current row, chained correctly, sealed with a
    guessed key (the attacker has the database, not the key file)."""
    head_id, head_hash = sql.execute(text("SELECT last_id, last_hash FROM audit_head")).one()
    row = sql.execute(text(f"SELECT * FROM {table} WHERE name = :n"), {"n": name}).mappings().one()
    after = jsonable(dict(row))
    after["pin_hash"] = "redacted:" + "0" * 16
    entry = {
        "id": head_id + 1,
        "at": datetime.now(timezone.utc),
        "actor": SUPERVISOR,
        "action": "update",
        "table_name": table,
        "record_id": str(row["id"]),
        "before": None,
        "after": after,
    }
    new_hash = entry_hash(head_hash, _hash_view(entry))
    insert_entry(sql, entry, head_hash, new_hash, seal="f" * 64)
    sql.execute(
        text("UPDATE audit_head SET last_id = :id, last_hash = :h WHERE id = 1"),
        {"id": entry["id"], "h": new_hash},
    )


def recompute_chain(sql: Connection, *, rewrite_note: tuple[int, str], drop_seals: bool) -> None:
    """Rewrite the note's text in its audit entries and recompute every hash from genesis."""
    import json

    note_id, new_text = rewrite_note
    rows = [dict(r) for r in sql.execute(text("SELECT * FROM audit_entry ORDER BY id")).mappings()]
    sql.execute(text("DELETE FROM audit_entry"))
    prev = "0" * 64
    for row in rows:
        for side in ("before", "after"):
            image: Any = row[side]
            if isinstance(image, str):
                image = json.loads(image)
            if image and row["table_name"] == "note" and row["record_id"] == str(note_id):
                image = {**image, "text": new_text}
            row[side] = image
        row["action"] = jsonable(row["action"])
        if isinstance(row["at"], str):  # SQLite hands back its text
            row["at"] = datetime.fromisoformat(row["at"]).replace(tzinfo=timezone.utc)
        new_hash = entry_hash(prev, _hash_view(row))
        insert_entry(sql, row, prev, new_hash, seal=None if drop_seals else row["seal"])
        prev = new_hash
    sql.execute(
        text("UPDATE audit_head SET last_id = :id, last_hash = :h WHERE id = 1"),
        {"id": rows[-1]["id"], "h": prev},
    )


def insert_entry(
    sql: Connection, entry: dict[str, Any], prev_hash: str, new_hash: str, seal: str | None
) -> None:
    import json

    sql.execute(
        text(
            "INSERT INTO audit_entry (id, at, actor, action, table_name, record_id, before, "
            "after, prev_hash, hash, seal) VALUES (:id, :at, :actor, :action, :table_name, "
            ":record_id, :before, :after, :prev_hash, :hash, :seal)"
        ),
        {
            **{key: entry[key] for key in ("id", "actor", "action", "table_name", "record_id")},
            "at": entry["at"] if sql.dialect.name == "postgresql" else _naive(entry["at"]),
            "before": None if entry["before"] is None else json.dumps(entry["before"]),
            "after": None if entry["after"] is None else json.dumps(entry["after"]),
            "prev_hash": prev_hash,
            "hash": new_hash,
            "seal": seal,
        },
    )


def _naive(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
