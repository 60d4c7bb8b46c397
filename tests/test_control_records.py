"""Every recommendation, actuation and confirmation leaves an audited ControlAction row.

Runs on SQLite and on the real Postgres (fixture notebook_url).
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from bptwin.database.bus import LocalBus
from bptwin.eln import control_service
from bptwin.eln.control_records import ControlActionKind
from bptwin.eln.errors import NotebookPermissionError, NotebookValidationError
from bptwin.eln.models import CampaignPhase
from bptwin.eln.services import NotebookService
from bptwin.twin.actuation import (
    Actuator,
    ControlAuthorisation,
    ControlKey,
    ControlMode,
    ControlSettings,
)
from bptwin.twin.control import AdvisoryController, Setpoints
from tests.control_states import make_state
from tests.fixtures.notebook import staffed_notebook

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def notebook(engine: Engine) -> NotebookService:
    service = staffed_notebook(engine)
    service.batches.create_batch("ana", 7, CampaignPhase.B, reactor_id="R1")
    return service


def audit_of(notebook: NotebookService, row_id: int):
    return notebook.audit.audit_trail(table_name="control_action", record_id=row_id)


def test_recommendations_and_actuations_are_audited_rows(notebook: NotebookService) -> None:
    controller = AdvisoryController()
    bus = LocalBus()
    settings = ControlSettings(mode=ControlMode.CLOSED_LOOP, enabled=True)
    state = make_state(0, 24.0, rpm=600.0)
    actuator = Actuator(bus, "R1", settings, clock=lambda: state.end, key=ControlKey.generate())

    # Without confirmation: recommended, refused, both on record.
    (rec,) = controller.update(state, Setpoints(600.0))
    row = control_service.record_recommendation(notebook, **rec.to_dict(), mode=1, batch_number=7)
    refused = actuator.actuate(rec)
    refusal = control_service.record_actuation(notebook, **refused.audit_fields(), batch_number=7)

    # The supervisor confirms (name, PIN, role checked); now it is sent.
    grant_row = control_service.record_authorisation(
        notebook, "sam", "4321", reactor="R1", minutes=30, batch_number=7
    )
    actuator.authorise(
        ControlAuthorisation(
            grant_row.supervisor or "",
            "R1",
            grant_row.occurred_at.timestamp(),
            grant_row.valid_until.timestamp() if grant_row.valid_until else 0.0,
        )
    )
    actuator.clock = lambda: grant_row.occurred_at.timestamp() + 60
    sent = actuator.actuate(rec)
    assert sent.sent, sent.reason
    sent_row = control_service.record_actuation(notebook, **sent.audit_fields(), batch_number=7)

    rows = control_service.list_control_actions(notebook, reactor="R1", batch_number=7)
    assert len(rows) == 4
    by_id = {r.id: r for r in rows}
    stored = by_id[row.id]
    assert stored.kind == ControlActionKind.RECOMMENDATION
    assert (stored.parameter, stored.current_value, stored.value) == ("stirrer_speed", 600.0, 650.0)
    assert "DO 24.0 %" in stored.reason and stored.rule == "do_low_stirrer_up"
    assert stored.occurred_at.timestamp() == pytest.approx(state.end)
    assert by_id[refusal.id].sent is False and "supervisor" in (by_id[refusal.id].refusal or "")
    assert by_id[sent_row.id].sent is True and by_id[sent_row.id].supervisor == "sam"
    assert by_id[sent_row.id].topic == "bptwin/v1/R1/setpoints/stirrer_speed"
    grant = by_id[grant_row.id]
    assert grant.kind == ControlActionKind.AUTHORISATION and grant.supervisor == "sam"
    assert grant.valid_until is not None
    assert (grant.valid_until - grant.occurred_at).total_seconds() == pytest.approx(1800)

    # Each row has its audit entry, written by the right actor; the chain holds.
    for item in (row, refusal, sent_row):
        (entry,) = audit_of(notebook, item.id)
        assert entry.actor == "system" and entry.action.value == "insert"
        assert entry.after["reason"] == by_id[item.id].reason
    (entry,) = audit_of(notebook, grant_row.id)
    assert entry.actor == "sam"
    assert notebook.audit.verify_audit_chain() is None


def test_only_a_supervisor_with_the_right_pin_may_confirm(notebook: NotebookService) -> None:
    with pytest.raises(NotebookPermissionError, match="supervisor"):
        control_service.record_authorisation(notebook, "ana", "1234", reactor="R1")
    with pytest.raises(NotebookPermissionError, match="wrong PIN"):
        control_service.record_authorisation(notebook, "sam", "0000", reactor="R1")
    with pytest.raises(NotebookValidationError, match="confirmation minutes"):
        control_service.record_authorisation(notebook, "sam", "4321", reactor="R1", minutes=0)
    assert control_service.list_control_actions(notebook) == []


def test_revocation_and_machine_values_are_kept(notebook: NotebookService) -> None:
    revoked = control_service.record_revocation(notebook, "ana", reactor="R1", reason="probe swap")
    assert revoked.kind == ControlActionKind.REVOCATION and revoked.reason == "probe swap"
    odd = control_service.record_recommendation(
        notebook,
        reactor="R1",
        parameter="o2_flow",
        current=float("nan"),
        recommended=0.02,
        unit="L/min",
        reason="x" * 5000,
        rule="do_low_o2_up",
        confidence=None,
    )
    assert odd.current_value is None and len(odd.reason) == 2000
    kinds = [r.kind for r in control_service.list_control_actions(notebook, reactor="R1")]
    assert sorted(k.value for k in kinds) == ["recommendation", "revocation"]
    only = control_service.list_control_actions(notebook, kind="revocation")
    assert [r.id for r in only] == [revoked.id]
    with pytest.raises(NotebookValidationError, match="batch"):
        control_service.record_recommendation(
            notebook,
            reactor="R1",
            parameter="o2_flow",
            current=0.0,
            recommended=0.02,
            unit="L/min",
            reason="r",
            rule="do_low_o2_up",
            batch_number=99,
        )
