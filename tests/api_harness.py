"""A notebook with one of everything the API lists, a store with an hour of pH, and the API.

Used by tests/test_api*.py and tests/adversarial/test_api_threats.py. The notebook is the real
Postgres one (``postgres_notebook_url``), written only through the notebook's services.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bptwin.database.reading import Quality, Reading
from bptwin.database.relational import make_engine
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.acceptance_service import record_acceptance_decision
from bptwin.eln.api_tokens import ApiTokenService
from bptwin.eln.services import NotebookService
from bptwin.tui.api.app import create_app
from bptwin.tui.api.config import ApiSettings
from bptwin.tui.api.context import ApiContext
from bptwin.twin.registry import SHIPPED_MODELS_DIR, Registry

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
RANGE_START = T0.timestamp()
RANGE_S = 3600  # one hour of pH at 1 Hz
SUPERVISOR, PIN = "sam", "4321"
BATCH = 7


@dataclass
class ApiWorld:
    notebook: NotebookService
    store: EmbeddedStore
    context: ApiContext
    client: TestClient
    token: str
    tokens: ApiTokenService

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def fill_notebook(notebook: NotebookService) -> None:
    """Operators, one ended batch with a sample, a deviation, a calibration, an alarm event
    and a supervisor's decision: everything through the notebook's services."""
    notebook.clock = lambda: T0 + timedelta(hours=30)
    notebook.operators.create_operator("setup", SUPERVISOR, "supervisor", PIN, "Sam Super")
    notebook.operators.create_operator(SUPERVISOR, "olga", "operator", "1234", "Olga Op")
    notebook.batches.create_batch(SUPERVISOR, BATCH, "B", strain="X-33", reactor_id="R1")
    notebook.calibrations.record_calibration(
        "olga",
        channel="ph",
        kind="two_point",
        measured={"e7_mv": 1.5, "e4_mv": 171.0},
        results={"slope_pct": 98.7},
        passed=True,
        batch_number=BATCH,
        performed_at=T0 - timedelta(hours=1),
    )
    notebook.batches.start_batch(
        SUPERVISOR, BATCH, inoculated_at=T0, override_reason="test batch, no inoculum form"
    )
    notebook.samples.add_sample(
        "olga", BATCH, taken_at=T0 + timedelta(hours=2), od_raw=0.42, dilution=10, sop_timepoint_h=2
    )
    notebook.samples.add_sample(  # weighed, no photometer reading
        "olga", BATCH, taken_at=T0 + timedelta(hours=4), dcw_g_per_l=2.6, sop_timepoint_h=4
    )
    notebook.deviations.log_deviation(
        "olga", BATCH, level=1, category="sampling", title='=HYPERLINK("evil") late sample'
    )
    notebook.alarms.record_alarm_event(
        None,
        reactor="R1",
        rule="do_low",
        priority="high",
        state="raised",
        channel="do",
        value=12.5,
        message="DO below 20 %",
        batch_number=BATCH,
        occurred_at=T0 + timedelta(hours=3),
    )
    notebook.batches.end_batch("olga", BATCH, ended_at=T0 + timedelta(hours=22))
    record_acceptance_decision(
        notebook, SUPERVISOR, PIN, BATCH, decision="reject", reason="filters mislabelled"
    )


def fill_store(store: EmbeddedStore) -> None:
    """An hour of pH at 1 Hz on R1; every 100th reading bad (NaN), the unit a formula."""
    readings = [
        Reading(
            RANGE_START + second,
            "R1",
            "ph",
            math.nan if second % 100 == 99 else 6.5 + 0.001 * second,
            "=cmd|' /C calc'!A0",
            Quality.BAD if second % 100 == 99 else Quality.GOOD,
        )
        for second in range(RANGE_S)
    ]
    store.write(readings)


def make_world(notebook_url: str, tmp_path: Path, **limits: int) -> Iterator[ApiWorld]:
    notebook = NotebookService(make_engine(notebook_url))
    fill_notebook(notebook)
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    fill_store(store)
    tokens = ApiTokenService(notebook.unit)
    token = tokens.create_token(SUPERVISOR, PIN, "LIMS import").secret
    context = ApiContext(
        notebook=notebook,
        store=store,
        reactors=("R1", "R2"),
        model_registries=(("shipped", Registry(SHIPPED_MODELS_DIR)),),
        limits=ApiSettings(**limits),
    )
    with TestClient(create_app(context)) as client:
        yield ApiWorld(notebook, store, context, client, token, tokens)
    store.close()
    notebook.engine.dispose()


def postgres_notebook(request: pytest.FixtureRequest) -> str:
    """The migrated Postgres notebook of tests/fixtures/postgres.py, emptied for this test."""
    from tests.fixtures.postgres import _empty_postgres_notebook

    url: str = request.getfixturevalue("_migrated_postgres_notebook")
    _empty_postgres_notebook(url)
    return url


def world_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    """Body of each test module's ``world`` fixture (pages of at most 5000 readings)."""
    yield from make_world(postgres_notebook(request), tmp_path, default_limit=1000, max_limit=5000)


def range_query(
    start: float = RANGE_START, end: float = RANGE_START + RANGE_S, **extra: object
) -> str:
    params = {"start": _iso(start), "end": _iso(end), **extra}
    return "&".join(f"{key}={value}" for key, value in params.items())


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


READINGS = "/v1/reactors/R1/channels/ph/readings"
