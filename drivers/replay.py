"""Replay a recorded batch (Parquet or a DataFrame) onto the sink at any speed.

The table has one row per instant: a time column and one column per catalogue channel
(``docs/dataset.md``); other columns (offline samples, simulator truth) are ignored. Empty
cells are gaps, not readings. ``speed`` is recorded seconds per wall-clock second (1 = as
recorded, 60 = an hour a minute, 0 = as fast as the sink takes them); ``shift_to_now`` re-bases
the whole batch to the station clock: no row is stamped ahead of the moment it is emitted (at
speed 1 or slower the first row is stamped "now"; faster, the batch starts in the past and its
last row lands on the wall clock; as fast as possible, it ends "now").
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
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


class RecordedBatch:
    """A recording reduced to what replay needs: Unix times and one value array per channel."""

    def __init__(self, times: np.ndarray, channels: dict[str, np.ndarray], reactor: str) -> None:
        self.times = times
        self.channels = channels
        self.reactor = reactor

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
        return cls.from_frame(record.sensors, reactor=reactor, time_column="timestamp")

    def __len__(self) -> int:
        return len(self.times)


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
        self.rows_replayed = 0
        self.finished = False

    def run(self, stop: threading.Event) -> None:
        recording = self.recording
        if len(recording) == 0:
            self.finished = True
            return
        first = float(recording.times[0])
        offset = self.offset_to_now(time.time()) if self.shift_to_now else 0.0
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
                for name, unit, column in zip(names, units, columns, strict=True):
                    value = column[row]
                    if value == value:  # NaN is a gap in the recording, not a reading
                        self._emit(
                            Reading(timestamp, self.reactor, name, value, unit, Quality.GOOD)
                        )
                self.rows_replayed = row + 1
            self.finished = True
        finally:
            self._set_connected(False)

    def offset_to_now(self, now: float) -> float:
        """Seconds added to every recorded time so that no row is stamped in the future."""
        times = self.recording.times
        first, last = float(times[0]), float(times[-1])
        if self.speed == 0:
            return now - last
        gained = (last - first) * (1 - 1 / self.speed)  # what the replay gains on the clock
        return now - first - max(0.0, gained)


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
