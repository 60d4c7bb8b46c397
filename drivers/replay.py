"""Replay a recorded batch (Parquet or a DataFrame) onto the sink at any speed.

The table has one row per instant: a time column and one column per catalogue channel
(``docs/dataset.md``); other columns (simulator truth) are ignored. Empty cells are gaps, not
readings. ``speed`` is recorded seconds per wall-clock second (1 = as recorded, 60 = an hour a
minute, 0 = as fast as the sink takes them); ``shift_to_now`` re-bases the whole batch to the
station clock (:func:`rebase_offset`): no row is stamped ahead of the moment it is emitted (at
speed 1 or slower the first row is stamped "now"; faster, the batch starts in the past and its
end lands on the wall clock; as fast as possible, it ends "now").

A batch of a dataset folder brings its offline samples: each is handed to ``on_sample`` (for
the notebook) when the replay reaches the instant it was taken, re-based like the readings.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Quality, Reading
from bptwin.drivers.base import Driver, ReadingSink

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TIME_COLUMNS = ("timestamp", "time", "ts")


class ReplayError(ValueError):
    """A recording that cannot be replayed; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class RecordedSample:
    """An offline sample of a recorded batch (as in the dataset's samples file)."""

    timestamp: float  # Unix s when taken (re-based in a replay)
    time_s: float  # since inoculation
    kind: str
    planned_h: float
    od600: float
    dcw_g_l: float
    glycerol_g_l: float
    microscopy: str
    batch: int | None = None  # the dataset's batch number
    reactor: str = ""

    def moved(self, offset: float, reactor: str) -> RecordedSample:
        return replace(self, timestamp=self.timestamp + offset, reactor=reactor)


class RecordedBatch:
    """A recording reduced to what replay needs: Unix times and one value array per channel,
    and the batch's offline samples when it comes from a dataset."""

    def __init__(
        self,
        times: np.ndarray,
        channels: dict[str, np.ndarray],
        reactor: str,
        samples: Sequence[RecordedSample] = (),
        process: dict[str, Any] | None = None,
        inoculated_at: float | None = None,
    ) -> None:
        self.times = times
        self.channels = channels
        self.reactor = reactor
        self.samples = sorted(samples, key=lambda sample: sample.timestamp)
        self.process = dict(process or {})  # the batch's process constants (dataset record)
        self.inoculated_at = inoculated_at  # Unix s, when the dataset says

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        reactor: str | None = None,
        time_column: str | None = None,
        channels: Sequence[str] | None = None,
    ) -> RecordedBatch:
        import numpy as np
        import pandas as pd

        times = _unix_seconds(frame, time_column)
        wanted = list(channels) if channels is not None else list(CHANNELS_BY_NAME)
        unknown = [name for name in wanted if name not in CHANNELS_BY_NAME]
        if unknown:
            raise ReplayError(f"unknown channels {unknown}; known: {', '.join(CHANNELS_BY_NAME)}")
        present = [name for name in wanted if name in frame.columns]
        if not present:
            raise ReplayError(
                f"no channel columns in the recording (columns: {list(frame.columns)[:12]})"
            )
        values = {}
        for name in present:
            column = pd.to_numeric(frame[name], errors="coerce")
            values[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if reactor is None:
            reactor = str(frame["reactor"].iloc[0]) if "reactor" in frame.columns else "R1"
        order = np.argsort(times, kind="stable")
        if not np.all(order == np.arange(len(order))):
            times = times[order]
            values = {name: array[order] for name, array in values.items()}
        return cls(times, values, reactor)

    @classmethod
    def read(cls, path: str | Path, **options: Any) -> RecordedBatch:
        """Read a Parquet (or CSV) recording."""
        import pandas as pd

        path = Path(path)
        if not path.exists():
            raise ReplayError(f"replay file {path} does not exist")
        try:
            frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise ReplayError(f"cannot read {path}: {exc}") from None
        return cls.from_frame(frame, **options)

    @classmethod
    def from_dataset(
        cls, directory: str | Path, number: int, *, reactor: str | None = None, verify: bool = True
    ) -> RecordedBatch:
        """Batch ``number`` of a bptwin dataset folder (``manifest.json``, twin/dataset.py)."""
        from bptwin.twin.dataset import DatasetError, read_batch, read_manifest

        try:
            record = read_batch(directory, read_manifest(directory).batch(number), verify=verify)
        except (DatasetError, KeyError) as exc:
            raise ReplayError(f"cannot replay batch {number} of {directory}: {exc}") from None
        assert record.sensors is not None
        batch = cls.from_frame(record.sensors, reactor=reactor, time_column="timestamp")
        batch.samples = _samples(record.samples, number)
        batch.process = dict(record.process)
        batch.inoculated_at = record.start_timestamp
        return batch

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True, slots=True)
class LoadedReplay:
    """A recording the station loaded ahead of building its source's driver (a dataset batch
    with its samples, drivers/sources.py): the shift onto the station clock and who hears of
    the samples."""

    recording: RecordedBatch
    offset: float | None = None
    on_sample: Callable[[RecordedSample], None] | None = None


