"""The default embedded time-series store: one SQLite file in WAL mode.

Layout: ``series`` maps (reactor, channel) to a small integer id and holds the channel's latest
unit; ``points`` is a WITHOUT ROWID table keyed by (series_id, ts_ms) so a channel's range is one
contiguous b-tree scan. The first write of a key wins (INSERT OR IGNORE): a repeat with the same
value and quality is a counted duplicate, one with another value is a conflict, kept with the
reason in table ``kept_aside`` (as is a value that is not a number) and never written over.
NaN (and infinite) values are stored as NULL with quality ``bad`` and read back as NaN.

Writes commit synchronously in ``write`` (one transaction per call, executemany): the store file
is itself the durable queue, there is no network to wait for, and a commit costs ~20 µs plus a
few µs per reading. Readers use one connection per thread so WAL lets them run beside the writer.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.database.reading import Quality, Reading

if TYPE_CHECKING:
    import numpy as np
from bptwin.database.timeseries.base import (
    StoreStatus,
    TimeSeriesError,
    TimeSeriesStore,
    WindowAggregate,
    check_range,
    check_window,
    field_number,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    reactor TEXT NOT NULL,
    channel TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    UNIQUE (reactor, channel)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (series_id, ts_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kept_aside (
    id INTEGER PRIMARY KEY,
    reactor TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    value TEXT NOT NULL,
    quality TEXT NOT NULL,
    unit TEXT NOT NULL,
    reason TEXT NOT NULL,
    kept_at REAL NOT NULL
);
"""

_QUALITY_CODE = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_QUALITY_OF_CODE = {code: quality for quality, code in _QUALITY_CODE.items()}

# Last value of each window: the finite point with the greatest timestamp. Grouping first and
# joining back on the primary key keeps it one scan plus one index probe per window.
_WINDOWS_SQL = """
WITH w AS (
    SELECT (ts_ms / :win) AS slot, avg(value) AS mean, min(value) AS lo, max(value) AS hi,
           count(value) AS n, max(ts_ms) AS last_ts
    FROM points
    WHERE series_id = :sid AND ts_ms >= :start AND ts_ms < :end AND value IS NOT NULL
    GROUP BY slot
)
SELECT w.slot, w.mean, w.lo, w.hi, p.value, w.n
FROM w JOIN points p ON p.series_id = :sid AND p.ts_ms = w.last_ts
ORDER BY w.slot
"""


