"""Alarm actions from every control room: two viewers of a real ``bptwin serve``.

``bptwin serve`` runs the engine (a gateway source on a private Mosquitto, so the test can make
pH high); two viewers attach as ``bptwin run`` does. The operator in viewer 1 acknowledges on
the alarm screen: the engine carries it out once (a replay of the same command changes
nothing), both viewers show the acknowledgement and the notebook records the operator. With the
engine stopped or killed, the viewer refuses the action at once with a visible reason; with an
engine that does not answer, it says so after ``[commands] timeout_s``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from bptwin.database.bus import MqttBus
from bptwin.database.migrate import upgrade
from bptwin.eln.services import NotebookService
from bptwin.screens.alarms import AlarmScreen, ShelveScreen
from bptwin.tui.app import BptwinApp
from bptwin.tui.runtime.acquisition_lock import AcquisitionOwner, acquisition_owner
from bptwin.tui.runtime.viewer import ViewerStation, station_for
from bptwin.tui.settings import Settings
from bptwin.twin.alarms import AlarmState, AlarmView
from bptwin.twin.commands import CommandRefused
from bptwin.twin.setpoints import ControlKey
from tests.adversarial.harness import Outsider, wait_for
from tests.fixtures.mqtt import MosquittoServer

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "viewercmd"
PH_ALARM = "R1/ph/hi"


def viewer_settings(tmp_path: Path, broker: tuple[str, int], operator: str = "") -> Settings:
    settings = Settings()
    settings.station.data_dir = tmp_path / "station"
    settings.station.operator = operator
    settings.bus.backend = "mqtt"
    settings.bus.host, settings.bus.port = broker
    settings.bus.prefix = PREFIX
    settings.commands.key_file = tmp_path / "commands.key"
    settings.commands.timeout_s = 20.0  # a loaded machine: the engine answers well within this
    settings.ui.refresh_s = 0.2
    return settings


@pytest.fixture
def serve(private_mqtt_broker: MosquittoServer, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """``bptwin serve`` with a gateway source for R1 and the operators' command key."""
    ControlKey.generate().write(tmp_path / "commands.key")
    host, port = private_mqtt_broker.address
    settings = viewer_settings(tmp_path, (host, port))
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    notebook.operators.create_operator("setup", "vera", "supervisor", "2468")
    notebook.engine.dispose()
    environment = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(settings.data_dir),
        "BPTWIN_BUS__BACKEND": "mqtt",
        "BPTWIN_BUS__HOST": host,
        "BPTWIN_BUS__PORT": str(port),
        "BPTWIN_BUS__PREFIX": PREFIX,
        "BPTWIN_ACQUISITION__SOURCES": '[{"name": "gateway", "kind": "bptwin"}]',
        "BPTWIN_COMMANDS__KEY_FILE": str(tmp_path / "commands.key"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "serve"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    log = tmp_path / "serve.log"
    try:
        # The claim comes before the subscriptions: wait for the whole start, as logged.
        assert wait_for(lambda: "acquisition running for R1" in log.read_text(), timeout=90), (
            log.read_text()
        )
        assert acquisition_owner(settings, "R1") is not None
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """``wait_for`` that lets the App run meanwhile (its screens follow the snapshots)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(0.1)
    return condition()


def ph_alarm(alarms: list[AlarmView] | tuple[AlarmView, ...]) -> AlarmView | None:
    return next((view for view in alarms if view.alarm_id == PH_ALARM), None)


class Recorder:
    """Every message on a topic pattern, as a bystander on the broker sees it."""

    def __init__(self, broker: tuple[str, int], pattern: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.bus = MqttBus(*broker)
        self.bus.subscribe(pattern, self._on, qos=1)
        self.bus.start()

    def _on(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.messages.append((topic, bytes(payload)))

    def taken(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)


async def test_an_operator_in_a_viewer_acknowledges_and_every_viewer_sees_it(
    serve: subprocess.Popen, private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    broker = private_mqtt_broker.address
    second = station_for(viewer_settings(tmp_path, broker))
    assert isinstance(second, ViewerStation)
    second.start()
    commands = Recorder(broker, f"{PREFIX}/v1/+/commands/#")
    outsider = Outsider(broker, PREFIX)
    app = BptwinApp(viewer_settings(tmp_path, broker, operator="vera"), station_factory=station_for)
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            for _ in range(300):
                if isinstance(app.station, ViewerStation) and app.station.bus is not None:
                    break
                await pilot.pause(0.2)
            first = app.station
            assert isinstance(first, ViewerStation) and first.owner.pid == serve.pid

            # The engine in serve raises pH high from the gateway's readings (45 s at 5.5).
            now = time.time()
            for second_of in range(46):
                outsider.reading("R1", "ph", now - 45 + second_of, 5.5)
            outsider.flush()
            for viewer in (first, second):
                assert await until(
                    pilot, lambda v=viewer: ph_alarm(v.board.active_alarms()) is not None
                )

            # Viewer 1: the alarm screen's acknowledge goes to the engine and comes back.
            await pilot.press("a")
            for _ in range(50):
                if isinstance(app.screen, AlarmScreen) and app.screen.alarms:
                    break
                await pilot.pause(0.2)
            screen = app.screen
            assert isinstance(screen, AlarmScreen)
            assert screen.selected() is not None and screen.selected().alarm_id == PH_ALARM  # type: ignore[union-attr]
            # The screen's own action (its key may change; what it does is under test here).
            await app.run_action("screen.acknowledge")
            detail = screen.query_one("#alarm-detail", Static)
            for _ in range(200):
                if "sending" not in str(detail.content):
                    break
                await pilot.pause(0.2)
            assert str(detail.content).startswith(f"Acknowledged {PH_ALARM}."), detail.content
            assert not detail.has_class("-error")

            # Both viewers show the engine's transition, with the operator's name.
            for viewer in (first, second):

                def acknowledged(v: ViewerStation = viewer) -> bool:
                    view = ph_alarm(v.board.active_alarms())
                    return view is not None and view.state is AlarmState.ACTIVE_ACK

                assert await until(pilot, acknowledged)
                view = ph_alarm(viewer.snapshot().alarms)
                assert view is not None and view.acknowledged_by == "vera"

            # The same signed command again (a replay, or a redelivery): nothing happens twice.
            sent = [(t, p) for t, p in commands.taken() if t.endswith("/commands/alarm")]
            assert len(sent) == 1 and b'"actor":"vera"' in sent[0][1]
            outsider.raw(*sent[0])
            outsider.flush()
            assert await until(
                pilot, lambda: b'"duplicate":true' in b"".join(p for _, p in commands.taken())
            )
            assert first.notebook is not None

            def acknowledgements() -> list[str | None]:
                assert first.notebook is not None
                events = first.notebook.alarms.list_alarm_events(reactor="R1")
                return [e.actor for e in events if e.state == "active_acknowledged"]

            assert await until(pilot, lambda: acknowledgements() == ["vera"]), acknowledgements()

            # The engine stops (systemctl stop): the viewer refuses, saying why.
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
            assert await until(pilot, lambda: first.engines["R1"].state != "running")
            await app.run_action("screen.shelve")
            for _ in range(50):
                if isinstance(app.screen, ShelveScreen):
                    break
                await pilot.pause(0.1)
            await pilot.press(*"probe swap", "ctrl+s")
            for _ in range(100):
                if "engine unreachable" in str(detail.content):
                    break
                await pilot.pause(0.1)
            assert "engine unreachable: the acquisition on" in str(detail.content)
            assert "is stopped; nothing was sent" in str(detail.content)
            assert detail.has_class("-error")
            await pilot.press("escape", "q")
    finally:
        outsider.close()
        commands.bus.stop()
        second.stop()


def test_an_engine_that_does_not_answer_is_shown_as_unreachable(
    private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    """A claim says 'running' (e.g. a hung engine) but nothing answers: refused after the wait."""
    ControlKey.generate().write(tmp_path / "commands.key")
    settings = viewer_settings(tmp_path, private_mqtt_broker.address)
    settings.commands.timeout_s = 1.0
    hung = AcquisitionOwner("R1", "edge-pc", 4242, station="lab")
    viewer = ViewerStation(settings, hung)
    viewer.start()
    try:
        assert wait_for(lambda: viewer.bus is not None and viewer.bus.connected)
        with pytest.raises(CommandRefused, match=r"engine unreachable: no answer from edge-pc"):
            viewer.alarm_actions.acknowledge(PH_ALARM, "vera")
        assert viewer.alarm_actions.sent == 1
    finally:
        viewer.stop()


def test_a_viewer_without_the_command_key_refuses_naming_the_setting(
    private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    settings = viewer_settings(tmp_path, private_mqtt_broker.address)
    settings.commands.key_file = None
    viewer = ViewerStation(settings, AcquisitionOwner("R1", "edge-pc", 4242))
    viewer.start()
    try:
        with pytest.raises(CommandRefused, match=r"\[commands\] key_file"):
            viewer.alarm_actions.shelve(PH_ALARM, "vera", "probe swap", time.time() + 600)
        assert viewer.alarm_actions.sent == 0
    finally:
        viewer.stop()


def test_an_engine_killed_mid_run_is_refused_at_once_as_offline(
    serve: subprocess.Popen, private_mqtt_broker: MosquittoServer, tmp_path: Path
) -> None:
    """SIGKILL (a crash, a power cut): the claim's will says offline; nothing is sent."""
    viewer = station_for(viewer_settings(tmp_path, private_mqtt_broker.address))
    assert isinstance(viewer, ViewerStation)
    viewer.start()
    try:
        assert wait_for(lambda: viewer.bus is not None and viewer.bus.connected)
        serve.send_signal(signal.SIGKILL)
        serve.wait(timeout=30)
        assert wait_for(lambda: viewer.engines["R1"].state == "offline")
        with pytest.raises(CommandRefused, match=r"engine unreachable: .* is offline"):
            viewer.alarm_actions.acknowledge(PH_ALARM, "vera")
        assert viewer.alarm_actions.sent == 0
    finally:
        viewer.stop()