class ReplayDriver(Driver):
    """Emits every non-empty cell of a recording as a reading, row by row, paced by ``speed``.

    ``recording`` is a :class:`RecordedBatch`, a DataFrame, a Parquet/CSV file, or a dataset
    folder together with ``batch`` (its number in the manifest).
    """

    def __init__(
        self,
        sink: ReadingSink,
        recording: RecordedBatch | pd.DataFrame | str | Path,
        *,
        reactor: str | None = None,
        speed: float = 1.0,
        shift_to_now: bool = False,
        batch: int | None = None,
        on_sample: Callable[[RecordedSample], None] | None = None,
        offset: float | None = None,
        name: str = "replay",
    ) -> None:
        if not math.isfinite(speed) or speed < 0:
            raise ReplayError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
        if isinstance(recording, (str, Path)) and Path(recording).is_dir():
            if batch is None:
                raise ReplayError(f"{recording} is a dataset folder: say which batch to replay")
            recording = RecordedBatch.from_dataset(recording, batch, reactor=reactor)
        elif isinstance(recording, (str, Path)):
            recording = RecordedBatch.read(recording, reactor=reactor)
        elif not isinstance(recording, RecordedBatch):
            recording = RecordedBatch.from_frame(recording, reactor=reactor)
        super().__init__(name, reactor or recording.reactor, sink)
        self.recording = recording
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.on_sample = on_sample
        # Seconds added to every recorded time; None: decided when the replay starts.
        self.offset = offset
        self.rows_replayed = 0
        self.samples_replayed = 0
        self.finished = False

    def run(self, stop: threading.Event) -> None:
        recording = self.recording
        if len(recording) == 0:
            self.finished = True
            return
        first = float(recording.times[0])
        if self.offset is None:
            self.offset = self.offset_to_now(time.time()) if self.shift_to_now else 0.0
        offset = self.offset
        samples = [sample.moved(offset, self.reactor) for sample in recording.samples]
        started = time.monotonic()
        names = list(recording.channels)
        units = [CHANNELS_BY_NAME[name].unit for name in names]
        columns = [recording.channels[name].tolist() for name in names]
        self._set_connected(True)
        try:
            for row, recorded_at in enumerate(recording.times.tolist()):
                if self.speed > 0:
                    delay = started + (recorded_at - first) / self.speed - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                elif stop.is_set():
                    return
                timestamp = recorded_at + offset
                while samples and samples[0].timestamp <= timestamp:
                    self._sample(samples.pop(0))
                for name, unit, column in zip(names, units, columns, strict=True):
                    value = column[row]
                    if value == value:  # NaN is a gap in the recording, not a reading
                        self._emit(
                            Reading(timestamp, self.reactor, name, value, unit, Quality.GOOD)
                        )
                self.rows_replayed = row + 1
            for sample in samples:  # taken after the last reading: still this batch's,
                if self.speed > 0:  # and handed over when the replay reaches it, not before
                    due = (sample.timestamp - offset - first) / self.speed
                    delay = started + due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                elif stop.is_set():
                    return
                self._sample(sample)
            self.finished = True
        finally:
            self._set_connected(False)

    def offset_to_now(self, now: float) -> float:
        """Seconds added to every recorded time so that no row is stamped in the future."""
        return rebase_offset(self.recording, self.speed, now)

    def _sample(self, sample: RecordedSample) -> None:
        self.samples_replayed += 1
        if self.on_sample is None:
            return
        try:
            self.on_sample(sample)
        except Exception as exc:  # the notebook's problem must not stop the replay
            self._count_error("on_sample", f"on_sample failed: {exc!r}")


