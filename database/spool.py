"""A durable FIFO queue on local disk (one SQLite file), shared by anything that must not lose data.

Items (``bytes`` or ``str``) are pushed at the tail, read in order with :meth:`Spool.peek`, and
removed with :meth:`Spool.ack` once their consumer has delivered them. An item that can never be
delivered is moved aside with :meth:`Spool.reject` (kept in the ``rejected`` table, never dropped).

Durability: the file runs in WAL mode. A committed push is in the WAL file once ``push`` returns,
so it survives a process kill (SIGKILL, OOM) with ``synchronous=NORMAL``, which costs no fsync per
commit (~20 µs a push). Only an OS crash or power cut can lose the last commits under NORMAL (the
file is never corrupted); pass ``fsync=True`` (``synchronous=FULL``) where that matters more than
the fsync each push then costs.

One process owns a spool file at a time; the in-memory depth counters assume so. A second
process may open it after the owner died (that is how restarts replay).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload BLOB NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    weight INTEGER NOT NULL,
    created REAL NOT NULL,
    rejected REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


class SpoolError(RuntimeError):
    """The spool file cannot be opened or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class SpoolItem:
    id: int
    payload: bytes | str
    weight: int
    created: float


class Spool:
    """Durable FIFO queue in one SQLite file. Thread-safe within one process.

    ``weight`` lets an item stand for several records (e.g. a batch of readings) so callers can
    report how many records wait, not just how many items.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            depth, weight = self._db.execute(
                "SELECT count(*), coalesce(sum(weight), 0) FROM items"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool file {self.path}: {exc}") from exc
        self._depth = int(depth)
        self._weight = int(weight)
        self._closed = False

    # -- producer -------------------------------------------------------------------------------

    def push(self, payload: bytes | str, weight: int = 1) -> int:
        """Append one item; returns its id once it is committed to disk."""
        return self.push_many([(payload, weight)])[-1]

    def push_many(self, items: Sequence[tuple[bytes | str, int]]) -> list[int]:
        """Append several items in one transaction (all or none); returns their ids in order."""
        if not items:
            return []
        for payload, weight in items:
            if not isinstance(payload, (bytes, str)):
                raise TypeError(f"spool items must be bytes or str, got {type(payload).__name__}")
            if weight < 0:
                raise ValueError(f"spool item weight must be >= 0, got {weight}")
        now = time.time()
        with self._lock:
            with self._transaction("write to"):
                ids = [
                    _row_id(
                        self._db.execute(
                            "INSERT INTO items (payload, weight, created) VALUES (?, ?, ?)",
                            (payload, weight, now),
                        )
                    )
                    for payload, weight in items
                ]
            self._depth += len(items)
            self._weight += sum(weight for _, weight in items)
            return ids

    # -- consumer -------------------------------------------------------------------------------

    def peek(
        self, max_items: int = 100, max_weight: int | None = None, *, after_id: int = 0
    ) -> list[SpoolItem]:
        """The oldest items (with ``id > after_id``), in order, without removing them.

        Stops before ``max_items`` items or once ``max_weight`` is reached (always at least one
        item when the spool is not empty). ``after_id`` lets a consumer with items in flight
        read on past them (the bus outbox sends ahead of the broker's acknowledgements).
        """
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT id, payload, weight, created FROM items WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, max(1, max_items)),
            ).fetchall()
        items: list[SpoolItem] = []
        total = 0
        for row in rows:
            if items and max_weight is not None and total + row[2] > max_weight:
                break
            items.append(SpoolItem(int(row[0]), row[1], int(row[2]), float(row[3])))
            total += row[2]
        return items

    def ack(self, items: list[SpoolItem] | list[int]) -> None:
        """Remove delivered items."""
        ids = [item.id if isinstance(item, SpoolItem) else int(item) for item in items]
        if not ids:
            return
        with self._lock:
            with self._transaction("update"):
                removed, weight = self._remove(ids)
            self._depth -= removed
            self._weight -= weight

    def reject(self, items: list[SpoolItem], reason: str) -> None:
        """Move undeliverable items to the ``rejected`` table (kept for inspection)."""
        if not items:
            return
        now = time.time()
        with self._lock:
            with self._transaction("update"):
                self._db.executemany(
                    "INSERT OR REPLACE INTO rejected"
                    " (id, payload, weight, created, rejected, reason)"
                    " SELECT id, payload, weight, created, ?, ? FROM items WHERE id = ?",
                    [(now, reason, item.id) for item in items],
                )
                removed, weight = self._remove([item.id for item in items])
            self._depth -= removed
            self._weight -= weight

    # -- state ----------------------------------------------------------------------------------

    def depth(self) -> int:
        """Number of items waiting."""
        return self._depth

    def weight(self, up_to_id: int | None = None) -> int:
        """Total weight of waiting items (of those with ``id <= up_to_id`` when given)."""
        if up_to_id is None:
            return self._weight
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT coalesce(sum(weight), 0) FROM items WHERE id <= ?", (up_to_id,)
            ).fetchone()
        return int(row[0])

    def last_id(self) -> int | None:
        """Id of the newest waiting item, None when empty."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT max(id) FROM items").fetchone()
        return None if row[0] is None else int(row[0])

    def rejected_count(self) -> int:
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _remove(self, ids: list[int]) -> tuple[int, int]:
        removed = 0
        weight = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            row = self._db.execute(
                f"SELECT count(*), coalesce(sum(weight), 0) FROM items WHERE id IN ({marks})",
                chunk,
            ).fetchone()
            self._db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
            removed += int(row[0])
            weight += int(row[1])
        return removed, weight

    @contextlib.contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """One IMMEDIATE transaction (the caller holds the lock): committed when the block
        ends, rolled back and raised as SpoolError ("cannot <doing> spool file") on an error."""
        self._check_open()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise SpoolError(f"cannot {doing} spool file {self.path}: {exc}") from exc

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")


def _row_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just made (always set after a successful INSERT)."""
    row_id = cursor.lastrowid
    if row_id is None:  # pragma: no cover - sqlite3 sets it for every INSERT
        raise SpoolError("the spool did not report the id of a new item")
    return row_id
