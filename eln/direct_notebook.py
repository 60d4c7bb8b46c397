"""The Notebook protocol (eln.notebook) on a NotebookService: reads come back as frozen views,
writes are made at once. eln.write_queue.SpooledNotebook is this with queued writes.

Each protocol method is one line below: the service method it forwards to (its signature, and
the type checker's, is that method's) and the frozen view its row becomes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from bptwin.eln.alarm_records import AlarmRecordService
from bptwin.eln.calibration_records import CalibrationService
from bptwin.eln.calibration_validity import CalibrationPolicy, ValidityPeriod
from bptwin.eln.deviations import DeviationService
from bptwin.eln.models import CalibrationRecord
from bptwin.eln.notebook import CalibrationPeriod, Notebook
from bptwin.eln.notes import NoteService
from bptwin.eln.preparation import PreparationService
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
    ViewT,
    view_of,
)
from bptwin.eln.samples import SampleService
from bptwin.eln.services import NotebookService

P = ParamSpec("P")
Result = TypeVar("Result")
Shown = TypeVar("Shown")

# Writes that may wait: the caller needs no answer from the database to go on. The names are
# what a queue file stores, so they stay as they are.
DEFERRABLE_WRITES: Mapping[str, Callable[[NotebookService], Callable[..., Any]]] = {
    "record_alarm_event": lambda service: service.alarms.record_alarm_event,
    "add_note": lambda service: service.notes.add_note,
    "add_sample": lambda service: service.samples.add_sample,
    "log_deviation": lambda service: service.deviations.log_deviation,
    "record_calibration": lambda service: service.calibrations.record_calibration,
    "record_media_preparation": lambda service: service.preparation.record_media_preparation,
}


def _read(
    method: Callable[[NotebookService], Callable[P, Result]],
    shown: Callable[[Result], Shown],
) -> Callable[Concatenate[DirectNotebook, P], Shown]:
    """A protocol method that calls the service's ``method`` and hands back ``shown(result)``
    (a frozen view instead of a row)."""

    def call(self: DirectNotebook, /, *args: P.args, **kwargs: P.kwargs) -> Shown:
        return shown(method(self.service)(*args, **kwargs))

    return call


def _deferrable(
    name: str,
    method: Callable[Concatenate[Any, P], Result],
    shown: Callable[[Result], Shown],
) -> Callable[Concatenate[DirectNotebook, P], Shown]:
    """A protocol method for the write ``DEFERRABLE_WRITES[name]``, made through
    ``DirectNotebook._write`` (which the store-and-forward notebook queues)."""
    signature = inspect.signature(method)

    def call(self: DirectNotebook, /, *args: P.args, **kwargs: P.kwargs) -> Shown:
        arguments = signature.bind(None, *args, **kwargs).arguments
        del arguments["self"]
        return shown(self._write(name, arguments))

    call.__doc__ = method.__doc__
    return call


def _views(view: type[ViewT]) -> Callable[[list[Any]], list[ViewT]]:
    return lambda rows: [view_of(view, row) for row in rows]


def _view_or_none(view: type[ViewT]) -> Callable[[Any], ViewT | None]:
    return lambda row: None if row is None else view_of(view, row)


def _view(view: type[ViewT]) -> Callable[[Any], ViewT]:
    return lambda row: view_of(view, row)


def _period(period: ValidityPeriod[CalibrationRecord]) -> CalibrationPeriod:
    return ValidityPeriod(
        view_of(CalibrationView, period.record), period.valid_from, period.valid_to, period.ended_by
    )


def _period_or_none(period: ValidityPeriod[CalibrationRecord] | None) -> CalibrationPeriod | None:
    return None if period is None else _period(period)


def _periods(periods: list[ValidityPeriod[CalibrationRecord]]) -> list[CalibrationPeriod]:
    return [_period(period) for period in periods]


def _same(result: Result) -> Result:
    return result


class DirectNotebook(Notebook):
    """The lab notebook for screens, on one NotebookService; errors pass through as they are."""

    def __init__(self, service: NotebookService) -> None:
        self.service = service

    @property
    def calibration_policy(self) -> CalibrationPolicy:
        return self.service.calibration_policy

    def now(self) -> datetime:
        return self.service.clock()

    def close(self) -> None:
        self.service.engine.dispose()

    def _write(self, name: str, arguments: dict[str, Any]) -> Any:
        """A write that may wait for the database (``DEFERRABLE_WRITES``): made at once here,
        queued while the database is away by the store-and-forward notebook."""
        return DEFERRABLE_WRITES[name](self.service)(**arguments)

    list_operators = _read(lambda s: s.operators.list_operators, _views(OperatorView))
    create_operator = _read(lambda s: s.operators.create_operator, _view(OperatorView))
    authenticate = _read(lambda s: s.operators.authenticate, _view(OperatorView))
    check_pin = _read(lambda s: s.operators.check_pin, _same)

    list_batches = _read(lambda s: s.batches.list_batches, _views(BatchView))
    get_batch = _read(lambda s: s.batches.get_batch, _view(BatchView))
    create_batch = _read(lambda s: s.batches.create_batch, _view(BatchView))
    start_batch = _read(lambda s: s.batches.start_batch, _view(BatchView))
    end_batch = _read(lambda s: s.batches.end_batch, _view(BatchView))
    get_closure = _read(lambda s: s.batches.get_closure, _view_or_none(ClosureView))
    close_batch = _read(lambda s: s.batches.close_batch, _view(ClosureView))
    sign_off_batch = _read(lambda s: s.batches.sign_off_batch, _view(ClosureView))
    amend_closure = _read(lambda s: s.batches.amend_closure, _view(ClosureView))
    list_media_preparations = _read(
        lambda s: s.preparation.list_media_preparations, _views(MediaPreparationView)
    )
    record_media_preparation = _deferrable(
        "record_media_preparation",
        PreparationService.record_media_preparation,
        _view(MediaPreparationView),
    )
    list_process_changes = _read(
        lambda s: s.process_changes.list_process_changes, _views(ProcessChangeView)
    )
    plan_process_change = _read(
        lambda s: s.process_changes.plan_process_change, _view(ProcessChangeView)
    )
    approve_process_change = _read(
        lambda s: s.process_changes.approve_process_change, _view(ProcessChangeView)
    )
    list_signatures = _read(lambda s: s.signatures.list_signatures, _views(SignatureView))
    get_inoculum = _read(lambda s: s.preparation.get_inoculum, _view_or_none(InoculumView))
    record_inoculum = _read(lambda s: s.preparation.record_inoculum, _view(InoculumView))

    calibration_blockers = _read(lambda s: s.calibrations.calibration_blockers, _same)
    calibration_in_force = _read(lambda s: s.calibrations.calibration_in_force, _period_or_none)
    calibration_history = _read(lambda s: s.calibrations.calibration_history, _periods)
    record_calibration = _deferrable(
        "record_calibration", CalibrationService.record_calibration, _view(CalibrationView)
    )

    list_samples = _read(lambda s: s.samples.list_samples, _views(SampleView))
    sample_schedule = _read(lambda s: s.samples.sample_schedule, _same)
    add_sample = _deferrable("add_sample", SampleService.add_sample, _view(SampleView))

    list_deviations = _read(lambda s: s.deviations.list_deviations, _views(DeviationView))
    log_deviation = _deferrable(
        "log_deviation", DeviationService.log_deviation, _view(DeviationView)
    )
    review_deviation = _read(lambda s: s.deviations.review_deviation, _view(DeviationView))
    list_notes = _read(lambda s: s.notes.list_notes, _views(NoteView))
    add_note = _deferrable("add_note", NoteService.add_note, _view(NoteView))

    list_alarm_events = _read(lambda s: s.alarms.list_alarm_events, _views(AlarmEventView))
    # The station's alarm path writes here (not a screen's: not in the protocol).
    record_alarm_event = _deferrable(
        "record_alarm_event", AlarmRecordService.record_alarm_event, _view(AlarmEventView)
    )
