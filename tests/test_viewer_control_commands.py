"""A supervisor confirms closed-loop control from a viewer; the engine takes it (or says no).

The engine is a station on the real broker in closed-loop mode (enabled, with its setpoint
key); the viewer attaches to it with the operators' command key. The viewer checks the PIN and
stores the confirmation in the notebook; the engine reads the row back (supervisor, reactor,
expiry, the supervisor's role) before its actuator takes it. Stopping control from the viewer
is recorded with the operator's name.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from sqlmodel import select

from bptwin.eln.control_service import list_control_actions, record_authorisation
from bptwin.eln.errors import NotebookPermissionError
from bptwin.eln.models import AuditEntry
from bptwin.eln.services import NotebookService
from bptwin.tui.runtime.acquisition_lock import acquisition_owner
from bptwin.tui.runtime.station import Station
from bptwin.tui.runtime.viewer import ViewerStation
from bptwin.tui.settings import Settings
from bptwin.twin.commands import AUTHORISE, CommandRefused, ControlCommand
from bptwin.twin.setpoints import ControlKey
from tests.adversarial.harness import Outsider, running, station_settings, unique_prefix, wait_for

pytestmark = pytest.mark.mqtt


def engine_settings(tmp_path: Path, broker: tuple[str, int], *, mode: int) -> Settings:
    settings = station_settings(tmp_path / "station", broker, unique_prefix())
    settings.commands.key_file = tmp_path / "commands.key"
    settings.control.mode = mode  # type: ignore[assignment]
    settings.control.enabled = mode == 1
    settings.control.key_file = tmp_path / "control.key"
    return settings


def attach(station: Station, settings: Settings) -> ViewerStation:
    owner = acquisition_owner(settings, "R1")
    assert owner is not None and owner.pid == os.getpid()
    viewer = ViewerStation(settings, owner)
    viewer.start()
    assert wait_for(lambda: viewer.bus is not None and viewer.bus.connected)
    return viewer


def audit_actor(notebook: NotebookService, row: int | None) -> str:
    """Who wrote control_action ``row``, as the audit trail has it."""
    with notebook.unit.read() as session:
        entry = session.exec(
            select(AuditEntry).where(
                AuditEntry.table_name == "control_action", AuditEntry.record_id == str(row)
            )
        ).one()
    return entry.actor


def with_keys(tmp_path: Path) -> ControlKey:
    ControlKey.generate().write(tmp_path / "control.key")
    key = ControlKey.generate()
    key.write(tmp_path / "commands.key")
    return key


def test_a_supervisor_confirms_control_in_a_viewer_and_the_engine_takes_it(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    key = with_keys(tmp_path)
    settings = engine_settings(tmp_path, mqtt_broker, mode=1)
    with running(settings) as station:
        assert station.notebook is not None and station.control is not None
        notebook = station.notebook.service
        notebook.operators.create_operator("setup", "vera", "supervisor", "2468")
        notebook.operators.create_operator("vera", "otto", "operator", "1357")
        actuator = station.control.actuators["R1"]
        assert actuator.authorisation is None
        viewer = attach(station, settings)
        try:
            # A wrong PIN and an operator's confirmation are refused here: nothing is sent.
            with pytest.raises(NotebookPermissionError):
                viewer.control.authorise("vera", "0000", "R1")
            with pytest.raises(NotebookPermissionError, match="needs a supervisor"):
                viewer.control.authorise("otto", "1357", "R1")
            assert viewer.commands.sent == 0

            taken = viewer.control.authorise("vera", "2468", "R1")
            assert taken.supervisor == "vera" and taken.expires_at > time.time() + 3000
            authorisation = actuator.authorisation
            assert authorisation is not None and authorisation.supervisor == "vera"
            assert authorisation.expires_at == pytest.approx(taken.expires_at, abs=1)
            assert actuator.active

            # A key holder names another's confirmation as an operator's own: refused.
            veras = record_authorisation(notebook, "vera", "2468", reactor="R1", minutes=60)
            assert veras.id is not None
            outsider = Outsider(mqtt_broker, settings.bus.prefix)
            try:
                forged = ControlCommand.new(
                    "R1", AUTHORISE, "otto", lifetime_s=10, authorisation_id=veras.id
                )
                outsider.raw(*forged.message(settings.bus.prefix, key))
                outsider.flush()
            finally:
                outsider.close()
            commands = station.runtime.commands  # type: ignore[union-attr]
            assert commands is not None
            assert wait_for(lambda: commands.refused_counts().get("not_supervisor") == 1)

            # Any operator may stop it from the viewer; the notebook names who.
            viewer.control.revoke("otto", "R1")
            assert actuator.authorisation is None and not actuator.active
            revocations = list_control_actions(notebook, reactor="R1", kind="revocation")
            assert [row.reason for row in revocations] == ["closed-loop control ended"]
            assert audit_actor(notebook, revocations[0].id) == "otto"
            assert json.dumps(commands.refused_counts()) == '{"not_supervisor": 1}'
        finally:
            viewer.stop()


def test_an_advisory_engine_refuses_the_confirmation_and_the_notebook_says_so(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    with_keys(tmp_path)
    settings = engine_settings(tmp_path, mqtt_broker, mode=0)
    with running(settings) as station:
        assert station.notebook is not None and station.control is not None
        notebook = station.notebook.service
        notebook.operators.create_operator("setup", "vera", "supervisor", "2468")
        viewer = attach(station, settings)
        try:
            with pytest.raises(CommandRefused, match="advisory"):
                viewer.control.authorise("vera", "2468", "R1")
        finally:
            viewer.stop()
        assert station.control.actuators["R1"].authorisation is None
        kinds = [row.kind.value for row in list_control_actions(notebook, reactor="R1")]
        assert kinds == ["revocation", "authorisation"]  # stored, then marked as not taken
