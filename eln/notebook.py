"""The seam between the screens and the lab notebook: the :class:`Notebook` protocol.

Screens see the notebook only through this protocol: every record comes back as a frozen view
(eln.records), never as a database row, and every refusal as a NotebookError (eln.errors) in
plain words. Values typed into a form may be handed over as text (``NumberInput``): the notebook
parses and checks them. It is implemented by eln.direct_notebook.DirectNotebook (writes made at
once) and eln.write_queue.SpooledNotebook (writes that may wait are queued on disk while the
database is away, and NotebookWriteQueued says so). Nothing here imports SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bptwin.eln.calibration_validity import CalibrationPolicy, ValidityPeriod
from bptwin.eln.closure_entry import ClosureEntry
from bptwin.eln.form_rules import NumberInput, WholeNumberInput
from bptwin.eln.records import (
    AlarmEventView,
    BatchView,
    CalibrationView,
    ClosureView,
    DeviationView,
    InoculumView,
    MediaPreparationView,
    NoteView,
    OperatorView,
    ProcessChangeView,
    SampleView,
    SignatureView,
)
from bptwin.eln.schedule import SampleSlot
from bptwin.eln.states import BatchStatus, CampaignPhase, OperatorRole

if TYPE_CHECKING:
    from typing_extensions import Unpack

CalibrationPeriod = ValidityPeriod[CalibrationView]


class Notebook(Protocol):
    """The lab notebook as the screens use it. Every write takes the acting operator first."""

    @property
    def calibration_policy(self) -> CalibrationPolicy:
        """Which calibrations must pass before a batch starts, and how long each is valid."""
        ...

    def now(self) -> datetime:
        """The notebook's "now" (timezone-aware UTC); forms default their times to it."""
        ...

    def close(self) -> None:
        """Let go of what the notebook holds (connections; a queue stays on disk)."""
        ...

    # ---- operators -------------------------------------------------------------------------

    def list_operators(self) -> list[OperatorView]: ...

    def create_operator(
        self, actor: str, name: str, role: OperatorRole | str, pin: str, display_name: str = ""
    ) -> OperatorView:
        """Register an operator (a supervisor does it; the very first one is a supervisor)."""
        ...

    def authenticate(self, name: str, pin: str) -> OperatorView:
        """The operator for a login; one message for every failure."""
        ...

    def check_pin(self, name: str, pin: str) -> bool:
        """True when ``name`` is an active operator and ``pin`` is theirs."""
        ...

    # ---- batches ---------------------------------------------------------------------------

    def list_batches(self, status: BatchStatus | str | None = None) -> list[BatchView]:
        """Batches, newest number first, optionally only those in one status."""
        ...

    def get_batch(self, number: int) -> BatchView: ...

    def create_batch(
        self,
        actor: str,
        number: WholeNumberInput,
        phase: CampaignPhase | str,
        *,
        strain: str = "",
        medium_lot: str = "",
        vessel: str = "",
        reactor_id: str = "",
        operator: str | None = None,
        notes: str = "",
    ) -> BatchView:
        """A new batch in setup; ``operator`` (the responsible person) defaults to the actor."""
        ...

    def start_batch(
        self,
        actor: str,
        number: int,
        *,
        inoculated_at: datetime | None = None,
        override_reason: str | None = None,
    ) -> BatchView:
        """Inoculate; refused while calibrations or the inoculum block it, unless a supervisor
        gives the reason."""
        ...

    def end_batch(
        self,
        actor: str,
        number: int,
        *,
        aborted: bool = False,
        ended_at: datetime | None = None,
        reason: str | None = None,
    ) -> BatchView:
        """End the running batch (complete), or abort it (running or in setup) with a reason."""
        ...

    def get_closure(self, number: int) -> ClosureView | None: ...

    def close_batch(self, actor: str, number: int, **entry: Unpack[ClosureEntry]) -> ClosureView:
        """The closure record of an ended batch; fewer than the SOP's 8 samples need a reason."""
        ...

    def sign_off_batch(self, actor: str, number: int, *, pin: str) -> ClosureView:
        """A supervisor closes the batch by signing its closure record (PIN checked now)."""
        ...

    def amend_closure(
        self, actor: str, number: int, *, pin: str, reason: str, **changes: object
    ) -> ClosureView:
        """Correct a closure record under a new supervisor's signature (the reason is kept;
        an earlier signature stays, superseded)."""
        ...

    # ---- media and process changes --------------------------------------------------------

    def list_media_preparations(self, number: int) -> list[MediaPreparationView]: ...

    def record_media_preparation(
        self,
        actor: str,
        number: int,
        *,
        recipe: Mapping[str, float],
        autoclave_cycle: str = "",
        sterility_ok: bool | None = None,
        prepared_at: datetime | None = None,
        notes: str = "",
    ) -> MediaPreparationView:
        """The medium made up for a batch: ingredient -> amount, autoclave cycle, sterility."""
        ...

    def list_process_changes(self, number: int) -> list[ProcessChangeView]: ...

    def plan_process_change(
        self,
        actor: str,
        number: int,
        *,
        parameter: str,
        old_value: str,
        new_value: str,
        planned_at: datetime,
        reason: str = "",
    ) -> ProcessChangeView:
        """A planned parameter change; it takes effect once a supervisor approves it."""
        ...

    def approve_process_change(self, actor: str, change_id: int, *, pin: str) -> ProcessChangeView:
        """A supervisor approves a planned change by signing it (PIN checked now)."""
        ...

    # ---- signatures -------------------------------------------------------------------------

    def list_signatures(
        self,
        *,
        batch_number: int | None = None,
        table_name: str | None = None,
        record_id: int | None = None,
    ) -> list[SignatureView]:
        """Electronic signatures (superseded ones too), oldest first."""
        ...

    def get_inoculum(self, number: int) -> InoculumView | None: ...

    def record_inoculum(
        self,
        actor: str,
        number: int,
        *,
        od600_raw: NumberInput,
        dilution: NumberInput = 1.0,
        volume_ml: NumberInput,
        microscopy_clean: bool,
        notes: str = "",
        out_of_spec_reason: str | None = None,
    ) -> InoculumView:
        """The batch's one inoculum; out of spec only with a reason (then no-go, level 3)."""
        ...

    # ---- calibrations ----------------------------------------------------------------------

    def calibration_blockers(self, number: int) -> list[tuple[str, str]]:
        """(channel, why) for each mandatory calibration that blocks starting the batch."""
        ...

    def calibration_in_force(
        self, channel: str, at: datetime, *, batch_number: int | None = None
    ) -> CalibrationPeriod | None:
        """The calibration ``channel``'s readings at ``at`` are traced to, if any."""
        ...

    def calibration_history(
        self, channel: str, *, batch_number: int | None = None, limit: int = 100
    ) -> list[CalibrationPeriod]:
        """The channel's calibrations, newest first, each with the interval it was in force."""
        ...

    def record_calibration(
        self,
        actor: str,
        *,
        channel: str,
        kind: str,
        measured: Mapping[str, Any],
        results: Mapping[str, Any],
        passed: bool,
        batch_number: int | None = None,
        performed_at: datetime | None = None,
        valid_until: datetime | None = None,
        notes: str = "",
        override_reason: str | None = None,
        override_pin: str | None = None,
    ) -> CalibrationView:
        """A calibration result; a failed one is accepted only by a supervisor's reason, signed
        with their PIN."""
        ...

    # ---- samples ---------------------------------------------------------------------------

    def list_samples(self, number: int) -> list[SampleView]: ...

    def sample_schedule(
        self, number: int, *, depleted_at: datetime | None = None
    ) -> list[SampleSlot]:
        """The SOP sampling slots of a running or ended batch and their status now."""
        ...

    def add_sample(
        self,
        actor: str,
        number: int,
        *,
        taken_at: datetime,
        od_raw: NumberInput | None = None,
        dilution: NumberInput = 1.0,
        sop_timepoint_h: NumberInput | None = None,
        dcw_g_per_l: NumberInput | None = None,
        filter_tare_mg: NumberInput | None = None,
        filter_dry_mg: NumberInput | None = None,
        filter_volume_ml: NumberInput | None = None,
        microscopy_clean: bool | None = None,
        microscopy_text: str = "",
        glycerol_g_per_l: NumberInput | None = None,
        predicted_od600: float | None = None,
    ) -> SampleView:
        """An offline sample; OD600 = reading × dilution, DCW from filter weights if given.
        A sample needs an OD600 reading, a dry weight, or both."""
        ...

    # ---- deviations and notes --------------------------------------------------------------

    def list_deviations(self, number: int) -> list[DeviationView]: ...

    def log_deviation(
        self,
        actor: str,
        number: int,
        *,
        level: WholeNumberInput,
        category: str,
        title: str,
        description: str = "",
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        impact: str = "",
        root_cause: str = "",
        corrective_action: str = "",
    ) -> DeviationView:
        """A deviation, level 1 (minor), 2 (major) or 3 (critical); it starts open."""
        ...

    def review_deviation(
        self,
        actor: str,
        deviation_id: int,
        *,
        root_cause: str | None = None,
        corrective_action: str | None = None,
        impact: str | None = None,
        close: bool = False,
        pin: str,
    ) -> DeviationView:
        """Review (and optionally close) a deviation, signed by the reviewer's PIN; levels 2 and
        3 need a supervisor."""
        ...

    def list_notes(self, number: int) -> list[NoteView]: ...

    def add_note(self, actor: str, number: int, text: str) -> NoteView: ...

    # ---- alarms ----------------------------------------------------------------------------

    def list_alarm_events(
        self, *, reactor: str | None = None, batch_number: int | None = None, limit: int = 200
    ) -> list[AlarmEventView]:
        """Alarm transitions stored in the notebook, newest first."""
        ...
