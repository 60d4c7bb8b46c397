"""``bptwin doctor``: each check against the real thing, the table and the exit status."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from bptwin.database.migrate import upgrade
from bptwin.eln.services import NotebookService
from bptwin.tui.commands import doctor as doctor_command
from bptwin.tui.doctor import (
    CheckResult,
    DoctorLimits,
    Status,
    check_broker,
    check_calibrations,
    check_clock,
    check_clock_sync,
    check_disk,
    check_model,
    check_notebook,
    check_serial,
    check_timeseries,
    format_table,
    run_checks,
)
from bptwin.tui.runtime.acquisition_lock import acquire_acquisition_lock
from bptwin.tui.settings import Settings
from bptwin.tui.settings_ops import MetricsSettings, NotifySettings
from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary
from tests.fixtures.servers import free_port, port_open, server_missing

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=timezone.utc)


class OpsSettings(Settings):
    """Settings as the lead will extend them (metrics and notify sections)."""

    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)


def settings_for(tmp_path: Path, **sections: Any) -> Settings:
    return OpsSettings.model_validate({"station": {"data_dir": tmp_path}, **sections})


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def migrated_notebook(tmp_path: Path) -> NotebookService:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    notebook.operators.create_operator("setup", "anna", "supervisor", "4711")
    return notebook


def test_fresh_station_has_no_failure_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path)
    results = by_name(run_checks(settings, limits=DoctorLimits(0, 0), now=NOW))
    assert results["notebook"].status is Status.WARN
    assert "does not exist yet" in results["notebook"].detail
    assert results["time series"].status is Status.PASS
    assert results["broker"].status is Status.SKIP
    assert results["serial port"].status is Status.SKIP
    assert results["clock"].status is Status.PASS
    assert results["spool disk"].status is Status.PASS
    assert results["model"].status is Status.PASS, results["model"].detail
    assert "matches the pipeline" in results["model"].detail
    assert results["calibrations"].status is Status.SKIP
    assert results["acquisition R1"].status is Status.WARN
    assert results["notifications"].status is Status.SKIP
    assert results["files"].status is Status.SKIP  # no file setting configured
    assert not (tmp_path / "notebook.sqlite").exists()  # the doctor only looks
    assert doctor_command.handle(argparse.Namespace(notify_test=False), settings) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["CHECK", "STATUS", "DETAIL"]
    assert "0 failed" in out.splitlines()[-1]


def test_any_failure_exits_1_and_the_table_names_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(
        tmp_path,
        bus={"backend": "mqtt", "host": "127.0.0.1", "port": free_port()},
        timeseries={"backend": "influxdb", "url": f"http://127.0.0.1:{free_port()}"},
        acquisition={"source": "serial", "serial": {"port": str(tmp_path / "ttyUSB9")}},
    )
    assert doctor_command.handle(argparse.Namespace(notify_test=False), settings) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert " fail " in lines["broker"] and "bus.host/bus.port" in lines["broker"]
    assert " fail " in lines["time"] and "timeseries: InfluxDB at" in lines["time"]
    assert " fail " in lines["serial"] and "ttyUSB9 does not exist" in lines["serial"]


def test_missing_configured_files_are_named_by_their_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every path setting is checked; a missing CA bundle names bus.ca_file, no traceback."""
    from bptwin.tui.settings import CREATED_PATHS, file_settings

    missing = tmp_path / "nowhere"
    settings = settings_for(
        tmp_path,
        bus={"backend": "mqtt", "host": "127.0.0.1", "port": free_port(), "tls": True,
             "ca_file": str(missing / "ca.crt")},
        control={"key_file": str(missing / "control.key")},
        model={"path": str(missing / "card.json")},
        acquisition={"replay_file": str(missing / "batch.parquet")},
    )  # fmt: skip
    # The walk finds every Path setting of the model except those bptwin creates itself.
    assert [key for key, _ in file_settings(settings)] == [
        "bus.ca_file",
        "acquisition.replay_file",
        "model.path",
        "control.key_file",
    ]
    assert {"station.data_dir", "timeseries.path"} == CREATED_PATHS
    assert doctor_command.handle(argparse.Namespace(notify_test=False), settings) == 1
    out = capsys.readouterr().out
    assert "FileNotFoundError" not in out and "unexpected error" not in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:-1]}
    for key in ("bus.ca_file", "control.key_file", "model.path", "acquisition.replay_file"):
        assert f"{key}: {missing}" in lines["files"], key
    assert f"bus.ca_file: {missing / 'ca.crt'} does not exist" in lines["broker"]
    assert "bus.ca_file" in lines["acquisition"]


