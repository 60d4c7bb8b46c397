"""/metrics and /health of a station: Prometheus text format, health against real stores/bus."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bptwin.database.admission import BUS_ORIGIN, Admission, AdmissionPolicy
from bptwin.database.bus import LocalBus, MqttBus
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.database.timeseries.influx import InfluxStore
from bptwin.database.timeseries.influx_common import InfluxConfig
from bptwin.tui.runtime.health import Health, bus_link, judge, store_link
from bptwin.tui.runtime.prometheus import (
    CONTENT_TYPE,
    MetricsServer,
    StationMetrics,
    start_metrics_server,
)
from bptwin.tui.settings import Settings
from bptwin.tui.settings_ops import MetricsSettings
from tests.fixtures.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1_794_992_400.0

    def __call__(self) -> float:
        return self.now


def parse_exposition(text: str | bytes) -> dict[str, float]:
    """Samples by name and labels, read with prometheus_client's own parser (which refuses
    a malformed exposition), e.g. ``'bptwin_readings_total{channel="do",reactor="R1"}'``."""
    if isinstance(text, bytes):
        text = text.decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(
                '{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"'))
                for k, v in sample.labels.items()
            )
            key = sample.name + (f"{{{labels}}}" if labels else "")
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
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
    metrics = StationMetrics(clock=clock)
    bus = LocalBus()
    bus.start()
    metrics.watch_bus(bus)
    metrics.watch_store(embedded)
    for second in range(3):
        metrics.reading_received(Reading(clock.now + second, "R1", "do", 40.0, "%"))
    metrics.reading_received(Reading(clock.now, "R1", "ph", 5.0, "pH"))
    metrics.reading_received(Reading(clock.now, 'R"2', "ph", 5.0, "pH"))
    clock.now += 7.5
    metrics.observe_prediction_latency(0.003)
    metrics.observe_prediction_latency(0.2)
    metrics.observe_prediction_latency(float("nan"))  # ignored, never crashes a scrape
    metrics.set_alarm_counts({"active_unacknowledged": 2, "normal": 5}, {"critical": 1})
    metrics.set_spool_depth("notebook", 4)
    metrics.add_gauge("bptwin_notify_queue", "Notifications waiting", lambda: 3)
    metrics.add_gauge("bptwin_broken_probe", "Raises", lambda: 1 / 0)  # left out, not fatal
    server = start_metrics_server(metrics)
    try:
        status, content_type, text = get(server.url + "/metrics")
    finally:
        server.stop()
        bus.stop()
    assert status == 200 and content_type == CONTENT_TYPE
    samples = parse_exposition(text)
    assert samples['bptwin_readings_total{channel="do",reactor="R1"}'] == 3
    assert samples['bptwin_readings_total{channel="ph",reactor="R1"}'] == 1
    assert samples['bptwin_readings_total{channel="ph",reactor="R\\"2"}'] == 1
    assert samples['bptwin_last_reading_age_seconds{channel="do",reactor="R1"}'] == 7.5
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
    assert "bptwin_broken_probe" not in samples
    assert not any(key.endswith("_created") for key in samples)


def test_admission_and_first_write_wins_counters_reach_the_metrics(
    embedded: EmbeddedStore,
) -> None:
    clock = Clock()
    admission = Admission(
        AdmissionPolicy(
            reactors=frozenset({"R1"}),
            owners={("R1", "ph"): "probes", ("R1", "do"): "probes"},
            bus_sources=frozenset({"probes"}),
            station_clock_sources=frozenset(),
            clock_fault_after_s=30,
        ),
        clock=clock,
    )
    assert admission.admit(Reading(clock.now, "R1", "ph", 5.0, "pH"), BUS_ORIGIN) is None
    admission.admit(Reading(clock.now, "R9", "ph", 5.0, "pH"), BUS_ORIGIN)  # unknown reactor
    for _ in range(40):  # a gateway an hour ahead, for longer than 30 s: persistent
        clock.now += 1
        admission.admit(Reading(clock.now + 3600, "R1", "do", 40.0, "%"), BUS_ORIGIN)
    embedded.write([Reading(clock.now, "R1", "ph", 5.0, "pH")])
    embedded.write([Reading(clock.now, "R1", "ph", 5.0, "pH")])  # an exact repeat
    embedded.write([Reading(clock.now, "R1", "ph", 6.0, "pH")])  # another value: a conflict
    metrics = StationMetrics(clock=clock)
    metrics.watch_admission(admission)
    metrics.watch_store(embedded)
    samples = parse_exposition(metrics.render())
    assert samples["bptwin_readings_admitted_total"] == 1
    assert samples['bptwin_readings_discarded_total{origin="bus",reason="unknown_reactor"}'] == 1
    assert samples['bptwin_readings_discarded_total{origin="bus",reason="clock_ahead"}'] == 40
    assert samples['bptwin_clock_fault{origin="bus",reactor="R1"}'] == 1
    assert samples['bptwin_store_written_total{store="embedded"}'] == 1
    assert samples['bptwin_store_duplicates_total{store="embedded"}'] == 1
    assert samples['bptwin_store_conflicts_total{store="embedded"}'] == 1
    assert samples['bptwin_store_refused_total{store="embedded"}'] == 0
    assert samples['bptwin_store_kept_aside{store="embedded"}'] == 1


def test_no_admission_watched_means_no_admission_series() -> None:
    samples = parse_exposition(StationMetrics().render())
    assert not any(key.startswith(("bptwin_readings_admitted", "bptwin_clock")) for key in samples)


def test_health_is_503_with_reasons_when_the_bus_is_down_and_readings_stop(
    embedded: EmbeddedStore, mqtt_broker: tuple[str, int]
) -> None:
    clock = Clock()
    settings = Settings()
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port = mqtt_broker
    metrics = StationMetrics(clock=clock)
    bus = MqttBus(*mqtt_broker)
    bus.start()
    metrics.watch_bus(bus)

    def health() -> Health:
        return judge(
            [bus_link(settings, bus), store_link(embedded, None)],
            newest_reading_at=metrics.newest_reading_at(),
            started=metrics.started,
            now=clock(),
            stale_after_s=60,
        )

    metrics.set_health(health)
    server = start_metrics_server(metrics)
    try:
        metrics.reading_received(Reading(clock.now, "R1", "do", 40.0, "%"))
        status, content_type, body = get(server.url + "/health")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {"status": "ok", "problems": []}
        bus.stop()
        status, _, body = get(server.url + "/health")
        where = f"{settings.bus.host}:{settings.bus.port}"
        assert status == 503
        assert json.loads(body) == {
            "status": "degraded",
            "problems": [f"bus link down: broker {where} unreachable; messages kept on disk"],
        }
        clock.now += 61
        status, _, body = get(server.url + "/health")
        assert status == 503
        assert json.loads(body)["status"] == "unhealthy"
        assert json.loads(body)["problems"][1] == "no reading for 61 s (limit 60 s)"
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
        metrics = StationMetrics()
        metrics.watch_store(store)
        link = store_link(store, None)
        health = judge(
            [link], newest_reading_at=metrics.started, started=metrics.started,
            now=metrics.started, stale_after_s=60,
        )  # fmt: skip
        samples = parse_exposition(metrics.render())
    finally:
        store.close()
    assert health.status == "degraded"
    assert len(health.problems) == 1
    assert health.problems[0].startswith("timeseries link down: ")
    assert health.problems[0].endswith("; spooled")
    assert link.waiting == 5
    assert samples['bptwin_store_link_ok{store="influx"}'] == 0
    assert samples['bptwin_spool_depth{store="influx"}'] == 5


def test_no_reading_since_start_is_unhealthy_after_the_limit() -> None:
    def health(now: float) -> Health:
        return judge([], newest_reading_at=None, started=100.0, now=now, stale_after_s=30)

    assert health(120.0).healthy  # grace period after start
    assert health(131.0).problems == ("no reading since start for 31 s (limit 30 s)",)
    assert health(131.0).status == "unhealthy"


def test_only_loopback_is_served() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        MetricsServer(StationMetrics(), "0.0.0.0", 0)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be a loopback address"):
        MetricsSettings(host="192.168.1.10")
    assert MetricsSettings(host="::1").host == "::1"
    assert MetricsSettings().host == "127.0.0.1"


def test_a_port_in_use_names_the_setting() -> None:
    first = start_metrics_server(StationMetrics())
    try:
        with pytest.raises(
            OSError, match=rf"metrics\.port: cannot listen on 127\.0\.0\.1:{first.port}"
        ):
            MetricsServer(StationMetrics(), "127.0.0.1", first.port)
    finally:
        first.stop()
