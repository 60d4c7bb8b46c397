"""Notebook write speed with the audit trail: samples/s on SQLite (and Postgres if reachable).

Three numbers per database, best read as ratios:
* plain insert: one committed Core INSERT per sample, no ORM, no audit (the floor);
* audited ORM insert: one committed ORM insert per sample, audit entry in the same transaction;
* service add_sample: the full path a screen takes (validation, operator check, audit).
Plus the audit chain verification rate.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bptwin.database.migrate import upgrade
from bptwin.database.relational import make_engine, session_scope
from bptwin.eln.audit import verify_chain
from bptwin.eln.audit_seal import attach_seal, detach_seal, seal_from_files
from bptwin.eln.models import Sample
from bptwin.eln.services import NotebookService

SAMPLES = 400
ADMIN_URL = os.environ.get(
    "BPTWIN_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@contextmanager
def _sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench_notebook_") as folder:
        yield f"sqlite:///{Path(folder) / 'notebook.sqlite'}"


@contextmanager
def _postgres_url() -> Iterator[str | None]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bptwin_bench_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # no server: the Postgres rows are simply left out
        admin.dispose()
        yield None
        return
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _prepare(url: str) -> tuple[Engine, NotebookService, int]:
    upgrade(url)
    engine = make_engine(url)
    service = NotebookService(engine, clock=lambda: T0 + timedelta(hours=30))
    service.operators.create_operator("bench", "bench", "supervisor", "0000")
    service.batches.create_batch("bench", 1, "B")
    service.batches.start_batch("bench", 1, inoculated_at=T0, override_reason="benchmark")
    return engine, service, service.batches.get_batch(1).id or 0


def _rate(count: int, action: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for index in range(count):
        action(index)
    return count / (time.perf_counter() - started)


def _measure(label: str, url: str) -> list[dict]:
    engine, service, batch_id = _prepare(url)
    sample_table = Sample.__table__  # type: ignore[attr-defined]

    def plain(index: int) -> None:
        with engine.begin() as connection:
            connection.execute(
                insert(sample_table).values(
                    batch_id=batch_id,
                    taken_at=T0,
                    entered_at=T0,
                    od_raw=0.5,
                    dilution=10.0,
                    od600=5.0,
                    microscopy_text="",
                    entered_by="bench",
                )
            )

    def audited(index: int) -> None:
        with session_scope(engine, "bench") as session:
            session.add(
                Sample(batch_id=batch_id, taken_at=T0, od_raw=0.5, od600=5.0, entered_by="bench")
            )

    def via_service(index: int) -> None:
        service.samples.add_sample(
            "bench", 1, taken_at=T0 + timedelta(minutes=index % 600), od_raw=0.5, dilution=10
        )

    plain_rate = _rate(SAMPLES, plain)
    audited_rate = _rate(SAMPLES, audited)
    service_rate = _rate(SAMPLES, via_service)
    # The same path with the station's audit key attached: each entry sealed, the anchor file
    # moved (and fsynced) after each commit.
    with tempfile.TemporaryDirectory(prefix="bench_seal_") as folder:
        seal = seal_from_files(Path(folder) / "audit.key", Path(folder) / "audit.anchor")
        attach_seal(url, seal)
        try:
            sealed_rate = _rate(SAMPLES, lambda index: via_service(index + SAMPLES))
            started = time.perf_counter()
            report = service.audit.verify_trail(seal)
            full_seconds = time.perf_counter() - started
        finally:
            detach_seal(url)
    with Session(engine) as session:
        entries = session.execute(text("SELECT count(*) FROM audit_entry")).scalar_one()
        started = time.perf_counter()
        broken = verify_chain(session)
        verify_rate = entries / (time.perf_counter() - started)
    engine.dispose()
    note = f"{SAMPLES} samples, one transaction each"
    return [
        {
            "benchmark": f"notebook {label}: plain insert (no audit)",
            "value": plain_rate,
            "unit": "rows/s",
            "note": note,
        },
        {
            "benchmark": f"notebook {label}: audited ORM insert",
            "value": audited_rate,
            "unit": "rows/s",
            "note": f"{audited_rate / plain_rate:.0%} of plain insert",
        },
        {
            "benchmark": f"notebook {label}: service add_sample",
            "value": service_rate,
            "unit": "samples/s",
            "note": "validation + operator check + audit",
        },
        {
            "benchmark": f"notebook {label}: service add_sample, sealed",
            "value": sealed_rate,
            "unit": "samples/s",
            "note": f"audit key and anchor file; {sealed_rate / service_rate:.0%} of unsealed",
        },
        {
            "benchmark": f"notebook {label}: full audit verify",
            "value": report.entries / full_seconds,
            "unit": "entries/s",
            "note": f"chain, seals, anchor, every audited row ({len(report.mismatches)} "
            "plain inserts named as unaudited)",
        },
        {
            "benchmark": f"notebook {label}: audit chain verify",
            "value": verify_rate,
            "unit": "entries/s",
            "note": f"{entries} entries, {'intact' if broken is None else 'BROKEN'}",
        },
    ]


def bench_notebook_sqlite() -> list[dict]:
    with _sqlite_url() as url:
        return _measure("SQLite", url)


def bench_notebook_postgres() -> list[dict]:
    with _postgres_url() as url:
        if url is None:
            return [
                {
                    "benchmark": "notebook Postgres",
                    "value": "skipped",
                    "unit": "",
                    "note": "skipped: no Postgres server reachable",
                }
            ]
        return _measure("Postgres", url)


if __name__ == "__main__":
    for row in bench_notebook_sqlite() + bench_notebook_postgres():
        value = row["value"]
        shown = f"{value:10.1f}" if isinstance(value, float) else f"{value:>10}"
        print(f"{row['benchmark']:<48} {shown} {row['unit']:<10} {row['note']}")
