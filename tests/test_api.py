"""The read-only HTTP API on the real Postgres notebook: records, pages, refusals, schema."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_harness import (
    BATCH,
    PIN,
    RANGE_S,
    RANGE_START,
    READINGS,
    SUPERVISOR,
    ApiWorld,
    range_query,
    world_fixture,
)
from tests.test_metrics_endpoint import parse_exposition

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("cheap_pin_hashing")]

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_COPY = ROOT / "docs" / "openapi.json"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    yield from world_fixture(request, tmp_path)


def test_notebook_records_come_back_as_json(world: ApiWorld) -> None:
    client, auth = world.client, world.auth()
    batches = client.get("/v1/batches", headers=auth).json()
    assert [(b["number"], b["status"], b["strain"]) for b in batches] == [
        (BATCH, "complete", "X-33")
    ]
    assert client.get(f"/v1/batches/{BATCH}", headers=auth).json()["reactor_id"] == "R1"
    assert client.get("/v1/batches?status=running", headers=auth).json() == []

    samples = client.get(f"/v1/batches/{BATCH}/samples", headers=auth).json()
    assert [(s["od600"], s["sop_timepoint_h"], s["entered_by"]) for s in samples] == [
        (pytest.approx(4.2), 2.0, "olga"),
        (None, 4.0, "olga"),  # a dry-weight-only sample: OD600 null, never 0
    ]
    assert (samples[1]["od_raw"], samples[1]["dcw_g_per_l"]) == (None, 2.6)
    deviations = client.get(f"/v1/batches/{BATCH}/deviations", headers=auth).json()
    assert [(d["level"], d["status"]) for d in deviations] == [(1, "open")]

    calibrations = client.get("/v1/calibrations?channel=ph", headers=auth).json()
    assert calibrations[0]["batch_number"] == BATCH
    assert calibrations[0]["results"] == {"slope_pct": 98.7}
    assert client.get("/v1/calibrations?channel=do", headers=auth).json() == []

    alarms = client.get("/v1/alarms?reactor=R1", headers=auth).json()
    assert [(a["rule"], a["state"], a["batch_number"]) for a in alarms] == [
        ("do_low", "raised", BATCH)
    ]

    decisions = client.get(f"/v1/acceptance?batch={BATCH}", headers=auth).json()
    assert [(d["decision"], d["decided_by"], d["in_force"]) for d in decisions] == [
        ("reject", SUPERVISOR, True)
    ]
    assert decisions[0]["evaluation"]["criteria"]


def test_no_answer_carries_a_pin_hash_or_a_token_hash(world: ApiWorld) -> None:
    everything = "".join(
        world.client.get(path, headers=world.auth()).text
        for path in ("/v1/batches", "/v1/acceptance", "/v1/calibrations", "/v1/alarms")
    )
    assert "scrypt$" not in everything and "token_hash" not in everything


def test_model_versions_list_the_shipped_registry(world: ApiWorld) -> None:
    listing = world.client.get("/v1/models", headers=world.auth()).json()
    current = [v for v in listing["versions"] if v["current"]]
    assert [v["version"] for v in current] == ["od600-sim-s2026"]
    assert current[0]["registry"] == "shipped" and current[0]["holdout_mre"] is not None
    assert listing["promotions"][0]["reason"] == "first model"
    assert listing["problems"] == []


def test_reactors_list_configured_ones_and_stored_channels(world: ApiWorld) -> None:
    reactors = world.client.get("/v1/reactors", headers=world.auth()).json()
    assert reactors == [
        {"reactor": "R1", "configured": True, "channels": ["ph"]},
        {"reactor": "R2", "configured": True, "channels": []},
    ]


def test_json_pages_follow_the_cursor_and_add_up_to_the_range(world: ApiWorld) -> None:
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = range_query(limit=700, **({"cursor": cursor} if cursor else {}))
        page = world.client.get(f"{READINGS}?{query}", headers=world.auth()).json()
        pages += 1
        assert page["count"] == len(page["readings"]) <= 700
        seen.extend(page["readings"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 6  # 3600 readings in pages of 700
    assert (page["start"], page["end"]) == ("2026-11-30T08:00:00.000Z", "2026-11-30T09:00:00.000Z")
    expected = world.store.read_range("R1", "ph", RANGE_START, RANGE_START + RANGE_S)
    assert len(seen) == len(expected) == RANGE_S
    assert [r["ts"] for r in seen] == sorted({r["ts"] for r in seen})  # no overlap, in order
    assert seen[99] == {"ts": "2026-11-30T08:01:39.000Z", "value": None, "quality": "bad"}
    assert seen[100]["value"] == pytest.approx(6.6)


def test_csv_pages_add_up_to_the_range_with_text_cells_neutralised(world: ApiWorld) -> None:
    rows: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = range_query(limit=1000, format="csv", **({"cursor": cursor} if cursor else {}))
        response = world.client.get(f"{READINGS}?{query}", headers=world.auth())
        assert response.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(response.text)))
        assert table[0] == ["reactor", "channel", "timestamp", "value", "unit", "quality"]
        rows.extend(table[1:])
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert len(rows) == RANGE_S
    assert rows[0][:4] == ["R1", "ph", "2026-11-30T08:00:00.000Z", "6.5"]
    # The store kept the unit a sender gave; a spreadsheet must show it, not run it.
    assert {row[4] for row in rows} == {"'=cmd|' /C calc'!A0"}
    assert rows[99][3] == "" and rows[99][5] == "bad"


def test_a_page_reads_about_its_own_size_not_the_whole_range(world: ApiWorld) -> None:
    calls: list[tuple[float, float]] = []
    real = world.store.read_range

    def counting(reactor: str, channel: str, start: float, end: float):  # type: ignore[no-untyped-def]
        calls.append((start, end))
        return real(reactor, channel, start, end)

    world.store.read_range = counting  # type: ignore[method-assign]
    page = world.client.get(f"{READINGS}?{range_query(limit=100)}", headers=world.auth()).json()
    assert page["count"] == 100 and page["next_cursor"] is not None
    assert sum(end - start for start, end in calls) <= 101 * 1.0 + 1e-6


def test_an_empty_stretch_and_a_known_channel_without_data_give_empty_pages(
    world: ApiWorld,
) -> None:
    later = RANGE_START + 10 * RANGE_S
    page = world.client.get(
        f"{READINGS}?{range_query(later, later + 60)}", headers=world.auth()
    ).json()
    assert page["readings"] == [] and page["next_cursor"] is None
    other = world.client.get(
        f"/v1/reactors/R2/channels/do/readings?{range_query()}", headers=world.auth()
    )
    assert other.status_code == 200 and other.json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "parameter", "status"),
    [
        (f"{READINGS}?{range_query(RANGE_START + 60, RANGE_START)}", "end", 422),
        (f"{READINGS}?{range_query(RANGE_START, RANGE_START)}", "end", 422),
        (f"{READINGS}?start=yesterday&end=2026-11-30T09:00:00Z", "start", 422),
        (f"{READINGS}?start=2026-11-30T08:00:00&end=2026-11-30T09:00:00Z", "start", 422),
        (f"{READINGS}?start=nan&end=2026-11-30T09:00:00Z", "start", 422),
        (f"{READINGS}?end=2026-11-30T09:00:00Z", "start", 422),
        (f"{READINGS}?{range_query(limit=5001)}", "limit", 422),
        (f"{READINGS}?{range_query(limit=0)}", "limit", 422),
        (f"{READINGS}?{range_query(limit='ten')}", "limit", 422),
        (f"{READINGS}?{range_query(cursor='abc')}", "cursor", 422),
        (f"{READINGS}?{range_query(cursor=1)}", "cursor", 422),
        (f"{READINGS}?{range_query(format='xlsx')}", "format", 422),
        (f"/v1/reactors/R9/channels/ph/readings?{range_query()}", "reactor", 404),
        (f"/v1/reactors/R1/channels/phh/readings?{range_query()}", "channel", 404),
        ("/v1/batches/99", "batch", 404),
        ("/v1/batches/-1", "number", 422),
        ("/v1/batches?status=brewing", "status", 422),
        ("/v1/alarms?limit=100000", "limit", 422),
        ("/v1/calibrations?channel=a%20b", "channel", 422),
    ],
)
def test_bad_parameters_get_a_4xx_naming_the_parameter_and_no_data(
    world: ApiWorld, path: str, parameter: str, status: int
) -> None:
    response = world.client.get(path, headers=world.auth())
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "parameter"} and body["parameter"] == parameter
    assert body["error"]
    refused = parse_exposition(world.client.get("/metrics", headers=world.auth()).text)
    reason = "not_found" if status == 404 else "bad_parameter"
    assert refused[f'bptwin_api_refused_total{{parameter="{parameter}",reason="{reason}"}}'] == 1


def test_every_route_refuses_writes_with_405(world: ApiWorld) -> None:
    schema = world.client.get("/openapi.json").json()
    for path in schema["paths"]:
        concrete = path.replace("{number}", str(BATCH)).replace("{reactor}", "R1")
        concrete = concrete.replace("{channel}", "ph")
        assert set(schema["paths"][path]) == {"get"}, path
        for method in WRITE_METHODS:
            response = world.client.request(method, concrete, headers=world.auth(), json={})
            assert response.status_code == 405, (method, path)
            assert "data" not in response.text and response.headers["allow"] == "GET"


def test_the_committed_schema_lists_every_served_endpoint(world: ApiWorld) -> None:
    served = world.client.get("/openapi.json").json()
    committed = json.loads(SCHEMA_COPY.read_text(encoding="utf-8"))
    assert sorted(committed["paths"]) == sorted(served["paths"])
    assert committed == served, "docs/openapi.json is stale: run scripts in docs/api.md"
    expected = {
        "/v1/batches",
        "/v1/batches/{number}",
        "/v1/batches/{number}/samples",
        "/v1/batches/{number}/deviations",
        "/v1/acceptance",
        "/v1/calibrations",
        "/v1/alarms",
        "/v1/models",
        "/v1/reactors",
        "/v1/reactors/{reactor}/channels/{channel}/readings",
        "/metrics",
        "/health",
    }
    assert set(served["paths"]) == expected
    for path, operations in served["paths"].items():
        if path != "/health":
            assert operations["get"]["security"] == [{"HTTPBearer": []}], path


def test_health_needs_no_token_and_metrics_count_requests(world: ApiWorld) -> None:
    health = world.client.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "problems": []}
    world.client.get("/v1/batches", headers=world.auth())
    world.client.get("/v1/batches")
    text = world.client.get("/metrics", headers=world.auth()).text
    values = parse_exposition(text)
    assert values['bptwin_api_requests_total{method="GET",route="/v1/batches",status="200"}'] == 1
    assert values['bptwin_api_requests_total{method="GET",route="/v1/batches",status="401"}'] == 1
    assert values['bptwin_api_refused_total{parameter="",reason="unauthenticated"}'] == 1


def test_health_says_unhealthy_when_the_store_is_gone(world: ApiWorld) -> None:
    world.store.close()
    health = world.client.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    page = world.client.get(f"{READINGS}?{range_query()}", headers=world.auth())
    assert page.status_code == 503 and "readings" not in page.json()


def test_tokens_are_audited_hashed_and_listed_without_secrets(world: ApiWorld) -> None:
    listed = world.tokens.list_tokens(SUPERVISOR, PIN)
    assert [(t.label, t.created_by, t.active) for t in listed] == [("LIMS import", "sam", True)]
    assert world.token.startswith(listed[0].shown_prefix)
    trail = world.notebook.audit.audit_trail(table_name="api_token")
    assert [(entry.actor, entry.action.value) for entry in trail] == [("sam", "insert")]
    assert world.token not in json.dumps(trail[0].after)
    world.tokens.revoke_token(SUPERVISOR, PIN, listed[0].id)
    trail = world.notebook.audit.audit_trail(table_name="api_token")
    assert [(entry.actor, entry.action.value) for entry in trail] == [
        ("sam", "update"),
        ("sam", "insert"),
    ]
    assert trail[0].after["revoked_by"] == "sam"
    assert world.notebook.audit.verify_audit_chain() is None
