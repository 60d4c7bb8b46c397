"""A dataset batch replayed by the station: its recording, the re-base onto the station clock,
its process constants for the features, and its offline samples into the notebook.

Every replay source whose file is a dataset folder (``[[acquisition.sources]]`` of kind
``replay`` with ``file``, ``batch``, ``notebook_batch``; or ``[acquisition] source = "replay"``
with ``replay_file``, ``replay_batch``, ``replay_notebook_batch``) gets a session when the
runtime is built: the batch is loaded (the folder's only batch when none is named) and re-based
onto the station clock (first row now, or for a fast replay so that nothing is stamped in the
future). When the station starts, the session is lined up with the inoculation of its notebook
batch if that batch was started early enough (:func:`line_up_replays`). Its samples are
recorded in that batch by ``station.operator`` at their re-based times as the replay reaches
them, each as a notebook sample with its SOP time point: one with an OD600 (and a dry weight
if it has one), or one with only a dry weight (a lab without a photometer). A sample the
notebook refuses (one with neither) is counted and shown as the source's problem.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bptwin.tui.settings import SettingsError

if TYPE_CHECKING:
    from bptwin.drivers.base import Driver
    from bptwin.drivers.replay import LoadedReplay, RecordedBatch, RecordedSample, ReplayDriver
    from bptwin.drivers.sources import AcquisitionPlan, PlannedSource, ReplayOptions
    from bptwin.eln.notebook import Notebook
    from bptwin.tui.runtime.clock import StationClock
    from bptwin.tui.runtime.wiring import Runtime
    from bptwin.twin.features import FeatureConfig
    from bptwin.twin.history import History
    from bptwin.twin.live import LatestValues

log = logging.getLogger(__name__)


class ReplaySession:
    """What the station needs to replay one dataset batch (see the module docstring)."""

    def __init__(
        self,
        source: PlannedSource,
        recording: RecordedBatch,
        offset: float,
        *,
        operator: str,
        history: History | None = None,
        latest: LatestValues | None = None,
    ) -> None:
        self.source = source
        self.reactor = source.reactors[0]
        self.recording = recording
        self.offset = offset
        self.operator = operator
        self.history = history
        self.latest = latest
        self.notebook: Notebook | None = None
        self.clock: StationClock | None = None  # the station's, once lined up
        self.driver: ReplayDriver | None = None  # the source's driver, once built
        self.recorded = 0
        self.refused = 0

    @property
    def options(self) -> ReplayOptions:
        from bptwin.drivers.sources import ReplayOptions

        options = self.source.options
        assert isinstance(options, ReplayOptions)
        return options

    @property
    def notebook_batch(self) -> int | None:
        return self.options.notebook_batch

    @classmethod
    def from_source(
        cls,
        source: PlannedSource,
        *,
        operator: str,
        history: History | None = None,
        latest: LatestValues | None = None,
        now: float | None = None,
    ) -> ReplaySession | None:
        """The session when ``source`` replays a dataset folder, else None; SettingsError
        names the setting that cannot work."""
        from bptwin.drivers.replay import RecordedBatch, ReplayError, rebase_offset
        from bptwin.drivers.sources import ReplayOptions
        from bptwin.twin.dataset import DatasetError, read_manifest

        options = source.options
        if not isinstance(options, ReplayOptions):
            return None
        path = Path(options.file)
        if not path.is_dir():
            for key, value in (
                ("batch", options.batch),
                ("notebook_batch", options.notebook_batch),
            ):
                if value is not None:
                    raise SettingsError(
                        f"{source.setting(key)}: {source.key_name('file')} {path} is not a "
                        "dataset folder"
                    )
            return None
        number = options.batch
        if number is None:
            try:
                numbers = [record.number for record in read_manifest(path).batches]
            except DatasetError as exc:
                raise SettingsError(f"{source.setting('file')}: {exc}") from None
            if len(numbers) != 1:
                raise SettingsError(
                    f"{source.setting('batch')}: {path} holds batches {numbers}; say which to "
                    "replay"
                )
            number = numbers[0]
        try:
            recording = RecordedBatch.from_dataset(path, number, reactor=source.reactors[0])
        except ReplayError as exc:
            raise SettingsError(f"{source.setting('batch')}: {exc}") from None
        offset = rebase_offset(recording, options.speed, now)
        return cls(source, recording, offset, operator=operator, history=history, latest=latest)

    @property
    def loaded(self) -> LoadedReplay:
        """The recording as the source's driver takes it (drivers/sources.py)."""
        from bptwin.drivers.replay import LoadedReplay

        return LoadedReplay(self.recording, self.offset, self.on_sample)

    def feature_config(self, constants: dict[str, Any]) -> FeatureConfig:
        """The station's constants, overridden by the batch's own, with its samples re-based."""
        from bptwin.twin.carbon_balance import samples_with_dry_weight
        from bptwin.twin.process_inputs import feature_config

        samples = self.recording.samples
        times = [sample.timestamp + self.offset for sample in samples]
        dry = samples_with_dry_weight(times, [sample.dcw_g_l for sample in samples])
        try:
            return feature_config(
                {**constants, **self.recording.process}, sample_times=times, dry_weights=dry
            )
        except ValueError as exc:
            raise SettingsError(
                f"{self.source.setting('batch')}: the replayed batch's process constants: {exc}"
            ) from None

    @property
    def inoculated_at(self) -> float:
        """The replayed batch's inoculation on the station clock (Unix s)."""
        start = self.recording.inoculated_at
        first = float(self.recording.times[0]) if len(self.recording) else 0.0
        return (first if start is None else start) + self.offset

    def line_up(self, notebook: Notebook) -> None:
        """Where the samples go; lines the replay up with the notebook batch's inoculation
        when that lies early enough (a replay never runs ahead of the wall clock)."""
        self.notebook = notebook
        number = self.notebook_batch
        if not self.recording.samples:
            return
        if number is None or not self.operator:
            self._problem(
                f"{len(self.recording.samples)} replayed samples not recorded: set "
                f"{self.source.setting('notebook_batch')} and station.operator"
            )
            return
        try:
            inoculated = notebook.get_batch(number).inoculated_at
        except Exception as exc:  # unknown batch or notebook away: the replay still runs
            self._problem(f"notebook batch {number} for the replay: {exc}")
            return
        if inoculated is None:
            self._problem(
                f"notebook batch {number} is not started: the replayed samples (from "
                f"{_utc(self.inoculated_at)}) would be refused"
            )
            return
        anchored = self.offset + inoculated.timestamp() - self.inoculated_at
        if anchored <= self.offset:
            self.offset = anchored
            if self.driver is not None:
                self.driver.offset = anchored
        else:
            self._problem(
                f"notebook batch {number} was inoculated {_utc(inoculated.timestamp())}, after "
                f"the replay's re-based inoculation {_utc(self.inoculated_at)}: samples "
                "taken before it will be refused"
            )

    def on_sample(self, sample: RecordedSample) -> None:
        """A sample the replay reached (driver thread): trend history and notebook."""
        if self.history is not None and math.isfinite(sample.od600):
            self.history.add_sample(sample.reactor, sample.timestamp, sample.od600)
        number = self.notebook_batch
        if self.notebook is None or number is None or not self.operator:
            return
        from bptwin.eln.write_queue import NotebookWriteQueued

        if self.clock is not None:
            # The replay has reached this moment; the station clock learns it from the readings
            # only once they are processed, behind a flat-out replay, and the notebook (on that
            # clock) would refuse the sample as taken in the future.
            self.clock.observe(sample.reactor or self.reactor, sample.timestamp)
        try:
            self.notebook.add_sample(self.operator, number, **self._sample_fields(sample))
            self.recorded += 1
        except NotebookWriteQueued:
            self.recorded += 1  # on disk, written when the database is back
        except Exception as exc:  # a refused sample must not stop the replay: say it
            self.refused += 1
            log.warning(
                "replayed sample at %.0f refused by the notebook: %s", sample.timestamp, exc
            )
            self._problem(f"{self.refused} replayed sample(s) refused by the notebook: {exc}")

    def _problem(self, text: str) -> None:
        if self.latest is not None:
            named = text if self.source.legacy else f"source {self.source.name}: {text}"
            self.latest.set_problem(f"replay:{self.source.name}", named)

    @staticmethod
    def _sample_fields(sample: RecordedSample) -> dict[str, Any]:
        """The notebook's fields of a replayed sample; an OD600 of 0 or none (a dry-weight-only
        lab) is no OD600, never a reading of 0."""
        from bptwin.eln.form_rules import finite_or_none
        from bptwin.eln.sample_math import reading_and_dilution

        od600 = finite_or_none(sample.od600)
        od_raw, dilution = reading_and_dilution(od600 if od600 is not None and od600 > 0 else None)
        microscopy = sample.microscopy.strip()
        return {
            "taken_at": datetime.fromtimestamp(sample.timestamp, tz=timezone.utc),
            "od_raw": od_raw,
            "dilution": dilution,
            "sop_timepoint_h": finite_or_none(sample.planned_h),
            "dcw_g_per_l": finite_or_none(sample.dcw_g_l),
            "glycerol_g_per_l": finite_or_none(sample.glycerol_g_l),
            "microscopy_clean": (microscopy == "clean") if microscopy else None,
            "microscopy_text": "" if microscopy in ("", "clean") else microscopy,
        }


def replay_sessions(
    plan: AcquisitionPlan,
    *,
    operator: str,
    history: History | None = None,
    latest: LatestValues | None = None,
) -> list[ReplaySession]:
    """A session for every replay source of ``plan`` that replays a dataset folder."""
    sessions = []
    for source in plan.sources:
        session = ReplaySession.from_source(
            source, operator=operator, history=history, latest=latest
        )
        if session is not None:
            sessions.append(session)
    return sessions


def bind_drivers(sessions: Sequence[ReplaySession], drivers: Sequence[Driver]) -> None:
    """Tell each session its source's driver (a line-up moves the driver's offset too)."""
    from bptwin.drivers.replay import ReplayDriver

    for session in sessions:
        for driver in drivers:
            if isinstance(driver, ReplayDriver) and driver.name == session.source.name:
                session.driver = driver


def line_up_replays(runtime: Runtime) -> None:
    """At start, before any reading flows: line each replay up with its notebook batch, and
    give its reactor's features the batch's constants at the final re-base."""
    constants = runtime.settings.process_constants()
    for session in runtime.replays:
        session.clock = runtime.shadow_worker.clock
        session.line_up(runtime.notebook)
        runtime.shadow.configure(session.reactor, session.feature_config(constants))


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
