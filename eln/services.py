"""The lab notebook's services: one per aggregate, all over one unit of work (no UI code here).

:class:`NotebookService` bundles them for callers that use several (the CLI, exports, the
station): ``notebook.batches.start_batch(...)``, ``notebook.samples.add_sample(...)``. Every
writing method takes the acting operator's login name first; it must be an active operator (a
few actions need a supervisor). Each call is one transaction, audited by eln.audit. Bad input
raises NotebookValidationError(field, message) in plain words; returned rows are detached
copies, safe to read after the call. Screens do not use this: they get the Notebook protocol
(eln.notebook).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine

from bptwin.database.relational import make_engine
from bptwin.eln.alarm_records import AlarmRecordService
from bptwin.eln.audit_trail import AuditTrailService
from bptwin.eln.batches import BatchService
from bptwin.eln.calibration_records import CalibrationService
from bptwin.eln.calibration_validity import CalibrationPolicy
from bptwin.eln.columns import utc_now
from bptwin.eln.deviations import DeviationService
from bptwin.eln.notes import NoteService
from bptwin.eln.operators import OperatorService
from bptwin.eln.preparation import PreparationService
from bptwin.eln.process_changes import ProcessChangeService
from bptwin.eln.samples import SampleService
from bptwin.eln.signatures import SignatureService
from bptwin.eln.unit_of_work import NotebookUnitOfWork

# Calibrations that must pass (or be overridden by a supervisor) before inoculation, unless
# the service is given another CalibrationPolicy (settings [calibration]).
MANDATORY_CALIBRATIONS = CalibrationPolicy().mandatory_channels


class NotebookService:
    """The lab notebook on one relational store (SQLite or Postgres, already migrated)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        calibration_policy: CalibrationPolicy | None = None,
    ) -> None:
        self.unit = NotebookUnitOfWork(engine, clock=clock, calibration_policy=calibration_policy)
        self.operators = OperatorService(self.unit)
        self.batches = BatchService(self.unit)
        self.preparation = PreparationService(self.unit)
        self.calibrations = CalibrationService(self.unit)
        self.samples = SampleService(self.unit)
        self.deviations = DeviationService(self.unit)
        self.process_changes = ProcessChangeService(self.unit)
        self.notes = NoteService(self.unit)
        self.alarms = AlarmRecordService(self.unit)
        self.audit = AuditTrailService(self.unit)
        self.signatures = SignatureService(self.unit)

    @classmethod
    def from_url(
        cls, url: str, *, calibration_policy: CalibrationPolicy | None = None
    ) -> NotebookService:
        """A service on the (already migrated) database at ``url``; errors are plain."""
        return cls(make_engine(url), calibration_policy=calibration_policy)

    def rebound(
        self, *, engine: Engine | None = None, clock: Callable[[], datetime] | None = None
    ) -> NotebookService:
        """The same rules on another engine or clock (replaying a queued write at its own time,
        checking one without the database)."""
        return NotebookService(
            engine or self.engine,
            clock=clock or self.clock,
            calibration_policy=self.calibration_policy,
        )

    # The store and the clock are the unit of work's: setting them here sets them for every
    # service (a simulated campaign moves the clock along its batches).
    @property
    def engine(self) -> Engine:
        return self.unit.engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self.unit.engine = engine

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.unit.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.unit.clock = clock

    @property
    def calibration_policy(self) -> CalibrationPolicy:
        return self.unit.calibration_policy
