"""InfluxDB store specifics: configuration, schema, line protocol, 2.x query text, error paths."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.database.timeseries.influx import InfluxStore
from bptwin.database.timeseries.influx_common import (
    DeliveryError,
    InfluxConfig,
    InfluxConfigError,
    LineEncoder,
    flux_string,
    parse_server_version,
)
from bptwin.database.timeseries.influx_v2 import (
    flux_channels_query,
    flux_range_query,
    flux_windows_query,
)

T0 = 1_700_000_010.0


def influxql(url: str, database: str, q: str, *, post: bool = False) -> list[dict]:
    params = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
    request = urllib.request.Request(f"{url}/query?{params}", method="POST" if post else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["results"][0].get("series", [])


def raw_write(url: str, database: str, body: str) -> None:
    params = urllib.parse.urlencode({"db": database, "precision": "ms"})
    request = urllib.request.Request(f"{url}/write?{params}", data=body.encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"url": "localhost:8086", "database": "x"}, "url"),
        ({"url": "http://h:99999", "database": "x"}, "port"),
        ({"url": "http://h:8086", "api_version": "3", "database": "x"}, "api_version"),
        ({"url": "http://h:8086", "api_version": "2", "org": "o", "bucket": "b"}, "token"),
        ({"url": "http://h:8086", "api_version": "1"}, "database"),
        ({"url": "http://h:8086"}, "database"),
        ({"url": "http://h:8086", "database": "x", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_settings_name_the_key(settings: dict, named: str) -> None:
    with pytest.raises(InfluxConfigError, match=named):
        InfluxConfig(**settings)


def test_target_never_shows_the_token() -> None:
    config = InfluxConfig(
        url="https://jetson:8086", api_version="2", token="s3cret", org="lab", bucket="bp"
    )
    assert "s3cret" not in config.target()
    assert "bp" in config.target()


@pytest.mark.parametrize(
    ("header", "major"),
    [("1.6.7~rc0", "1"), ("1.8.10", "1"), ("v2.7.4", "2"), ("2.7.1", "2"), ("3.0.0", "2")],
)
def test_server_version_header(header: str, major: str) -> None:
    assert parse_server_version(header) == major


@pytest.mark.parametrize("header", [None, "", "OSS", "0.9.6"])
def test_unknown_server_version_is_an_error(header: str | None) -> None:
    with pytest.raises(DeliveryError):
        parse_server_version(header)


# -- line protocol -------------------------------------------------------------------------------


def test_line_protocol_schema() -> None:
    encoder = LineEncoder()
    good = Reading(T0 + 0.123, "R1", "ph", 7.01, "pH", Quality.UNCERTAIN)
    missing = Reading(T0, "R1", "ph", float("nan"), "pH")
    assert encoder.line(good) == (
        'readings,channel=ph,reactor=R1 value=7.01,quality="uncertain",unit="pH" 1700000010123'
    )
    assert (
        encoder.line(missing)
        == 'readings,channel=ph,reactor=R1 quality="bad",unit="pH" 1700000010000'
    )


def test_line_protocol_escapes_tags_and_strings() -> None:
    line = LineEncoder().line(Reading(T0, "lab A", "o2,x=1", 1.0, 'mg "L"\\'))
    assert line.startswith(r"readings,channel=o2\,x\=1,reactor=lab\ A value=1.0,")
    assert r'unit="mg \"L\"\\"' in line


def test_line_breaks_in_names_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        LineEncoder().line(Reading(T0, "R1", "ph\nevil", 1.0))


# -- Flux (2.x) query text: exercised without a 2.x server --------------------------------------


def test_flux_range_query_text() -> None:
    q = flux_range_query("bp", "readings", "R1", "ph", 1_700_000_010_000, 1_700_000_070_500)
    assert q.startswith('from(bucket: "bp")')
    assert "range(start: 2023-11-14T22:13:30.000Z, stop: 2023-11-14T22:14:30.500Z)" in q
    assert 'r._measurement == "readings" and r.reactor == "R1" and r.channel == "ph"' in q
    assert 'pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")' in q
    assert 'sort(columns: ["_time"])' in q


def test_flux_windows_query_yields_each_aggregate() -> None:
    q = flux_windows_query("bp", "readings", "R1", "do", 0, 60_000, 30_000)
    assert 'r._field == "value"' in q
    for name in ("mean", "min", "max", "last", "count"):
        assert (
            f'aggregateWindow(every: 30000ms, fn: {name}, createEmpty: false, timeSrc: "_start")'
            f' |> yield(name: "{name}")'
        ) in q


def test_flux_channels_query_filters_by_reactor_only_when_asked() -> None:
    assert "r.reactor ==" not in flux_channels_query("bp", "readings", None)
    assert 'r.reactor == "R2"' in flux_channels_query("bp", "readings", "R2")


def test_flux_strings_cannot_break_out() -> None:
    assert flux_string('a"b') == '"a\\"b"'
    assert flux_string("${x}") == '"\\${x}"'
    assert flux_string("back\\slash") == '"back\\\\slash"'


# -- against the real 1.x server -----------------------------------------------------------------


@pytest.mark.influx
def test_auto_detects_api_1_and_uses_the_documented_schema(
    influx_store: InfluxStore, influx_url: str, influx_database: str
) -> None:
    assert influx_store.ping().startswith("1.")
    influx_store.write([Reading(T0, "R1", "ph", 7.0, "pH")])
    assert influx_store.flush(timeout=30)
    assert influx_store.api_version == "1"
    keys = influxql(influx_url, influx_database, "SHOW TAG KEYS FROM readings")[0]["values"]
    assert sorted(k[0] for k in keys) == ["channel", "reactor"]
    fields = influxql(influx_url, influx_database, "SHOW FIELD KEYS FROM readings")[0]["values"]
    assert sorted(map(tuple, fields)) == [
        ("quality", "string"),
        ("unit", "string"),
        ("value", "float"),
    ]


@pytest.mark.influx
def test_awkward_names_round_trip(influx_store: InfluxStore) -> None:
    odd = Reading(T0, "lab A", "o2,x=1", 20.9, 'mg "L"\\')
    influx_store.write([odd])
    assert influx_store.flush(timeout=30)
    assert influx_store.read_range("lab A", "o2,x=1", T0, T0 + 1) == [odd]
    assert influx_store.list_channels("lab A") == [("lab A", "o2,x=1")]


@pytest.mark.influx
def test_dropped_database_is_recreated(
    influx_store: InfluxStore, influx_url: str, influx_database: str
) -> None:
    influx_store.write([Reading(T0, "R1", "ph", 7.0)])
    assert influx_store.flush(timeout=30)
    influxql(influx_url, influx_database, f'DROP DATABASE "{influx_database}"', post=True)
    influx_store.write([Reading(T0 + 1, "R1", "ph", 7.1)])
    assert influx_store.flush(timeout=30)
    assert [r.value for r in influx_store.read_range("R1", "ph", T0, T0 + 5)] == [7.1]


@pytest.mark.influx
def test_a_batch_the_server_refuses_is_kept_aside_not_dropped(
    influx_store: InfluxStore, influx_url: str, influx_database: str
) -> None:
    # Another writer stored "value" as a string first: our float points now conflict (400).
    influxql(influx_url, influx_database, f'CREATE DATABASE "{influx_database}"', post=True)
    raw_write(
        influx_url, influx_database, f'readings,channel=x,reactor=R9 value="text" {T0:.0f}000'
    )
    influx_store.write([Reading(T0 + 1, "R1", "ph", 7.1)])
    assert influx_store.flush(timeout=30)
    status = influx_store.status()
    assert status.failed_writes == 1
    assert "field type conflict" in (status.last_error or "")
    assert status.link_ok, "a refused batch is not a broken link"
    assert influx_store.spool.depth() == 0
    assert influx_store.spool.rejected_count() == 1
    # The next good batch goes through (a different shard: 2024 instead of 2023).
    influx_store.write([Reading(1_720_000_000.0, "R1", "ph", 7.2)])
    assert influx_store.flush(timeout=30)
    assert influx_store.status().written == 1


FAILURE_DEADLINE_S = 120.0


@pytest.mark.influx
def test_api_2_against_a_1x_server_keeps_everything_spooled(
    influx_url: str, tmp_path: Path
) -> None:
    """InfluxDB 1.6 has no /api/v2: the 2.x write path fails, and the readings wait on disk."""
    config = InfluxConfig(url=influx_url, api_version="2", token="t", org="lab", bucket="bp")
    store = InfluxStore(
        config, tmp_path / "spool.sqlite", flush_interval=0.05, retry_initial=0.05, retry_max=0.1
    )
    try:
        store.write([Reading(T0 + i, "R1", "ph", 7.0) for i in range(10)])
        # The first 2.x call imports influxdb-client (seconds on a loaded machine): wait for
        # the failed write itself, not for a fixed time.
        deadline = time.monotonic() + FAILURE_DEADLINE_S
        while store.status().failed_writes == 0:
            assert time.monotonic() < deadline, f"no failed write within {FAILURE_DEADLINE_S} s"
            time.sleep(0.05)
        assert not store.flush(timeout=0.2)  # nothing can be written: all of it stays spooled
        status = store.status()
        assert not status.link_ok
        assert status.spooled == 10 and status.pending == 0
        assert status.failed_writes >= 1
        assert "404" in (status.last_error or "")
    finally:
        store.close()
    assert store.api_version == "2"


# -- nothing set aside silently, first write wins on the server ----------------------------------


@pytest.mark.influx
def test_lines_the_server_cannot_parse_are_kept_aside_and_the_rest_written(
    influx_store: InfluxStore,
) -> None:
    """A 1.x server names unparsable lines: exactly those are kept aside, with its reason."""
    good = [f'readings,channel=ph,reactor=R1 value={7 + i / 10},quality="good",unit="pH"'
            f" {int(T0 * 1000) + i * 1000}" for i in range(4)]  # fmt: skip
    bad = 'readings,channel=ph,reactor=R1 value=1e999,quality="good",unit="pH" ' + str(
        int(T0 * 1000) + 9000
    )
    influx_store.spool.push_many([("\n".join([good[0], bad, *good[1:]]), 5)])
    assert influx_store.flush(timeout=30)
    assert [r.value for r in influx_store.read_range("R1", "ph", T0, T0 + 60)] == [
        7.0,
        7.1,
        7.2,
        7.3,
    ]
    status = influx_store.status()
    assert (status.written, status.refused, status.kept_aside) == (4, 1, 1)
    assert "invalid float" in (status.last_error or "")
    assert status.link_ok


@pytest.mark.influx
def test_refused_readings_do_not_take_good_ones_aside_with_them(
    influx_store: InfluxStore, influx_url: str, influx_database: str
) -> None:
    """Halving finds the refused lines: the good readings of the same batch are written."""
    influxql(influx_url, influx_database, f'CREATE DATABASE "{influx_database}"', post=True)
    # Another writer fixed "value" as a string in the shard of the week of T0.
    raw_write(
        influx_url, influx_database, f'readings,channel=x,reactor=R9 value="text" {T0:.0f}000'
    )
    two_weeks = 14 * 86400.0  # another shard, where "value" is still free to be a float
    mixed = [
        Reading(T0 + 1 + i + (two_weeks if i % 2 == 0 else 0.0), "R1", "ph", float(i))
        for i in range(10)
    ]
    influx_store.write(mixed)
    assert influx_store.flush(timeout=60)
    later = influx_store.read_range("R1", "ph", T0 + two_weeks, T0 + two_weeks + 60)
    assert [r.value for r in later] == [0.0, 2.0, 4.0, 6.0, 8.0]
    status = influx_store.status()
    assert (status.written, status.refused, status.kept_aside) == (5, 5, 5)
    assert "field type conflict" in (status.last_error or "")


@pytest.mark.influx
def test_a_replayed_spool_is_idempotent_and_a_rewrite_is_a_conflict_across_restarts(
    influx_url: str, influx_database: str, tmp_path: Path
) -> None:
    config = InfluxConfig(url=influx_url, database=influx_database)

    def open_store(spool: str) -> InfluxStore:
        return InfluxStore(config, tmp_path / spool, flush_interval=0.05, retry_initial=0.05)

    first = open_store("a.sqlite")
    batch = [Reading(T0 + i, "R1", "ph", 7.0 + i / 100) for i in range(20)]
    first.write(batch)
    assert first.flush(timeout=30)
    first.close()
    # A new process (empty high-water marks) replays the same lines and tries to rewrite one.
    second = open_store("b.sqlite")
    try:
        second.write([*batch, Reading(T0 + 5, "R1", "ph", 4.2), Reading(T0 + 5.5, "R1", "ph", 7.3)])
        assert second.flush(timeout=30)
        got = second.read_range("R1", "ph", T0, T0 + 60)
        assert [r.value for r in got if r.timestamp == T0 + 5] == [7.05]
        assert len(got) == 21  # the out-of-order newcomer at +5.5 s is stored
        status = second.status()
        assert (status.duplicates, status.conflicts, status.written) == (20, 1, 1)
        assert status.kept_aside == 1
        # Known series now: a later rewrite is caught without asking for the high-water mark.
        second.write([Reading(T0 + 19, "R1", "ph", 0.0)])
        assert second.flush(timeout=30)
        assert second.status().conflicts == 2
    finally:
        second.close()
