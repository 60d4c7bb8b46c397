"""No data lost on the way in: every driver through a real station into a real InfluxDB 1.x.

Each test runs one driver (simulated, replay, the serial emulator over a pseudo-terminal, a
lab's MQTT topics) in a station whose store is InfluxDB, and checks that every channel the
driver gave arrived with the right count: the numpy values of the simulator once made the
server refuse about 94 000 lines of a run (docs/security.md, docs/timeseries.md).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.drivers.serial_emulator import PtyAnalyser
from bptwin.drivers.simulated import simulator_channel_values
from bptwin.tui.doctor import Status, check_kept_aside
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from bptwin.twin.sim_sensors import NOT_SIMULATED
from tests.adversarial.harness import Outsider, running, station_settings, unique_prefix, wait_for

pytestmark = [pytest.mark.influx, pytest.mark.mqtt]


def influx_settings(
    data_dir: Path,
    broker: tuple[str, int],
    url: str,
    database: str,
    sources: list[dict[str, Any]],
) -> Settings:
    settings = station_settings(data_dir, broker, unique_prefix(), sources=sources)
    settings.timeseries.backend = "influxdb"
    settings.timeseries.url = url
    settings.timeseries.api_version = "1"
    settings.timeseries.database = database
    settings.timeseries.flush_interval_s = 0.2
    return settings


def influx_counts(url: str, database: str, reactor: str = "R1") -> Counter[str]:
    """Points per catalogue channel of ``reactor`` as the server holds them."""
    q = f"SELECT count(\"quality\") FROM readings WHERE reactor = '{reactor}' GROUP BY channel"
    params = urllib.parse.urlencode({"db": database, "q": q, "epoch": "ms"})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=30) as response:
        result = json.load(response)["results"][0]
    counts: Counter[str] = Counter()
    for series in result.get("series", []):
        channel = series["tags"]["channel"]
        if channel in CHANNELS_BY_NAME:
            counts[channel] = int(series["values"][0][1])
    return counts


def admitted_counts(station: Station, reactor: str = "R1") -> Counter[str]:
    """Readings the station admitted per channel (its /metrics bptwin_readings_total)."""
    exposition = station.metrics.render().decode()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "bptwin_readings_total" and sample.labels["reactor"] == reactor:
                counts[sample.labels["channel"]] = int(sample.value)
    return counts


def assert_all_arrived(station: Station, url: str, database: str, expected: Counter[str]) -> None:
    assert station.store is not None
    status = station.store.status()
    assert status.refused == 0 and status.kept_aside == 0, status
    assert status.pending == 0 and status.spooled == 0, status
    assert influx_counts(url, database) == expected


def test_every_channel_of_the_simulated_reactor_arrives_in_influxdb(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    settings = influx_settings(
        tmp_path, mqtt_broker, influx_url, influx_database,
        [{"name": "sim", "kind": "simulated", "speed": 0}],
    )  # fmt: skip
    with running(settings) as station:
        assert wait_for(lambda: station.snapshot().readings_total >= 20 * 19 * 60)
        station.stop_drivers()
        expected = admitted_counts(station)
        assert station.recorder is not None and station.recorder.flush(60)
        assert station.store is not None and station.store.flush(120)
        # every channel the simulator models, vessel weight too (a glycerol batch has no feed)
        assert set(expected) == set(CHANNELS_BY_NAME) - NOT_SIMULATED
        assert_all_arrived(station, influx_url, influx_database, expected)


def test_every_row_of_a_replayed_batch_arrives_in_influxdb(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    rows = []
    for second, values in enumerate(simulator_channel_values(seed=5)):
        if second == 900:
            break
        rows.append({"timestamp": 1_790_000_000.0 + second, **values})
    frame = pd.DataFrame(rows)
    recording = tmp_path / "batch.parquet"
    frame.to_parquet(recording)
    expected = Counter(
        {name: int(frame[name].notna().sum()) for name in frame.columns if name in CHANNELS_BY_NAME}
    )
    settings = influx_settings(
        tmp_path / "data", mqtt_broker, influx_url, influx_database,
        [{"name": "replay", "kind": "replay", "file": str(recording), "speed": 0}],
    )  # fmt: skip
    with running(settings) as station:
        (thread,) = station.driver_threads
        assert thread.join(timeout=120), "the replay did not finish"
        assert station.recorder is not None and station.recorder.flush(60)
        assert station.store is not None and station.store.flush(120)
        assert admitted_counts(station) == expected
        assert_all_arrived(station, influx_url, influx_database, expected)


def test_every_sentence_of_the_serial_analyser_arrives_in_influxdb(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    with PtyAnalyser(tmp_path / "analyser") as analyser:
        settings = influx_settings(
            tmp_path / "data", mqtt_broker, influx_url, influx_database,
            [{"name": "offgas", "kind": "serial", "port": analyser.path}],
        )  # fmt: skip
        with running(settings) as station:
            (thread,) = station.driver_threads
            assert wait_for(lambda: thread.driver.stats.connected)
            for i in range(60):
                analyser.send_gas(20.9 - i / 100, 0.04 + i / 100)
                analyser.send_flow(1.5 + i / 1000)
                # One pair per millisecond at least: the key of a reading is its arrival time.
                assert wait_for(lambda i=i: thread.driver.stats.emitted >= 3 * (i + 1))
                time.sleep(0.002)
            station.stop_drivers()
            assert station.recorder is not None and station.recorder.flush(60)
            assert station.store is not None and station.store.flush(60)
            expected = Counter({"offgas_o2": 60, "offgas_co2": 60, "offgas_flow": 60})
            assert admitted_counts(station) == expected
            assert_all_arrived(station, influx_url, influx_database, expected)


def test_every_message_of_a_labs_mqtt_topics_arrives_in_influxdb(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    lab = f"lab-{unique_prefix()}"
    topic_map = [
        {"topic": f"{lab}/vessel1/ph", "channel": "ph", "reactor": "R1"},
        {"topic": f"{lab}/vessel1/do", "channel": "do", "reactor": "R1"},
        {"topic": f"{lab}/vessel1/co2_ppm", "channel": "offgas_co2", "reactor": "R1",
         "scale": 1e-4},
    ]  # fmt: skip
    settings = influx_settings(
        tmp_path, mqtt_broker, influx_url, influx_database,
        [{"name": "lab", "kind": "mqtt", "topic_map": topic_map}],
    )  # fmt: skip
    with running(settings) as station:
        (thread,) = station.driver_threads
        assert wait_for(lambda: thread.driver.stats.connected)  # subscribed on the broker
        outsider = Outsider(mqtt_broker, lab)
        try:
            start = time.time() - 120
            for i in range(100):
                stamp = {"ts": start + i}
                outsider.raw(f"{lab}/vessel1/ph", json.dumps({**stamp, "value": 5.0}).encode())
                outsider.raw(f"{lab}/vessel1/do", json.dumps({**stamp, "value": 40.0}).encode())
                outsider.raw(
                    f"{lab}/vessel1/co2_ppm", json.dumps({**stamp, "value": 9000 + i}).encode()
                )
            outsider.flush()
        finally:
            outsider.close()
        expected = Counter({"ph": 100, "do": 100, "offgas_co2": 100})
        assert wait_for(lambda: admitted_counts(station) == expected)
        assert station.recorder is not None and station.recorder.flush(60)
        assert station.store is not None and station.store.flush(60)
        assert_all_arrived(station, influx_url, influx_database, expected)
        co2 = station.store.read_range("R1", "offgas_co2", start - 1, start + 1000)
        assert math.isclose(co2[0].value, 0.9)  # ppm scaled to % v/v


def test_a_line_influxdb_refuses_is_counted_kept_and_shown(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    """Another writer fixed 'value' as text in this week's shard: the refusal is visible."""
    plant = f'readings,channel=x,reactor=R9 value="text" {int(time.time() * 1000)}'
    params = urllib.parse.urlencode({"q": f'CREATE DATABASE "{influx_database}"'})
    urllib.request.urlopen(
        urllib.request.Request(f"{influx_url}/query?{params}", method="POST"), timeout=10
    ).close()
    write = urllib.parse.urlencode({"db": influx_database, "precision": "ms"})
    urllib.request.urlopen(
        urllib.request.Request(f"{influx_url}/write?{write}", data=plant.encode(), method="POST"),
        timeout=10,
    ).close()
    settings = influx_settings(
        tmp_path, mqtt_broker, influx_url, influx_database, [{"name": "gw", "kind": "bptwin"}]
    )
    with running(settings) as station:
        outsider = Outsider(mqtt_broker, settings.bus.prefix)
        try:
            for i in range(5):
                outsider.reading("R1", "ph", time.time() - 10 + i, 5.0)
            outsider.flush()
        finally:
            outsider.close()
        assert station.store is not None
        # The five readings, and the shadow's derived values stored beside them.
        assert wait_for(lambda: station.store.status().refused >= 5)  # type: ignore[union-attr]
        refused = station.store.status().refused
        assert station.rejected_inputs().get("store refused") == refused
        assert f"store refused {refused}" in " ".join(station.snapshot().problems)
        assert "field type conflict" in (station.store.status().last_error or "")
    shown = check_kept_aside(settings)
    assert shown.status is Status.WARN
    assert re.search(r"\d+ readings refused or in conflict", shown.detail)
    assert "influx.sqlite (table rejected)" in shown.detail
    assert influx_counts(influx_url, influx_database) == Counter()  # nothing stored as if right


def test_a_stopping_station_leaves_no_reading_behind(
    tmp_path: Path, mqtt_broker: tuple[str, int], influx_url: str, influx_database: str
) -> None:
    """Every reading admitted before the station stops is in InfluxDB after it stopped."""
    settings = influx_settings(
        tmp_path, mqtt_broker, influx_url, influx_database, [{"name": "gw", "kind": "bptwin"}]
    )
    sent = 300
    with running(settings) as station:
        outsider = Outsider(mqtt_broker, settings.bus.prefix)
        try:
            start = time.time() - sent
            for i in range(sent):
                outsider.reading("R1", "temp_broth", start + i, 30.0 + i / 1000)
            outsider.flush()
        finally:
            outsider.close()
        assert wait_for(lambda: admitted_counts(station).get("temp_broth") == sent)
    assert influx_counts(influx_url, influx_database) == Counter({"temp_broth": sent})
