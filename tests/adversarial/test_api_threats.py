"""Threats to the read-only HTTP API (docs/security.md, "The HTTP API"), on the real Postgres.

Each test is named for what it stops: reading without a valid token, forging or guessing one,
minting one without a supervisor, reaching data through odd names, exhausting the server with
one request, poisoning a spreadsheet through CSV, or writing through any route.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.eln.api_tokens import token_hash
from bptwin.eln.errors import NotebookPermissionError, NotebookValidationError
from tests.api_harness import (
    PIN,
    RANGE_START,
    READINGS,
    SUPERVISOR,
    ApiWorld,
    range_query,
    world_fixture,
)
from tests.test_metrics_endpoint import parse_exposition

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("cheap_pin_hashing")]


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    yield from world_fixture(request, tmp_path)


def refused_count(world: ApiWorld, reason: str, parameter: str = "") -> float:
    text = world.client.get("/metrics", headers=world.auth()).text
    key = f'bptwin_api_refused_total{{parameter="{parameter}",reason="{reason}"}}'
    return parse_exposition(text).get(key, 0.0)


def test_the_stored_hash_of_a_token_does_not_open_the_api(world: ApiWorld) -> None:
    """Someone who reads the notebook database (or its audit trail) learns only hashes."""
    stored = world.notebook.audit.audit_trail(table_name="api_token")[0].after["token_hash"]
    assert stored == token_hash(world.token)
    for forged in (stored, f"bptwin_{stored}", world.token.upper()):
        response = world.client.get("/v1/batches", headers=world.auth(forged))
        assert response.status_code == 401 and "X-33" not in response.text


def test_guessed_truncated_or_oversized_tokens_are_refused_and_counted(world: ApiWorld) -> None:
    near_miss = world.token[:-1] + ("A" if world.token[-1] != "A" else "B")
    shown_prefix = world.tokens.list_tokens(SUPERVISOR, PIN)[0].shown_prefix
    attempts = [near_miss, world.token[:-5], shown_prefix, "bptwin_", "bptwin_" + "x" * 8000]
    for attempt in attempts:
        response = world.client.get("/v1/batches", headers=world.auth(attempt))
        assert response.status_code == 401 and response.json()["error"], attempt[:20]
    for header in ({"Authorization": "Bearer"}, {"Authorization": world.token}, {}):
        assert world.client.get("/v1/batches", headers=header).status_code == 401
    assert refused_count(world, "unauthenticated") == len(attempts) + 3


def test_only_a_supervisor_with_the_right_pin_can_mint_or_revoke_a_token(world: ApiWorld) -> None:
    before = len(world.notebook.audit.audit_trail(table_name="api_token"))
    with pytest.raises(NotebookPermissionError, match="unknown supervisor or wrong PIN"):
        world.tokens.create_token("olga", "1234", "an operator's own token")
    with pytest.raises(NotebookPermissionError, match="unknown supervisor or wrong PIN"):
        world.tokens.create_token(SUPERVISOR, "0000", "a guessed PIN")
    with pytest.raises(NotebookPermissionError):
        world.tokens.revoke_token("olga", "1234", 1)
    with pytest.raises(NotebookValidationError, match="label"):
        world.tokens.create_token(SUPERVISOR, PIN, "\x1b[2J")
    world.notebook.operators.set_operator_active(SUPERVISOR, SUPERVISOR, False)
    with pytest.raises(NotebookPermissionError):
        world.tokens.create_token(SUPERVISOR, PIN, "a deactivated supervisor")
    assert len(world.notebook.audit.audit_trail(table_name="api_token")) == before


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/reactors/R1'%20OR%20'1'='1/channels/ph/readings?{range_query()}",
        f"/v1/reactors/R1/channels/ph;DROP%20TABLE%20points/readings?{range_query()}",
        f"/v1/reactors/..%2F..%2Fetc/channels/passwd/readings?{range_query()}",
        f"/v1/reactors/{'R' * 5000}/channels/ph/readings?{range_query()}",
        "/v1/batches?status=complete'%20OR%201=1--",
        "/v1/alarms?reactor=R1'%20OR%20'1'='1",
        "/v1/calibrations?channel=ph'--",
        "/v1/batches/7%20OR%201=1",
    ],
)
def test_injected_names_and_filters_reach_no_data(world: ApiWorld, path: str) -> None:
    response = world.client.get(path, headers=world.auth())
    assert response.status_code in (404, 422), response.text[:200]
    body = response.json()
    assert set(body) == {"error", "parameter"} and len(body["error"]) < 300
    assert "X-33" not in response.text and "6.5" not in response.text


def test_one_request_cannot_ask_for_a_page_beyond_the_limit(world: ApiWorld) -> None:
    calls: list[tuple[float, float]] = []
    real = world.store.read_range
    world.store.read_range = lambda *args: calls.append(args[2:]) or real(*args)  # type: ignore[method-assign]
    for limit in (5001, 10**9, -1):
        response = world.client.get(f"{READINGS}?{range_query(limit=limit)}", headers=world.auth())
        assert response.status_code == 422 and response.json()["parameter"] == "limit"
    assert calls == []  # refused before the store was read
    assert refused_count(world, "bad_parameter", "limit") == 3


def test_text_a_sender_stored_cannot_run_as_a_formula_in_a_spreadsheet(world: ApiWorld) -> None:
    units = {"do": "+SUM(A1)", "pressure": "-2+3", "offgas_co2": "@cmd", "offgas_o2": "\tx"}
    units |= {"air_flow": "\rx", "o2_flow": "=1+1"}
    world.store.write(
        [Reading(RANGE_START, "R1", channel, 1.0, unit) for channel, unit in units.items()]
    )
    for channel, unit in units.items():
        response = world.client.get(
            f"/v1/reactors/R1/channels/{channel}/readings?{range_query(format='csv')}",
            headers=world.auth(),
        )
        rows = list(csv.reader(io.StringIO(response.text)))
        assert [row[4] for row in rows[1:]] == ["'" + unit], channel


def test_no_route_writes_whatever_the_method_or_override_header(world: ApiWorld) -> None:
    before = len(world.notebook.audit.audit_trail(limit=10_000))
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/v1/batches", "/v1/batches/7", "/health", "/metrics", READINGS):
            response = world.client.request(method, path, headers=world.auth(), json={"x": 1})
            assert response.status_code == 405, (method, path)
    override = world.client.get(
        "/v1/batches/7", headers={**world.auth(), "X-HTTP-Method-Override": "DELETE"}
    )
    assert override.status_code == 200
    assert world.client.get("/v1/batches/7", headers=world.auth()).status_code == 200
    assert len(world.notebook.audit.audit_trail(limit=10_000)) == before
    assert refused_count(world, "method") == 20
