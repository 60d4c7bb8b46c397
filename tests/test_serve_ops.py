"""What ``bptwin serve`` offers operations: Prometheus metrics and health on loopback, and
critical alarms notified beyond the screen, wired through the real station."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bptwin.database.reading import Reading
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings
from tests.fixtures.servers import free_port
from tests.test_metrics_endpoint import get, parse_exposition
from tests.test_notify import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


def test_serve_exposes_metrics_and_health_of_a_running_acquisition(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(tmp_path),
        "BPTWIN_ACQUISITION__SPEED": "120",
        # A simulation under the real reactor name (the test reads "R1").
        "BPTWIN_ACQUISITION__SIMULATED_REACTOR_PREFIX": "",
        "BPTWIN_METRICS__ENABLED": "true",
        "BPTWIN_METRICS__PORT": str(port),
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "serve", "--duration", "60"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        samples: dict[str, float] = {}
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                status, content_type, body = get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                time.sleep(0.5)
                continue
            samples = parse_exposition(body)
            readings = sum(v for k, v in samples.items() if k.startswith("bptwin_readings_total"))
            if readings >= 100:
                break
            time.sleep(0.5)
        assert status == 200 and content_type.startswith("text/plain")
        assert sum(v for k, v in samples.items() if k.startswith("bptwin_readings_total")) >= 100
        assert 'bptwin_readings_total{channel="do",reactor="R1"}' in samples
        assert "bptwin_bus_outbox_depth" in samples and "bptwin_inputs_rejected" in samples
        health_status, _, health = get(f"http://127.0.0.1:{port}/health")
        assert health_status == 200, health
    finally:
        serve.terminate()
        output, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, output
    assert f"metrics on http://127.0.0.1:{port}/metrics" in output


def test_a_critical_alarm_of_the_station_reaches_the_webhook(tmp_path: Path) -> None:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.source = "none"
    settings.alarms = {
        "ph": {"type": "limit", "source": "ph", "hi": 5.1, "priority": "critical", "on_delay_s": 0},
    }
    with WebhookReceiver() as webhook:
        settings.notify.webhook_url = webhook.url
        station = Station(settings)
        station.start()
        try:
            assert station.bus is not None and station.notifier is not None
            now = time.time()
            for second in range(5):
                station.bus.publish_reading(
                    Reading(now + second, "R1", "ph", 5.6, "pH"), prefix=settings.bus.prefix
                )
            assert webhook.arrived.wait(20), "no notification reached the webhook"
            assert station.notifier.wait_idle(10)
        finally:
            station.stop()
    _, payload = webhook.requests[0]
    text = str(payload)
    assert "R1" in text and "critical" in text
    samples = parse_exposition(station.metrics.render())
    assert samples['bptwin_readings_total{channel="ph",reactor="R1"}'] == 5
