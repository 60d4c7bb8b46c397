"""/metrics and /health of a station: Prometheus text format, health against real stores/bus."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bptwin.database.bus import LocalBus, MqttBus
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.database.timeseries.influx import InfluxStore
from bptwin.database.timeseries.influx_common import InfluxConfig
from bptwin.tui.runtime.prometheus import (
    CONTENT_TYPE,
    MetricsRegistry,
    MetricsServer,
    start_metrics_server,
)
from bptwin.tui.settings_ops import MetricsSettings
from tests.fixtures.servers import free_port

SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})?'
    r" (?P<value>[-+]?(\d+(\.\d*)?([eE][-+]?\d+)?|Inf|NaN))$"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_794_992_400.0

    def __call__(self) -> float:
        return self.now


def parse_exposition(text: str) -> dict[str, float]:
    """Strictly parse the text format: every sample well formed and of a declared family."""
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            assert name not in declared, f"{name} declared twice"
            declared[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"malformed sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in declared or declared.get(family) == "histogram", f"{name} undeclared"
        key = name + (match["labels"] or "")
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(match["value"].replace("Inf", "inf"))
    return samples


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    yield store
    store.close()


def test_metrics_carry_readings_latency_alarms_bus_and_store(embedded: EmbeddedStore) -> None:
    clock = Clock()
    registry = MetricsRegistry(clock=clock)
    bus = LocalBus()
    bus.start()
    registry.watch_bus(bus)
    registry.watch_store(embedded)
    for second in range(3):
        registry.reading_received(Reading(clock.now + second, "R1", "do", 40.0, "%"))
    registry.reading_received(Reading(clock.now, "R1", "ph", 5.0, "pH"))
    registry.reading_received(Reading(clock.now, 'R"2', "ph", 5.0, "pH"))
    clock.now += 7.5
    registry.observe_prediction_latency(0.003)
    registry.observe_prediction_latency(0.2)
    registry.observe_prediction_latency(float("nan"))  # ignored, never crashes a scrape
    registry.set_alarm_counts({"active_unacknowledged": 2, "normal": 5}, {"critical": 1})
    registry.set_spool_depth("notebook", 4)
    registry.add_gauge("bptwin_notify_queue", "Notifications waiting", lambda: 3)
    server = start_metrics_server(registry)
    try:
        status, content_type, text = get(server.url + "/metrics")
    finally:
        server.stop()
        bus.stop()
    assert status == 200 and content_type == CONTENT_TYPE
    samples = parse_exposition(text)
    assert samples['bptwin_readings_total{reactor="R1",channel="do"}'] == 3
    assert samples['bptwin_readings_total{reactor="R1",channel="ph"}'] == 1
    assert samples['bptwin_readings_total{reactor="R\\"2",channel="ph"}'] == 1
    assert samples['bptwin_last_reading_age_seconds{reactor="R1",channel="do"}'] == 7.5
    assert samples['bptwin_prediction_latency_seconds_bucket{le="0.005"}'] == 1
    assert samples['bptwin_prediction_latency_seconds_bucket{le="+Inf"}'] == 2
    assert samples["bptwin_prediction_latency_seconds_count"] == 2
    assert samples["bptwin_prediction_latency_seconds_sum"] == pytest.approx(0.203)
    assert samples['bptwin_alarms{state="active_unacknowledged"}'] == 2
    assert samples['bptwin_alarms_annunciated{priority="critical"}'] == 1
    assert samples['bptwin_bus_connected{bus="LocalBus"}'] == 1
    assert samples['bptwin_store_link_ok{store="embedded"}'] == 1
    assert samples['bptwin_spool_depth{store="notebook"}'] == 4
    assert samples["bptwin_notify_queue"] == 3
    assert samples["bptwin_healthy"] == 1


def test_health_is_503_with_reasons_when_the_bus_is_down_and_readings_stop(
    embedded: EmbeddedStore, mqtt_broker: tuple[str, int]
) -> None:
    clock = Clock()
    registry = MetricsRegistry(stale_after_s=60, clock=clock)
    bus = MqttBus(*mqtt_broker)
    bus.start()
    registry.watch_bus(bus)
    registry.watch_store(embedded)
    server = start_metrics_server(registry)
    try:
        registry.reading_received(Reading(clock.now, "R1", "do", 40.0, "%"))
        status, content_type, body = get(server.url + "/health")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok", "problems": []}
        bus.stop()
        clock.now += 61
        status, _, body = get(server.url + "/health")
        problems = json.loads(body)["problems"]
        assert status == 503
        assert problems == [
            "bus MqttBus is not connected",
            "no reading for 61 s (limit 60 s)",
        ]
        samples = parse_exposition(get(server.url + "/metrics")[2])
        assert samples["bptwin_healthy"] == 0
        assert samples['bptwin_bus_connected{bus="MqttBus"}'] == 0
        assert get(server.url + "/nothing")[0] == 404
    finally:
        server.stop()
        bus.stop()


def test_health_names_a_store_whose_server_is_gone(tmp_path: Path) -> None:
    config = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", api_version="1", database="x")
    store = InfluxStore(config, tmp_path / "spool.sqlite", retry_initial=0.05, retry_max=0.1)
    try:
        store.write([Reading(1_794_992_400.0 + i, "R1", "do", 40.0, "%") for i in range(5)])
        store.flush(timeout=1)  # fails: nobody listens; the readings stay spooled
        registry = MetricsRegistry()
        registry.watch_store(store)
        registry.reading_received(Reading(1_794_992_400.0, "R1", "do", 40.0, "%"))
        health = registry.health()
        samples = parse_exposition(registry.render())
    finally:
        store.close()
    assert not health.healthy
    assert len(health.problems) == 1
    assert health.problems[0].startswith("store influx link down")
    assert health.problems[0].endswith("5 readings spooled")
    assert samples['bptwin_store_link_ok{store="influx"}'] == 0
    assert samples['bptwin_spool_depth{store="influx"}'] == 5


def test_no_reading_since_start_is_unhealthy_after_the_limit() -> None:
    clock = Clock()
    registry = MetricsRegistry(stale_after_s=30, clock=clock)
    assert registry.health().healthy  # grace period after start
    clock.now += 31
    assert registry.health().problems == ("no reading since start for 31 s (limit 30 s)",)


def test_only_loopback_is_served() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        MetricsServer(MetricsRegistry(), "0.0.0.0", 0)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be a loopback address"):
        MetricsSettings(host="192.168.1.10")
    assert MetricsSettings(host="::1").host == "::1"
    assert MetricsSettings().host == "127.0.0.1"


def test_a_port_in_use_names_the_setting() -> None:
    first = start_metrics_server(MetricsRegistry())
    try:
        with pytest.raises(
            OSError, match=rf"metrics\.port: cannot listen on 127\.0\.0\.1:{first.port}"
        ):
            MetricsServer(MetricsRegistry(), "127.0.0.1", first.port)
    finally:
        first.stop()