def rebase_offset(recording: RecordedBatch, speed: float, now: float | None = None) -> float:
    """Seconds that move a replay starting ``now`` onto the station clock: the first row is
    ``now`` at speed 1 or slower; a faster replay is moved back just enough that no reading or
    sample is ever stamped ahead of the wall clock, which the bus, the stores and the notebook
    refuse: its end (the last row, or a sample taken after it) arrives now + duration/speed,
    stamped with that very moment; as fast as possible, it ends now."""
    if len(recording) == 0:
        return 0.0
    now = time.time() if now is None else now
    first = float(recording.times[0])
    last = float(recording.times[-1])
    if recording.samples:
        last = max(last, recording.samples[-1].timestamp)
    duration = last - first
    lead = duration * (1 - 1 / speed) if speed > 0 else duration
    return now - first - max(0.0, lead)


def _samples(table: pd.DataFrame | None, number: int) -> list[RecordedSample]:
    """The samples file of a dataset batch as RecordedSamples (NaN where a value is absent)."""
    if table is None or table.empty:
        return []

    def number_in(row: Any, name: str) -> float:
        value = getattr(row, name, math.nan)
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    def text_in(row: Any, name: str) -> str:
        value = getattr(row, name, "")
        return "" if value is None or value != value else str(value)

    return [
        RecordedSample(
            timestamp=number_in(row, "timestamp"),
            time_s=number_in(row, "time_s"),
            kind=text_in(row, "kind") or "extra",
            planned_h=number_in(row, "planned_h"),
            od600=number_in(row, "od600"),
            dcw_g_l=number_in(row, "dcw_g_l"),
            glycerol_g_l=number_in(row, "glycerol_g_l"),
            microscopy=text_in(row, "microscopy"),
            batch=number,
        )
        for row in table.itertuples(index=False)
        if math.isfinite(number_in(row, "timestamp"))
    ]


def _unix_seconds(frame: pd.DataFrame, time_column: str | None) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if time_column is None:
        time_column = next((name for name in TIME_COLUMNS if name in frame.columns), None)
    if time_column is not None:
        if time_column not in frame.columns:
            raise ReplayError(f"time column {time_column!r} is not in the recording")
        column = frame[time_column]
    elif isinstance(frame.index, pd.DatetimeIndex):
        column = frame.index.to_series()
    else:
        raise ReplayError(
            f"the recording needs a time column ({', '.join(TIME_COLUMNS)}) or a DatetimeIndex"
        )
    if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
        # CSV holds ISO 8601 text; Unix seconds as text also parse below.
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.isna().any():
            column = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
    if pd.api.types.is_datetime64_any_dtype(column):
        moments = pd.to_datetime(column, utc=True)
        seconds = (moments - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    else:
        seconds = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    if len(seconds) and not np.all(np.isfinite(seconds)):
        raise ReplayError(f"time column {time_column or 'index'} has empty or non-numeric cells")
    return np.asarray(seconds, dtype=np.float64)
