"""The recorder between acquisition and the store: bounded transactions, nothing dropped."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bptwin.database.reading import Reading
from bptwin.database.recorder import Recorder
from bptwin.database.timeseries import TimeSeriesError
from bptwin.database.timeseries.embedded import EmbeddedStore


class CountingStore(EmbeddedStore):
    """The real embedded store, remembering the size of every write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def write(self, readings: Sequence[Reading]) -> None:
        self.batches.append(len(readings))
        super().write(readings)


class RefusingStore(EmbeddedStore):
    def write(self, readings: Sequence[Reading]) -> None:
        raise TimeSeriesError("disk full")


def test_a_flood_is_written_in_bounded_transactions(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "ts.sqlite")
    recorder = Recorder(store, max_batch=1000, max_delay_s=0.05)
    for second in range(12_345):
        recorder.add(Reading(1_800_000_000.0 + second, "R1", "do", 50.0, "%"))
    assert recorder.flush(timeout=30)
    recorder.close()
    assert sum(store.batches) == 12_345
    assert max(store.batches) <= 1000
    assert len(store.read_range("R1", "do", 0, 4e9)) == 12_345
    store.close()


def test_close_returns_when_the_store_refuses_and_keeps_the_readings(tmp_path: Path) -> None:
    store = RefusingStore(tmp_path / "ts.sqlite")
    recorder = Recorder(store, max_batch=10, max_delay_s=0.05)
    for second in range(25):
        recorder.add(Reading(1_800_000_000.0 + second, "R1", "do", 50.0, "%"))
    recorder.close(timeout=10)
    stats = recorder.stats()
    assert stats.written == 0 and stats.buffered == 25 and stats.failed >= 1
    store.close()
