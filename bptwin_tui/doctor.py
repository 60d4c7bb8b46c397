"""``bptwin doctor``: what a night shift depends on, checked in one go.

Each check returns a :class:`CheckResult` (pass / warn / fail / skip with one line of detail
naming the setting to look at). No check raises: an unexpected error is a failed check.
Checks only read: they never create the notebook, migrate it or write readings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path

from bptwin.tui.settings import Settings

CALIBRATION_DUE_WITHIN = timedelta(hours=24)
DISK_FAIL_BYTES = 200 * 1024**2
DISK_WARN_BYTES = 2 * 1024**3
# One spooled reading takes about this much disk (line protocol plus SQLite overhead).
SPOOLED_READING_BYTES = 200
READINGS_PER_S_PER_REACTOR = 19
SANE_YEARS = (2024, 2100)
CONNECT_TIMEOUT_S = 5.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class DoctorLimits:
    """Thresholds, adjustable for tests and unusual machines."""

    disk_fail_bytes: int = DISK_FAIL_BYTES
    disk_warn_bytes: int = DISK_WARN_BYTES
    calibration_due_within: timedelta = CALIBRATION_DUE_WITHIN


def run_checks(
    settings: Settings,
    *,
    limits: DoctorLimits = DoctorLimits(),
    now: datetime | None = None,
) -> list[CheckResult]:
    """Every check, in the order a person would look."""
    moment = now or datetime.now(tz=timezone.utc)
    checks: list[tuple[str, Callable[[], CheckResult | list[CheckResult]]]] = [
        ("notebook", lambda: check_notebook(settings)),
        ("time series", lambda: check_timeseries(settings)),
        ("kept aside", lambda: check_kept_aside(settings)),
        ("files", lambda: check_files(settings)),
        ("sources", lambda: check_sources(settings)),
        ("broker", lambda: check_broker(settings)),
        ("serial port", lambda: check_serial(settings)),
        ("field bus", lambda: check_fieldbus(settings)),
        ("clock", lambda: check_clock(moment)),
        ("clock sync", check_clock_sync),
        ("spool disk", lambda: check_disk(settings, limits)),
        ("model", lambda: check_model(settings)),
        ("calibrations", lambda: check_calibrations(settings, moment, limits)),
        ("acquisition", lambda: check_acquisition(settings)),
        ("notifications", lambda: check_notifications(settings)),
        ("operator commands", lambda: check_commands(settings)),
    ]
    results: list[CheckResult] = []
    for name, check in checks:
        try:
            outcome = check()
        except Exception as exc:  # a doctor that crashes helps nobody
            outcome = CheckResult(
                name, Status.FAIL, f"unexpected error: {type(exc).__name__}: {exc}"
            )
        results += outcome if isinstance(outcome, list) else [outcome]
    return results


def format_table(results: Sequence[CheckResult]) -> str:
    width = max(len(r.name) for r in results) if results else 5
    lines = [f"{'CHECK':<{width}}  STATUS  DETAIL"]
    for result in results:
        lines.append(f"{result.name:<{width}}  {result.status.value:<6}  {result.detail}")
    counts = {status: sum(r.status is status for r in results) for status in Status}
    lines.append(
        f"{counts[Status.PASS]} passed, {counts[Status.WARN]} warnings, "
        f"{counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped"
    )
    return "\n".join(lines)


def any_failed(results: Sequence[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)


# --- stores and broker -------------------------------------------------------------------


def _sqlite_file(url: str) -> Path | None:
    from bptwin.database.relational import parse_url

    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser()


def check_notebook(settings: Settings) -> list[CheckResult]:
    """Reachable with the configured credentials, schema at head, audit chain intact."""
    from bptwin.database.migrate import current_revision, head_revision
    from bptwin.database.relational import DatabaseUnavailable, describe_url

    url = settings.notebook_url()
    where = describe_url(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        return [
            CheckResult(
                "notebook",
                Status.WARN,
                f"{sqlite_file} does not exist yet (bptwin creates it at start, or run "
                "'bptwin db upgrade')",
            )
        ]
    try:
        revision = current_revision(url)
    except DatabaseUnavailable as exc:
        return [CheckResult("notebook", Status.FAIL, f"notebook.url: {exc}")]
    head = head_revision()
    if revision is None:
        return [CheckResult("notebook", Status.WARN, f"{where} is empty: run 'bptwin db upgrade'")]
    if revision != head:
        return [
            CheckResult(
                "notebook",
                Status.WARN,
                f"{where} is at schema {revision}, this bptwin needs {head}: "
                "run 'bptwin db upgrade'",
            )
        ]
    results = [CheckResult("notebook", Status.PASS, f"{where} reachable, schema {head}")]
    results.append(_check_audit_chain(url))
    return results


def _check_audit_chain(url: str) -> CheckResult:
    from bptwin.eln.services import NotebookService
    from bptwin.eln.text_safety import terminal_safe

    notebook = NotebookService.from_url(url)
    try:
        # With the station's key and anchor when notebook_url() attached them to ``url``.
        report = notebook.audit.verify_trail()
    finally:
        notebook.engine.dispose()
    problems = report.problems()
    if problems:
        broken = report.chain_break
        if broken is not None:
            problems[0] = f"broken at entry {broken.entry_id}: {broken.reason}"
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        return CheckResult(
            "audit chain",
            Status.FAIL,
            terminal_safe(f"{problems[0]}{more} (bptwin audit verify)", single_line=True),
        )
    sealed = f", {report.sealed} sealed" if report.keyed else ""
    return CheckResult(
        "audit chain",
        Status.PASS,
        f"hash chain intact ({report.entries} entries{sealed}), every audited row matches it",
    )


def check_timeseries(settings: Settings) -> CheckResult:
    section = settings.timeseries
    if section.backend == "embedded":
        path = settings.timeseries_path()
        folder = _existing_ancestor(path.parent)
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            return CheckResult(
                "time series", Status.FAIL, f"timeseries.path: {path} is not writable"
            )
        if not path.exists() and not os.access(folder, os.W_OK):
            return CheckResult(
                "time series", Status.FAIL, f"timeseries.path: cannot create {path} ({folder})"
            )
        state = "present" if path.exists() else "created at start"
        return CheckResult("time series", Status.PASS, f"embedded store {path} ({state})")
    from bptwin.database.timeseries import TimeSeriesError
    from bptwin.database.timeseries.influx import InfluxStore
    from bptwin.database.timeseries.influx_common import InfluxConfigError
    from bptwin.tui.runtime.stores import influx_config

    try:
        config = influx_config(section, timeout_s=CONNECT_TIMEOUT_S)
    except InfluxConfigError as exc:
        return CheckResult("time series", Status.FAIL, f"timeseries: {exc}")
    # A throwaway spool: the station's own may be in use by a running acquisition.
    with tempfile.TemporaryDirectory(prefix="bptwin-doctor-") as scratch:
        store = InfluxStore(config, Path(scratch) / "spool.sqlite")
        try:
            version = store.ping()
            store.list_channels()  # a query: proves the credentials and database/bucket
        except TimeSeriesError as exc:
            if "database not found" in str(exc):
                # The store creates its 1.x database at the first write (if the user may).
                return CheckResult(
                    "time series",
                    Status.WARN,
                    f"InfluxDB at {section.url} answers, database {section.database!r} does "
                    "not exist yet: created at the first write if this user may create it",
                )
            return CheckResult("time series", Status.FAIL, f"timeseries: {exc}")
        finally:
            store.close()
    return CheckResult(
        "time series",
        Status.PASS,
        f"InfluxDB {version or '(version unknown)'} at {section.url}, credentials accepted",
    )


def check_files(settings: Settings) -> CheckResult:
    """Every file a setting names (CA bundle, control key, model, replay file) is there."""
    from bptwin.tui.settings import file_settings, missing_files

    configured = [key for key, _ in file_settings(settings)]
    if not configured:
        return CheckResult("files", Status.SKIP, "no file settings configured")
    missing = missing_files(settings)
    if missing:
        return CheckResult("files", Status.FAIL, "; ".join(missing))
    return CheckResult("files", Status.PASS, f"present: {', '.join(configured)}")


def check_broker(settings: Settings) -> CheckResult:
    section = settings.bus
    if section.backend == "local":
        return CheckResult(
            "broker", Status.SKIP, "bus.backend is local (in-process, nothing to reach)"
        )
    if section.ca_file is not None and not section.ca_file.expanduser().exists():
        return CheckResult("broker", Status.FAIL, f"bus.ca_file: {section.ca_file} does not exist")
    from bptwin.database.bus import MqttBus

    bus = MqttBus(
        section.host,
        section.port,
        username=section.username or None,
        password=section.password.get_secret_value() if section.password else None,
        tls=section.tls,
        ca_file=str(section.ca_file) if section.ca_file else None,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        stop_flush_s=1.0,
    )
    try:
        bus.start()
    except ConnectionRefusedError as exc:
        return CheckResult("broker", Status.FAIL, f"bus.username/bus.password: {exc}")
    except OSError as exc:
        return CheckResult("broker", Status.FAIL, f"bus.host/bus.port: {exc}")
    bus.stop()
    tls = bool(section.tls or section.ca_file)
    security = ("TLS" if tls else "no TLS") + (
        f", user {section.username}" if section.username else ", anonymous"
    )
    accepted = f"MQTT broker {section.host}:{section.port} accepted us ({security})"
    # Anyone who may publish can forge readings and try setpoints (which are refused unsigned);
    # without TLS off this host, credentials and readings cross the network in clear text.
    problems = []
    if not section.username:
        problems.append("set bus.username/bus.password and an ACL (docs/control.md)")
    if not tls and section.host not in LOOPBACK_HOSTS:
        problems.append("turn on bus.tls (and bus.ca_file)")
    if problems:
        return CheckResult("broker", Status.WARN, f"{accepted}: {'; '.join(problems)}")
    return CheckResult("broker", Status.PASS, accepted)


def check_kept_aside(settings: Settings) -> CheckResult:
    """Readings the store refused or found in conflict, kept for inspection (never dropped)."""
    import sqlite3

    if settings.timeseries.backend == "embedded":
        path, table = settings.timeseries_path(), "kept_aside"
    else:
        path, table = settings.spool_dir() / "influx.sqlite", "rejected"
    if not path.exists():
        return CheckResult("kept aside", Status.SKIP, f"{path} does not exist yet")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            found = db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()[0]
            count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if found else 0
            reason = (
                db.execute(f"SELECT reason FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
                if count
                else None
            )
    except sqlite3.Error as exc:
        return CheckResult("kept aside", Status.WARN, f"cannot read {path}: {exc}")
    if not count:
        return CheckResult("kept aside", Status.PASS, f"no refused readings in {path}")
    return CheckResult(
        "kept aside",
        Status.WARN,
        f"{count} readings refused or in conflict, kept in {path} (table {table}); "
        f"latest: {str(reason[0])[:120] if reason else '?'}",
    )


def check_sources(settings: Settings) -> CheckResult:
    """The acquisition sources and who owns which channel (a clash is a configuration error)."""
    from bptwin.tui.settings import SettingsError

    try:
        plan = settings.acquisition.plan(
            settings.station.reactors, bus_is_mqtt=settings.bus.backend == "mqtt"
        )
    except SettingsError as exc:
        return CheckResult("sources", Status.FAIL, str(exc))
    return CheckResult("sources", Status.PASS, "; ".join(plan.describe()) or "no source")


def check_serial(settings: Settings) -> CheckResult | list[CheckResult]:
    """Every serial port a source reads (``acquisition.source = "serial"`` or a serial source)."""
    from bptwin.drivers.sources import SerialOptions
    from bptwin.tui.settings import SettingsError

    try:
        plan = settings.acquisition.plan(
            settings.station.reactors, bus_is_mqtt=settings.bus.backend == "mqtt"
        )
    except SettingsError:
        return CheckResult("serial port", Status.SKIP, "see 'sources'")
    serial = [s for s in plan.sources if isinstance(s.options, SerialOptions)]
    if not serial:
        return CheckResult("serial port", Status.SKIP, "no serial source configured")
    results = []
    for source in serial:
        assert isinstance(source.options, SerialOptions)
        key = "acquisition.serial.port" if not settings.acquisition.sources else source.where
        results.append(_check_port(Path(source.options.port), key))
    return results if len(results) > 1 else results[0]


def check_fieldbus(settings: Settings) -> CheckResult | list[CheckResult]:
    """Every OPC UA and Modbus source: reachable, and every node or register readable once."""
    from bptwin.drivers.modbus_source import ModbusOptions, probe_modbus
    from bptwin.drivers.opcua_source import OpcUaOptions, probe_opcua
    from bptwin.tui.settings import SettingsError

    try:
        plan = settings.acquisition.plan(
            settings.station.reactors, bus_is_mqtt=settings.bus.backend == "mqtt"
        )
    except SettingsError:
        return CheckResult("field bus", Status.SKIP, "see 'sources'")
    results = []
    for source in plan.sources:
        options = source.options
        if isinstance(options, OpcUaOptions):
            ok, detail = probe_opcua(options, source.name)
        elif isinstance(options, ModbusOptions):
            ok, detail = probe_modbus(options, source.name)
        else:
            continue
        where = f"{source.where}: " if not ok else ""
        status = Status.PASS if ok else Status.FAIL
        results.append(CheckResult(f"source {source.name}", status, where + detail))
    if not results:
        return CheckResult("field bus", Status.SKIP, "no OPC UA or Modbus source configured")
    return results if len(results) > 1 else results[0]


def _check_port(port: Path, key: str) -> CheckResult:
    if not port.exists():
        return CheckResult("serial port", Status.FAIL, f"{key}: {port} does not exist (cable?)")
    if not os.access(port, os.R_OK | os.W_OK):
        return CheckResult(
            "serial port",
            Status.FAIL,
            f"{key}: {port} exists but this user may not open it (add the user to group 'dialout')",
        )
    return CheckResult("serial port", Status.PASS, f"{port} present and accessible")


# --- this machine ----------------------------------------------------------------------------


def check_clock(now: datetime) -> CheckResult:
    low, high = SANE_YEARS
    stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    if not low <= now.year < high:
        return CheckResult(
            "clock", Status.FAIL, f"system clock says {stamp}: set the time (RTC battery?)"
        )
    return CheckResult("clock", Status.PASS, stamp)


def check_clock_sync(run: Callable[[list[str]], tuple[int, str]] | None = None) -> CheckResult:
    """NTP synchronisation from timedatectl or chronyc; skipped (with why) if neither answers."""
    run = run or _run_command
    tried = []
    if shutil.which("timedatectl"):
        code, out = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        if code == 0 and out.strip() in {"yes", "no"}:
            if out.strip() == "yes":
                return CheckResult("clock sync", Status.PASS, "NTP synchronised (timedatectl)")
            return CheckResult(
                "clock sync",
                Status.WARN,
                "NTP not synchronised (timedatectl): timestamps may drift from other machines",
            )
        tried.append("timedatectl did not answer (no systemd?)")
    if shutil.which("chronyc"):
        code, out = run(["chronyc", "-n", "tracking"])
        if code == 0 and "Leap status" in out:
            if "Not synchronised" in out:
                return CheckResult("clock sync", Status.WARN, "chrony is not synchronised")
            return CheckResult("clock sync", Status.PASS, "synchronised (chronyc tracking)")
        tried.append("chronyc did not answer")
    if not tried:
        tried.append("neither timedatectl nor chronyc is installed")
    return CheckResult("clock sync", Status.SKIP, "; ".join(tried))


def _run_command(command: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return done.returncode, done.stdout


def _existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(settings: Settings, limits: DoctorLimits) -> CheckResult:
    spool = settings.spool_dir()
    where = _existing_ancestor(spool)
    free = shutil.disk_usage(where).free
    rate = READINGS_PER_S_PER_REACTOR * len(settings.station.reactors) * SPOOLED_READING_BYTES
    days = free / rate / 86_400
    detail = f"{free / 1024**3:.1f} GiB free for {spool} (~{days:,.0f} days of spooled readings)"
    if free < limits.disk_fail_bytes:
        return CheckResult("spool disk", Status.FAIL, detail + ": free some space")
    if free < limits.disk_warn_bytes:
        return CheckResult("spool disk", Status.WARN, detail)
    return CheckResult("spool disk", Status.PASS, detail)


# --- model and notebook contents -------------------------------------------------------------


def check_model(settings: Settings) -> CheckResult:
    from bptwin.twin.features import FEATURE_NAMES
    from bptwin.twin.registry import ModelError, check_feature_names, load_model

    try:
        artifact = load_model(settings.model.path, data_dir=settings.data_dir, check=False)
        check_feature_names(artifact.card.feature_names, FEATURE_NAMES)
        artifact.check_features(FEATURE_NAMES)
    except ModelError as exc:
        return CheckResult("model", Status.FAIL, f"model.path: {exc}")
    detail = (
        f"{artifact.version} loaded ({len(artifact.card.feature_names)} features, "
        f"matches the pipeline) from {artifact.path}"
    )
    warning = artifact.pipeline_warning()
    if warning:
        return CheckResult("model", Status.WARN, warning)
    return CheckResult("model", Status.PASS, detail)


def check_calibrations(settings: Settings, now: datetime, limits: DoctorLimits) -> CheckResult:
    """The newest calibration of each mandatory channel: present, passed, not (nearly) expired."""
    from bptwin.database.migrate import current_revision, head_revision
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService

    mandatory = settings.calibration.policy().mandatory_channels
    url = settings.notebook_url()
    sqlite_file = _sqlite_file(url)
    try:
        if sqlite_file is not None and not sqlite_file.exists():
            raise DatabaseUnavailable("no notebook yet")
        if current_revision(url) != head_revision():
            raise DatabaseUnavailable("notebook schema not current")
    except DatabaseUnavailable as exc:
        return CheckResult("calibrations", Status.SKIP, f"cannot read the notebook ({exc})")
    notebook = NotebookService.from_url(url)
    problems, next_due = [], None
    try:
        for channel in mandatory:
            found = notebook.calibrations.list_calibrations(channel=channel, limit=1)
            if not found:
                problems.append(f"{channel} never calibrated")
                continue
            latest = found[0]
            if not latest.passed and not latest.override_reason:
                problems.append(f"{channel} failed on {latest.performed_at:%Y-%m-%d}")
            elif latest.valid_until is not None:
                until = latest.valid_until
                if until < now:
                    problems.append(f"{channel} expired {until:%Y-%m-%d %H:%M}")
                elif until < now + limits.calibration_due_within:
                    problems.append(f"{channel} due {until:%Y-%m-%d %H:%M}")
                next_due = until if next_due is None else min(next_due, until)
    finally:
        notebook.engine.dispose()
    if problems:
        return CheckResult("calibrations", Status.WARN, "; ".join(problems))
    due = f", next due {next_due:%Y-%m-%d %H:%M} UTC" if next_due else ""
    return CheckResult("calibrations", Status.PASS, f"{', '.join(mandatory)} current{due}")


def check_acquisition(settings: Settings) -> list[CheckResult]:
    """Whether an acquisition runs for each reactor (information: serve should be running)."""
    from bptwin.tui.runtime.acquisition_lock import acquisition_owner
    from bptwin.tui.settings import SettingsError

    results = []
    for reactor in settings.station.reactors:
        name = f"acquisition {reactor}"
        try:
            owner = acquisition_owner(settings, reactor, timeout_s=CONNECT_TIMEOUT_S)
        except SettingsError as exc:
            results.append(CheckResult(name, Status.SKIP, f"cannot tell: {exc}"))
            continue
        if owner is None:
            results.append(
                CheckResult(name, Status.WARN, "no acquisition running (start 'bptwin serve')")
            )
        else:
            results.append(CheckResult(name, Status.PASS, f"running on {owner.describe()}"))
    return results


def check_notifications(settings: Settings) -> CheckResult:
    section = getattr(settings, "notify", None)
    if section is None or not section.configured:
        return CheckResult(
            "notifications", Status.SKIP, "none configured ([notify] in docs/operations.md)"
        )
    channels = []
    if section.webhook_url:
        channels.append("webhook")
    if section.mqtt_topic:
        if settings.bus.backend != "mqtt":
            return CheckResult(
                "notifications",
                Status.WARN,
                "notify.mqtt_topic is set but bus.backend is local: nobody outside sees it",
            )
        channels.append(f"MQTT {section.mqtt_topic}")
    if section.smtp.configured:
        channels.append(f"mail via {section.smtp.host}")
    return CheckResult(
        "notifications",
        Status.PASS,
        f"{section.min_priority} alarms go to {', '.join(channels)} "
        "('bptwin doctor --notify-test' sends a test)",
    )


def check_commands(settings: Settings) -> CheckResult:
    """The operators' command key: can viewers of this station acknowledge and shelve?"""
    from bptwin.tui.runtime.wiring import load_command_key
    from bptwin.twin.setpoints import ControlKeyError

    name = "operator commands"
    if settings.commands.key_file is None:
        if settings.bus.backend != "mqtt":
            return CheckResult(name, Status.SKIP, "no MQTT bus: no viewers to take commands from")
        return CheckResult(
            name,
            Status.WARN,
            "commands.key_file is not set: viewers of this station cannot acknowledge or shelve "
            "alarms (docs/operations.md)",
        )
    try:
        load_command_key(settings)
    except ControlKeyError as exc:
        return CheckResult(name, Status.FAIL, str(exc))
    return CheckResult(
        name,
        Status.PASS,
        f"key {settings.commands.key_file} usable: viewers may send signed alarm actions",
    )