def test_present_configured_files_pass(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("")
    settings = settings_for(tmp_path, bus={"ca_file": str(tmp_path / "ca.crt")})
    results = by_name(run_checks(settings, limits=DoctorLimits(0, 0), now=NOW))
    assert results["files"].status is Status.PASS
    assert "bus.ca_file" in results["files"].detail


def test_broker_with_wrong_password_names_the_credentials(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        server_missing("mosquitto is not installed, so no broker with passwords can start")
    with MosquittoServer(tmp_path / "mosquitto", users={"bptwin": "right"}) as broker:
        bus = {"backend": "mqtt", "host": broker.host, "port": broker.port, "username": "bptwin"}
        wrong = check_broker(settings_for(tmp_path, bus={**bus, "password": "wrong"}))
        right = check_broker(settings_for(tmp_path, bus={**bus, "password": "right"}))
    assert wrong.status is Status.FAIL
    assert wrong.detail.startswith("bus.username/bus.password:") and "refused" in wrong.detail
    assert "wrong" not in wrong.detail  # no secret in the output
    assert right.status is Status.PASS and "user bptwin" in right.detail


def test_postgres_that_refuses_the_role_fails_naming_the_url(tmp_path: Path) -> None:
    if not port_open("127.0.0.1", 5432):
        server_missing("no Postgres on 127.0.0.1:5432")
    url = "postgresql://no_such_role_bptwin:pw@127.0.0.1:5432/postgres"
    (result,) = check_notebook(settings_for(tmp_path, notebook={"url": url}))
    assert result.status is Status.FAIL
    assert result.detail.startswith("notebook.url: cannot reach the database")
    assert "no_such_role_bptwin" in result.detail and ":pw@" not in result.detail


def test_influxdb_reachable_with_credentials(
    tmp_path: Path, influx_url: str, influx_database: str
) -> None:
    section = {
        "backend": "influxdb",
        "url": influx_url,
        "api_version": "1",
        "database": influx_database,
    }
    settings = settings_for(tmp_path, timeseries=section)
    not_yet = check_timeseries(settings)
    assert not_yet.status is Status.WARN and "does not exist yet" in not_yet.detail
    query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{influx_database}"'})
    urllib.request.urlopen(
        urllib.request.Request(f"{influx_url}/query?{query}", method="POST"), timeout=10
    ).close()
    result = check_timeseries(settings)
    assert result.status is Status.PASS, result.detail
    assert "credentials accepted" in result.detail


def test_notebook_schema_and_a_tampered_audit_chain(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    notebook = migrated_notebook(tmp_path)
    notebook.operators.create_operator("anna", "ben", "operator", "1234")
    notebook.engine.dispose()
    results = by_name(check_notebook(settings))
    assert results["notebook"].status is Status.PASS
    assert results["audit chain"].status is Status.PASS
    with sqlite3.connect(tmp_path / "notebook.sqlite") as db:
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entry'"
        ).fetchall():
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE audit_entry SET actor = 'mallory' WHERE id = 2")
    broken = by_name(check_notebook(settings))["audit chain"]
    assert broken.status is Status.FAIL and broken.detail.startswith("broken at entry 2")


def test_calibrations_due_expired_failed_and_missing_are_named(tmp_path: Path) -> None:
    notebook = migrated_notebook(tmp_path)

    def calibrate(channel: str, passed: bool, valid_for: timedelta | None) -> None:
        notebook.calibrations.record_calibration(
            "anna",
            channel=channel,
            kind="two_point",
            measured={"a": 1.0},
            results={"slope": 1.0},
            passed=passed,
            performed_at=NOW - timedelta(days=2),
            valid_until=None if valid_for is None else NOW + valid_for,
        )

    calibrate("ph", True, timedelta(days=5))
    calibrate("do", True, timedelta(hours=-1))  # expired an hour ago
    calibrate("offgas_o2", False, None)
    settings = settings_for(tmp_path)
    result = check_calibrations(settings, NOW, DoctorLimits())
    assert result.status is Status.WARN
    assert result.detail == (
        "do expired 2026-11-24 00:00; offgas_o2 failed on 2026-11-22; offgas_co2 never calibrated"
    )
    calibrate("do", True, timedelta(hours=3))
    calibrate("offgas_o2", True, timedelta(days=30))
    calibrate("offgas_co2", True, timedelta(days=30))
    assert check_calibrations(settings, NOW, DoctorLimits()).detail == "do due 2026-11-24 04:00"
    result = check_calibrations(settings, NOW, DoctorLimits(calibration_due_within=timedelta(0)))
    assert result.status is Status.PASS
    assert result.detail.endswith("next due 2026-11-24 04:00 UTC")
    notebook.engine.dispose()


def test_model_that_does_not_match_the_pipeline_fails(tmp_path: Path) -> None:
    from bptwin.twin.registry import load_model

    shipped = load_model(None, check=False).path
    assert shipped is not None
    copy = tmp_path / "model"
    shutil.copytree(shipped, copy)
    card = json.loads((copy / "card.json").read_text())
    card["feature_names"] = card["feature_names"][:-1]
    (copy / "card.json").write_text(json.dumps(card))
    result = check_model(settings_for(tmp_path, model={"path": str(copy)}))
    assert result.status is Status.FAIL
    assert result.detail.startswith("model.path: model does not match the feature pipeline")
    missing = check_model(settings_for(tmp_path, model={"path": str(tmp_path / "none")}))
    assert missing.status is Status.FAIL and "not found" in missing.detail


def test_clock_and_sync() -> None:
    assert check_clock(datetime(2001, 1, 1, tzinfo=timezone.utc)).status is Status.FAIL
    assert check_clock(NOW).status is Status.PASS
    # On this machine: a real answer, or a skip that says why.
    real = check_clock_sync()
    assert real.status in {Status.PASS, Status.WARN, Status.SKIP} and real.detail
    if shutil.which("timedatectl"):
        unsynced = check_clock_sync(lambda command: (0, "no\n"))
        assert unsynced.status is Status.WARN and "not synchronised" in unsynced.detail


def test_disk_thresholds(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert check_disk(settings, DoctorLimits(0, 0)).status is Status.PASS
    assert check_disk(settings, DoctorLimits(0, 1 << 62)).status is Status.WARN
    full = check_disk(settings, DoctorLimits(1 << 62, 1 << 62))
    assert full.status is Status.FAIL and "free some space" in full.detail
    assert "days of spooled readings" in full.detail


def test_serial_port_present(tmp_path: Path) -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        port = os.ttyname(follower)
        section = {"source": "serial", "serial": {"port": port}}
        result = check_serial(settings_for(tmp_path, acquisition=section))
    finally:
        os.close(leader)
        os.close(follower)
    assert result.status is Status.PASS and port in result.detail


def test_running_acquisition_is_reported(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with acquire_acquisition_lock(settings, "R1"):
        result = by_name(run_checks(settings, limits=DoctorLimits(0, 0), now=NOW))
    assert result["acquisition R1"].status is Status.PASS
    assert "running on" in result["acquisition R1"].detail


def test_notify_test_sends_on_the_configured_webhook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_notify import WebhookReceiver

    with WebhookReceiver() as receiver:
        settings = settings_for(tmp_path, notify={"webhook_url": receiver.url})
        doctor_command.handle(argparse.Namespace(notify_test=True), settings)
    out = capsys.readouterr().out
    assert any(" pass " in line and "webhook" in line for line in out.splitlines())
    assert receiver.requests[0][1]["test"] is True
    with_dead_hook = settings_for(
        tmp_path, notify={"webhook_url": f"http://127.0.0.1:{free_port()}/x"}
    )
    (failed,) = doctor_command.send_test_notification(with_dead_hook)
    assert failed.status is Status.FAIL and "unreachable" in failed.detail


def test_table_format() -> None:
    table = format_table(
        [CheckResult("broker", Status.FAIL, "x"), CheckResult("clock", Status.PASS, "y")]
    )
    assert table.splitlines() == [
        "CHECK   STATUS  DETAIL",
        "broker  fail    x",
        "clock   pass    y",
        "1 passed, 0 warnings, 1 failed, 0 skipped",
    ]


def test_serve_with_a_missing_ca_file_names_the_setting(tmp_path: Path) -> None:
    from bptwin.tui.runtime.wiring import build_bus
    from bptwin.tui.settings import SettingsError

    settings = settings_for(tmp_path, bus={"backend": "mqtt", "ca_file": str(tmp_path / "ca")})
    with pytest.raises(SettingsError, match=r"^bus\.ca_file: .*ca does not exist$"):
        build_bus(settings)
    with pytest.raises(SettingsError, match=r"^bus\.ca_file: "):
        acquire_acquisition_lock(settings, "R1")
    # Refused before the local lock was taken: the reactor is free for the next start.
    acquire_acquisition_lock(settings_for(tmp_path), "R1").release()
