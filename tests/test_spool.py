"""The durable FIFO spool: order, acknowledgement, rejection, threads and process kills."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bptwin.database.spool import Spool, SpoolError

ROOT = Path(__file__).resolve().parents[1]


def test_fifo_order_and_ack(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        for i in range(5):
            spool.push(f"item {i}", weight=i + 1)
        assert spool.depth() == 5
        assert spool.weight() == 15
        first = spool.peek(max_items=2)
        assert [item.payload for item in first] == ["item 0", "item 1"]
        assert spool.depth() == 5, "peek must not remove"
        spool.ack(first)
        assert spool.depth() == 3
        assert spool.weight() == 12
        assert [item.payload for item in spool.peek(10)] == ["item 2", "item 3", "item 4"]


def test_peek_respects_max_weight_but_returns_at_least_one(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        spool.push_many([("a", 400), ("b", 400), ("c", 400)])
        assert [i.payload for i in spool.peek(10, max_weight=900)] == ["a", "b"]
        assert [i.payload for i in spool.peek(10, max_weight=100)] == ["a"]


def test_bytes_and_text_keep_their_type(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        spool.push(b"\x00\xffraw")
        spool.push("tëxt")
        assert [i.payload for i in spool.peek()] == [b"\x00\xffraw", "tëxt"]


def test_items_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Spool(path) as spool:
        spool.push_many([("a", 1), ("b", 2)])
        spool.ack(spool.peek(1))
    with Spool(path) as again:
        assert again.depth() == 1
        assert again.weight() == 2
        assert [i.payload for i in again.peek()] == ["b"]


def test_ids_keep_growing_after_the_spool_empties(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        first = spool.push("a")
        spool.ack([first])
        assert spool.last_id() is None
        assert spool.push("b") > first


def test_weight_up_to_an_id(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        ids = spool.push_many([("a", 3), ("b", 4), ("c", 5)])
        assert spool.weight(up_to_id=ids[1]) == 7
        assert spool.last_id() == ids[2]


def test_reject_moves_items_aside_without_losing_them(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        spool.push_many([("bad", 2), ("good", 1)])
        spool.reject(spool.peek(1), "server said 400")
        assert spool.depth() == 1
        assert spool.rejected_count() == 1
        assert [i.payload for i in spool.peek()] == ["good"]


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    with Spool(tmp_path / "q.sqlite") as spool:
        with pytest.raises(TypeError, match="bytes or str"):
            spool.push(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="weight"):
            spool.push("x", weight=-1)
        assert spool.depth() == 0
    with pytest.raises(SpoolError, match="closed"):
        spool.push("late")


def test_unopenable_file_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="not-a-dir"):
        Spool(blocker / "q.sqlite")


def test_concurrent_pushers_and_a_consumer_lose_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "q.sqlite")
    consumed: list[str] = []
    done = threading.Event()

    def consume() -> None:
        while not done.is_set() or spool.depth():
            items = spool.peek(50)
            consumed.extend(str(item.payload) for item in items)
            spool.ack(items)

    def produce(worker: int) -> None:
        for i in range(200):
            spool.push(f"{worker}:{i}")

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    consumer.join()
    spool.close()
    assert len(consumed) == 800
    assert len(set(consumed)) == 800
    for worker in range(4):
        mine = [int(c.split(":")[1]) for c in consumed if c.startswith(f"{worker}:")]
        assert mine == sorted(mine), "each producer's items come out in its order"


_PUSH_THEN_WAIT = """
import sys, time
from bptwin.database.spool import Spool
spool = Spool(sys.argv[1])
for i in range(int(sys.argv[2])):
    spool.push(f"reading {i}", weight=2)
print("pushed", flush=True)
time.sleep(60)
"""


def test_pushed_items_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _PUSH_THEN_WAIT, str(path), "500"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "pushed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    with Spool(path) as spool:
        assert spool.depth() == 500
        assert spool.weight() == 1000
        items = spool.peek(1000)
        assert [i.payload for i in items] == [f"reading {i}" for i in range(500)]
