"""The Grafana dashboard in docs/grafana: valid JSON whose InfluxQL names the store's measurement,
fields and known series, and whose every query runs on the real InfluxDB 1.x and finds data."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading
from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.database.timeseries.influx_common import MEASUREMENT
from bptwin.twin.serving import PREDICTION_CHANNELS
from bptwin.twin.shadow import DERIVED_CHANNELS

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "bptwin-influxdb.json"
FIELDS = {"value", "quality", "unit"}  # what database.timeseries.influx_common writes
KNOWN_SERIES = (
    set(CHANNELS_BY_NAME)
    | {channel for _attribute, channel, _unit in DERIVED_CHANNELS}
    | set(PREDICTION_CHANNELS.values())
)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panel_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["query"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[str]:
    return [v["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]


def test_dashboard_is_valid_and_names_only_what_the_store_writes() -> None:
    board = dashboard()
    assert board["uid"] == "bptwin-batch" and board["panels"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "reactor", "channel"}
    queries = panel_queries()
    assert len(queries) >= 25
    named: set[str] = set()
    for title, query in queries:
        assert f'FROM "{MEASUREMENT}"' in query, title
        assert "$timeFilter" in query and "/^$reactor$/" in query, title
        for field in re.findall(r'(?:mean|last|count)\("(\w+)"\)', query):
            assert field in FIELDS, f"{title}: no field {field!r} in the store"
        named.update(re.findall(r"\"channel\" = '(\w+)'", query))
    unknown = named - KNOWN_SERIES
    assert not unknown, f"queries name series bptwin never writes: {unknown}"
    assert {"do", "ph", "temp_broth", "od600_pred", "our", "cer", "rq"} <= named
    for query in variable_queries():
        assert f'FROM "{MEASUREMENT}"' in query


START = 1_772_438_400.0  # 2026-03-02 08:00 UTC


def influx_query(url: str, database: str, query: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ms"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as response:
        document = json.loads(response.read())
    result = document["results"][0]
    assert "error" not in result, f"{query}: {result.get('error')}"
    return result.get("series", [])


def grafana_to_influxql(query: str, start: float, end: float) -> str:
    """Expand the macros Grafana fills in before it sends an InfluxQL query."""
    return (
        query.replace(
            "$timeFilter", f"time >= {int(start * 1000)}ms AND time < {int(end * 1000)}ms"
        )
        .replace("$__interval", "30s")
        .replace("$reactor", "R1")
        .replace("$channel", "(do|ph)")
    )


def test_every_query_runs_on_influxdb_and_finds_the_series(
    influx_store: TimeSeriesStore, influx_url: str, influx_database: str
) -> None:
    written = {"do", "ph", "temp_broth", "od600_pred", "od600_pred_lower", "our", "rq"}
    readings = []
    for second in range(0, 600, 5):
        for channel in sorted(written):
            value = math.nan if (channel == "do" and second == 300) else 1.0 + second / 600
            quality = Quality.BAD if math.isnan(value) else Quality.GOOD
            readings.append(Reading(START + second, "R1", channel, value, "", quality))
    readings.append(Reading(START + 10, "R2", "do", 40.0))
    influx_store.write(readings)
    assert influx_store.flush(timeout=30)

    found: set[str] = set()
    for title, query in panel_queries():
        series = influx_query(
            influx_url, influx_database, grafana_to_influxql(query, START, START + 600)
        )
        values = [row[1] for s in series for row in s["values"] if row[1] is not None]
        match = re.search(r"\"channel\" = '(\w+)'", query)
        if match and match.group(1) in written:
            assert values, f"{title}: no data for {match.group(1)}"
            found.add(match.group(1))
        if "quality" in query:
            counted = {s["tags"]["channel"]: sum(r[1] for r in s["values"]) for s in series}
            assert counted == {"do": 1}, title
        if "=~ /^(do|ph)$/" in grafana_to_influxql(query, START, START + 600):
            assert {s["tags"]["channel"] for s in series} == {"do", "ph"}, title
    assert found == written

    reactors, channels = (
        influx_query(influx_url, influx_database, q.replace("$reactor", "R1"))
        for q in variable_queries()
    )
    assert [row[1] for row in reactors[0]["values"]] == ["R1", "R2"]
    assert {row[1] for row in channels[0]["values"]} == written


@pytest.mark.parametrize("path", sorted(DASHBOARD.parent.glob("*.json")), ids=lambda p: p.name)
def test_every_json_in_docs_grafana_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
