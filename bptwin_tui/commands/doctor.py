"""``bptwin doctor``: a pass/warn/fail table of what acquisition depends on; exit 1 on a fail."""

from __future__ import annotations

import argparse
import socket
from datetime import datetime, timezone

from bptwin.tui.doctor import CheckResult, Status, any_failed, format_table, run_checks
from bptwin.tui.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check stores, broker, serial port, clock, disk, model and calibrations",
        description=(
            "Check what a night shift depends on: notebook and time-series store reachable "
            "with the configured credentials, MQTT broker, serial port, clock and NTP, free "
            "disk for the spool, the model against the feature pipeline, calibrations due, "
            "whether an acquisition runs. Prints a table; exit status 1 if any check failed."
        ),
    )
    parser.add_argument(
        "--notify-test",
        action="store_true",
        help="also send a test notification on every configured channel ([notify])",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    print(f"bptwin doctor: station {settings.station.name} on {socket.gethostname()}")
    results = run_checks(settings)
    if args.notify_test:
        results += send_test_notification(settings)
    from bptwin.eln.text_safety import terminal_safe

    # Details quote what servers and files said (a refused line's reason, a source's name).
    print(terminal_safe(format_table(results)))
    return 1 if any_failed(results) else 0


def send_test_notification(settings: Settings, timeout_s: float = 60.0) -> list[CheckResult]:
    """One test message per configured channel, no retries; a result per channel."""
    from bptwin.tui.runtime.notifications import Notification
    from bptwin.tui.settings_ops import notifier_from_settings

    section = getattr(settings, "notify", None)
    if section is None or not section.configured:
        return [CheckResult("notify test", Status.SKIP, "no notification channel configured")]
    bus = None
    if section.mqtt_topic and settings.bus.backend == "mqtt":
        from bptwin.tui.runtime.wiring import build_bus

        bus = build_bus(settings)
        try:
            bus.start()
        except OSError as exc:
            return [CheckResult("notify test", Status.FAIL, f"bus.host/bus.port: {exc}")]
    publish = (lambda topic, payload: bus.publish(topic, payload, qos=1)) if bus else None
    notifier = notifier_from_settings(
        section.model_copy(update={"retries": 0}), publish=publish, station=settings.station.name
    )
    if notifier is None:
        return [CheckResult("notify test", Status.SKIP, "no channel usable without an MQTT bus")]
    moment = datetime.now(tz=timezone.utc).isoformat(timespec="seconds")
    notifier.start()
    try:
        notifier.notify(
            Notification(
                subject=f"[bptwin TEST] {settings.station.name}: notification test",
                body=f"A test from 'bptwin doctor --notify-test' at {moment}. No alarm.\n",
                payload={"test": True, "station": settings.station.name, "at": moment},
            )
        )
        finished = notifier.wait_idle(timeout_s)
    finally:
        notifier.stop(timeout=1.0)
        if bus is not None:
            bus.stop()
    results = []
    for name, stats in notifier.stats.channels.items():
        if stats.sent:
            results.append(CheckResult("notify test", Status.PASS, f"{name}: sent"))
        elif not finished and stats.last_error is None:
            results.append(CheckResult("notify test", Status.FAIL, f"{name}: no answer"))
        else:
            results.append(CheckResult("notify test", Status.FAIL, f"{stats.last_error}"))
    return results