class EmbeddedStore(TimeSeriesStore):
    """Time series in one SQLite file; thread-safe; the default store."""

    def __init__(self, path: str | Path, *, fsync: bool = False, name: str = "embedded") -> None:
        self.path = Path(path)
        self.name = name
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._series_ids: dict[tuple[str, str], int] = {}
        self._series_units: dict[int, str] = {}
        self._written = 0
        self._failed = 0
        self._duplicates = 0
        self._conflict_count = 0
        self._refused = 0
        self._last_error: str | None = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.executescript(_SCHEMA)
            for sid, reactor, channel, unit in self._writer.execute(
                "SELECT id, reactor, channel, unit FROM series"
            ):
                self._series_ids[(reactor, channel)] = sid
                self._series_units[sid] = unit
            self._kept_aside = int(
                self._writer.execute("SELECT count(*) FROM kept_aside").fetchone()[0]
            )
        except (sqlite3.Error, OSError) as exc:
            raise TimeSeriesError(f"cannot open time-series file {self.path}: {exc}") from exc

    # -- writing --------------------------------------------------------------------------------

    def write(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        with self._write_lock:
            self._check_open()
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                rows: list[tuple[int, int, float | None, int]] = []
                taken: list[Reading] = []
                aside: list[tuple[Reading, str]] = []
                for r in readings:
                    try:
                        value = field_number(r.value)
                    except ValueError as exc:
                        aside.append((r, f"cannot be written: {exc}"))
                        continue
                    finite = math.isfinite(value)
                    quality = r.quality if finite else Quality.BAD
                    rows.append(
                        (
                            self._series_id(r),
                            round(float(r.timestamp) * 1000.0),
                            value if finite else None,
                            _QUALITY_CODE[quality],
                        )
                    )
                    taken.append(r)
                inserted = self._writer.executemany(
                    "INSERT OR IGNORE INTO points (series_id, ts_ms, value, quality)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                ).rowcount
                conflicts: list[tuple[Reading, str]] = []
                if inserted < len(rows):  # some keys were stored already: same or other value?
                    conflicts = self._conflicts(taken, rows)
                self._keep_aside(aside + conflicts)
                self._writer.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                # The unit/series caches may hold rows that were rolled back: rebuild lazily.
                self._series_ids.clear()
                self._series_units.clear()
                self._failed += 1
                self._last_error = f"write to {self.path} failed: {exc}"
                raise TimeSeriesError(self._last_error) from exc
            self._written += inserted
            self._duplicates += len(rows) - inserted - len(conflicts)
            self._conflict_count += len(conflicts)
            self._refused += len(aside)
            self._kept_aside += len(aside) + len(conflicts)

    def _conflicts(
        self, readings: list[Reading], rows: list[tuple[int, int, float | None, int]]
    ) -> list[tuple[Reading, str]]:
        """The readings whose key holds another value or quality (the first write stays)."""
        found: list[tuple[Reading, str]] = []
        for reading, (sid, ts_ms, value, quality) in zip(readings, rows, strict=True):
            stored = self._writer.execute(
                "SELECT value, quality FROM points WHERE series_id = ? AND ts_ms = ?",
                (sid, ts_ms),
            ).fetchone()
            if stored is None or (stored[0] == value and stored[1] == quality):
                continue
            shown = "no value" if stored[0] is None else repr(stored[0])
            found.append(
                (
                    reading,
                    "conflict: another reading is stored under this key "
                    f"({shown}, {_QUALITY_OF_CODE[stored[1]].value})",
                )
            )
        return found

    def _keep_aside(self, readings: list[tuple[Reading, str]]) -> None:
        if not readings:
            return
        now = time.time()
        self._writer.executemany(
            "INSERT INTO kept_aside"
            " (reactor, channel, ts_ms, value, quality, unit, reason, kept_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.reactor,
                    r.channel,
                    round(float(r.timestamp) * 1000.0),
                    repr(r.value),
                    r.quality.value,
                    r.unit,
                    reason,
                    now,
                )
                for r, reason in readings
            ],
        )

    def _series_id(self, reading: Reading) -> int:
        key = (reading.reactor, reading.channel)
        sid = self._series_ids.get(key)
        if sid is None:
            self._writer.execute(
                "INSERT OR IGNORE INTO series (reactor, channel, unit) VALUES (?, ?, ?)",
                (reading.reactor, reading.channel, reading.unit),
            )
            sid, unit = self._writer.execute(
                "SELECT id, unit FROM series WHERE reactor = ? AND channel = ?", key
            ).fetchone()
            self._series_ids[key] = sid
            self._series_units[sid] = unit
        if self._series_units[sid] != reading.unit:
            self._writer.execute("UPDATE series SET unit = ? WHERE id = ?", (reading.unit, sid))
            self._series_units[sid] = reading.unit
        return sid

    def flush(self, timeout: float | None = None) -> bool:
        # Every accepted write is already committed.
        return True

    # -- reading --------------------------------------------------------------------------------

    def read_range(self, reactor: str, channel: str, start: float, end: float) -> list[Reading]:
        check_range(start, end)
        db = self._reader()
        found = self._lookup(db, reactor, channel)
        if found is None:
            return []
        sid, unit = found
        nan = math.nan
        quality_of = _QUALITY_OF_CODE
        rows = db.execute(
            "SELECT ts_ms, value, quality FROM points"
            " WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
            (sid, _ceil_ms(start), _ceil_ms(end)),
        ).fetchall()
        return [
            Reading(ts / 1000.0, reactor, channel, nan if v is None else v, unit, quality_of[q])
            for ts, v, q in rows
        ]

    def read_columns(
        self, reactor: str, channel: str, start: float, end: float
    ) -> tuple[np.ndarray, np.ndarray, str]:
        import numpy as np

        check_range(start, end)
        db = self._reader()
        found = self._lookup(db, reactor, channel)
        if found is None:
            return np.empty(0), np.empty(0), ""
        sid, unit = found
        rows = db.execute(
            "SELECT ts_ms, value FROM points"
            " WHERE series_id = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms",
            (sid, _ceil_ms(start), _ceil_ms(end)),
        ).fetchall()
        if not rows:
            return np.empty(0), np.empty(0), unit
        table = np.array(rows, dtype=float)  # a stored NULL value becomes NaN
        return table[:, 0] / 1000.0, table[:, 1], unit

    def read_windows(
        self, reactor: str, channel: str, start: float, end: float, window_s: float = 30.0
    ) -> list[WindowAggregate]:
        check_range(start, end)
        check_window(window_s)
        db = self._reader()
        found = self._lookup(db, reactor, channel)
        if found is None:
            return []
        win_ms = round(window_s * 1000)
        rows = db.execute(
            _WINDOWS_SQL,
            {"win": win_ms, "sid": found[0], "start": _ceil_ms(start), "end": _ceil_ms(end)},
        ).fetchall()
        return [
            WindowAggregate(slot * win_ms / 1000.0, mean, lo, hi, last, n)
            for slot, mean, lo, hi, last, n in rows
        ]

    def list_channels(self, reactor: str | None = None) -> list[tuple[str, str]]:
        db = self._reader()
        sql = (
            "SELECT reactor, channel FROM series s"
            " WHERE EXISTS (SELECT 1 FROM points p WHERE p.series_id = s.id)"
        )
        params: tuple[str, ...] = ()
        if reactor is not None:
            sql += " AND reactor = ?"
            params = (reactor,)
        return sorted((r, c) for r, c in db.execute(sql + " ORDER BY reactor, channel", params))

    def status(self) -> StoreStatus:
        return StoreStatus(
            name=self.name,
            link_ok=not self._closed and self._last_error is None,
            written=self._written,
            failed_writes=self._failed,
            last_error=self._last_error,
            refused=self._refused,
            conflicts=self._conflict_count,
            duplicates=self._duplicates,
            kept_aside=self._kept_aside,
            kept_aside_in=f"{self.path} (table kept_aside)",
        )

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        with self._connections_lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections.clear()

    # -- internals ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        with self._connections_lock:
            self._connections.append(db)
        return db

    def _reader(self) -> sqlite3.Connection:
        self._check_open()
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = self._connect()
            except sqlite3.Error as exc:
                raise TimeSeriesError(f"cannot read time-series file {self.path}: {exc}") from exc
            self._local.db = db
        return db

    @staticmethod
    def _lookup(db: sqlite3.Connection, reactor: str, channel: str) -> tuple[int, str] | None:
        row = db.execute(
            "SELECT id, unit FROM series WHERE reactor = ? AND channel = ?", (reactor, channel)
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _check_open(self) -> None:
        if self._closed:
            raise TimeSeriesError(f"time-series store {self.path} is closed")


def _ceil_ms(timestamp: float) -> int:
    """Bound in ms so that ``ts >= bound`` matches ``timestamp_ms(ts) >= ceil(start)``."""
    return math.ceil(round(timestamp * 1000.0, 6))
