"""Electronic signatures: time to sign (PIN check at production scrypt cost, content hash,
audit) and the rate ``bptwin audit verify`` checks signatures at, on SQLite."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptwin.database.migrate import upgrade
from bptwin.database.relational import make_engine
from bptwin.eln.services import NotebookService

SIGNATURES = 40
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def bench_signatures_sqlite() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_signatures_") as folder:
        url = f"sqlite:///{Path(folder) / 'notebook.sqlite'}"
        upgrade(url)
        service = NotebookService(make_engine(url), clock=lambda: T0 + timedelta(hours=30))
        service.operators.create_operator("bench", "sam", "supervisor", "4321")
        service.batches.create_batch("sam", 1, "B")
        service.batches.start_batch("sam", 1, inoculated_at=T0, override_reason="benchmark")
        changes = [
            service.process_changes.plan_process_change(
                "sam",
                1,
                parameter="stirrer_rpm",
                old_value=str(800 + index),
                new_value=str(801 + index),
                planned_at=T0 + timedelta(minutes=index),
            )
            for index in range(SIGNATURES)
        ]
        started = time.perf_counter()
        for change in changes:
            service.process_changes.approve_process_change("sam", change.id or 0, pin="4321")
        sign_ms = (time.perf_counter() - started) / SIGNATURES * 1000.0
        started = time.perf_counter()
        problems = service.signatures.verify_signatures()
        verify_rate = SIGNATURES / (time.perf_counter() - started)
        service.engine.dispose()
    return [
        {
            "benchmark": "signatures SQLite: sign a process change",
            "value": sign_ms,
            "unit": "ms",
            "note": "PIN check (scrypt, production cost) + content hash + audited write",
        },
        {
            "benchmark": "signatures SQLite: audit verify",
            "value": verify_rate,
            "unit": "signatures/s",
            "note": f"{SIGNATURES} signatures, {len(problems)} problems",
        },
    ]


if __name__ == "__main__":
    for row in bench_signatures_sqlite():
        print(f"{row['benchmark']:<48} {row['value']:10.1f} {row['unit']:<14} {row['note']}")
