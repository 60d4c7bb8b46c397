"""The API over real HTTP: uvicorn on a free port, the token commands, and inside bptwin serve."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bptwin.database.relational import make_engine
from bptwin.eln.services import NotebookService
from bptwin.tui.api.server import ApiServer
from tests.api_harness import (
    PIN,
    RANGE_S,
    READINGS,
    SUPERVISOR,
    ApiWorld,
    range_query,
    world_fixture,
)
from tests.fixtures.servers import free_port
from tests.test_metrics_endpoint import parse_exposition

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 90.0


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    yield from world_fixture(request, tmp_path)


@pytest.fixture
def served(world: ApiWorld) -> Iterator[str]:
    server = ApiServer(world.context, "127.0.0.1", 0).start()
    deadline = time.monotonic() + DEADLINE_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield server.url
    server.stop()


def wait_for_health(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code in (200, 503):
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"no answer from {url}/health")


@pytest.mark.postgres
def test_real_server_refuses_without_token_revoked_token_and_bad_range(
    world: ApiWorld, served: str
) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        anonymous = client.get(f"{READINGS}?{range_query()}")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert "readings" not in anonymous.text and "6.5" not in anonymous.text

        wrong_scheme = client.get("/v1/batches", headers={"Authorization": f"Basic {world.token}"})
        assert wrong_scheme.status_code == 401 and "X-33" not in wrong_scheme.text

        spare = world.tokens.create_token(SUPERVISOR, PIN, "spare script").secret
        assert client.get("/v1/batches", headers=world.auth(spare)).status_code == 200
        spare_id = world.tokens.list_tokens(SUPERVISOR, PIN)[-1].id
        world.tokens.revoke_token(SUPERVISOR, PIN, spare_id)
        revoked = client.get("/v1/batches", headers=world.auth(spare))
        assert revoked.status_code == 401 and "X-33" not in revoked.text
        assert client.get("/v1/batches", headers=world.auth()).status_code == 200  # others live

        reversed_range = client.get(
            f"{READINGS}?start=2026-11-30T09:00:00Z&end=2026-11-30T08:00:00Z",
            headers=world.auth(),
        )
        assert reversed_range.status_code == 422
        assert reversed_range.json()["parameter"] == "end"
        assert "readings" not in reversed_range.json()

        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert client.request(method, "/v1/batches", headers=world.auth()).status_code == 405


@pytest.mark.postgres
def test_real_server_json_and_csv_pages_add_up_to_the_range(world: ApiWorld, served: str) -> None:
    with httpx.Client(base_url=served, timeout=30, headers=world.auth()) as client:
        json_count, cursor = 0, None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            page = client.get(f"{READINGS}?{range_query(limit=1500, **extra)}").json()
            json_count += page["count"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        csv_rows, cursor = 0, None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            response = client.get(f"{READINGS}?{range_query(limit=1500, format='csv', **extra)}")
            csv_rows += len(list(csv.reader(io.StringIO(response.text)))) - 1
            cursor = response.headers.get("x-next-cursor")
            if cursor is None:
                break
    assert json_count == csv_rows == RANGE_S


def test_token_commands_and_the_api_inside_bptwin_serve(tmp_path: Path) -> None:
    """A supervisor makes a token on the command line; ``bptwin serve`` with [api] enabled
    answers with it, its /metrics are the station's; after 'revoke' the token is refused."""
    port = free_port()
    config = tmp_path / "bptwin.toml"
    config.write_text(
        f'[station]\ndata_dir = "{tmp_path / "data"}"\nreactors = ["R1"]\n'
        f"[acquisition]\nspeed = 1.0\n[api]\nenabled = true\nport = {port}\n",
        encoding="utf-8",
    )
    # The simulated source on the reactor's own name ("R1", not "sim-R1").
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "BPTWIN_ACQUISITION__SIMULATED_REACTOR_PREFIX": "",
    }
    command = [sys.executable, "-m", "bptwin.tui.cli", "--config", str(config)]

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
        )

    assert cli("db", "upgrade").returncode == 0
    notebook = NotebookService(make_engine(f"sqlite:///{tmp_path / 'data' / 'notebook.sqlite'}"))
    notebook.operators.create_operator("setup", SUPERVISOR, "supervisor", PIN)
    notebook.operators.create_operator(SUPERVISOR, "olga", "operator", "1234")

    refused = cli("api", "token", "create", "--supervisor", "olga", "--label", "x", stdin="1234\n")
    assert refused.returncode == 1 and "unknown supervisor or wrong PIN" in refused.stderr
    wrong_pin = cli(
        "api", "token", "create", "--supervisor", SUPERVISOR, "--label", "x", stdin="9\n"
    )
    assert wrong_pin.returncode == 1 and not wrong_pin.stdout
    made = cli("api", "token", "create", "--supervisor", SUPERVISOR, "--label", "LIMS", stdin=PIN)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("bptwin_") and "shown only now" in made.stderr
    listed = cli("api", "token", "list", "--supervisor", SUPERVISOR, stdin=PIN)
    assert "LIMS" in listed.stdout and token not in listed.stdout and "active" in listed.stdout

    serve = subprocess.Popen(
        [*command, "serve", "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, serve)
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + DEADLINE_S
        readings = 0.0
        while time.monotonic() < deadline and readings == 0:
            exposition = parse_exposition(httpx.get(f"{url}/metrics", headers=auth).text)
            readings = sum(
                v for k, v in exposition.items() if k.startswith("bptwin_readings_total")
            )
            time.sleep(0.5)
        assert readings > 0, "the station's own metrics are not on the API's /metrics"
        reactors = httpx.get(f"{url}/v1/reactors", headers=auth).json()
        assert reactors[0]["reactor"] == "R1"

        token_id = listed.stdout.split()[0]
        revoked = cli("api", "token", "revoke", "--supervisor", SUPERVISOR, token_id, stdin=PIN)
        assert revoked.returncode == 0, revoked.stderr
        assert httpx.get(f"{url}/v1/reactors", headers=auth).status_code == 401
    finally:
        serve.terminate()
        serve.communicate(timeout=60)
    trail = notebook.audit.audit_trail(table_name="api_token")
    assert [(entry.actor, entry.action.value) for entry in trail] == [
        (SUPERVISOR, "update"),
        (SUPERVISOR, "insert"),
    ]
