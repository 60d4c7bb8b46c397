"""LocalBus specifics beyond the shared contract: queue limit, start order, retained clearing."""

from __future__ import annotations

import threading

from bptwin.database.bus import LocalBus
from tests.test_bus import Inbox, wait_for


def test_full_queue_drops_and_counts_once_the_wait_is_over() -> None:
    bus = LocalBus(max_pending=5, full_wait_s=0.0)
    release = threading.Event()
    delivered = Inbox()

    def blocked(topic: str, payload: bytes) -> None:
        delivered(topic, payload)
        release.wait(10)

    bus.subscribe("x", blocked)
    bus.start()
    try:
        for index in range(20):
            bus.publish("x", str(index))
        assert bus.stats.dropped >= 14  # 1 in the handler at most, 5 queued, the rest dropped
        release.set()
        assert bus.drain()
        assert bus.stats.dropped + len(delivered.items) == 20
        assert bus.stats.published == 20
    finally:
        release.set()
        bus.stop()


def test_full_queue_holds_the_publisher_back_instead_of_dropping() -> None:
    bus = LocalBus(max_pending=5, full_wait_s=30.0)
    release = threading.Event()
    delivered = Inbox()

    def slow(topic: str, payload: bytes) -> None:
        release.wait(10)
        delivered(topic, payload)

    bus.subscribe("x", slow)
    bus.start()
    publisher = threading.Thread(target=lambda: [bus.publish("x", str(i)) for i in range(20)])
    try:
        publisher.start()
        publisher.join(0.5)
        assert publisher.is_alive()  # held back by the full queue, not dropping
        release.set()
        publisher.join(10)
        assert not publisher.is_alive()
        assert bus.drain()
        assert bus.stats.dropped == 0
        assert [payload for _, payload in delivered.items] == [str(i).encode() for i in range(20)]
    finally:
        release.set()
        bus.stop()


def test_messages_published_before_start_are_delivered_after_it() -> None:
    bus = LocalBus()
    inbox = Inbox()
    bus.subscribe("a/#", inbox)
    bus.publish("a/b", b"early")
    assert not bus.connected and not bus.drain(0.1)
    bus.start()
    try:
        assert inbox.wait_count(1)
        assert inbox.items == [("a/b", b"early")]
    finally:
        bus.stop()


def test_empty_retained_payload_clears_the_retained_message() -> None:
    bus = LocalBus()
    bus.start()
    try:
        bus.publish("s/1", b"on", retain=True)
        bus.publish("s/2", b"on", retain=True)
        bus.publish("s/1", b"", retain=True)
        late = Inbox()
        bus.subscribe("s/+", late)
        assert bus.drain()
        assert wait_for(lambda: len(late.items) >= 1)
        assert [topic for topic, payload in late.items if payload] == ["s/2"]
    finally:
        bus.stop()


def test_handler_may_cancel_its_own_subscription() -> None:
    bus = LocalBus()
    bus.start()
    try:
        seen = Inbox()
        holder: list = []

        def once(topic: str, payload: bytes) -> None:
            seen(topic, payload)
            holder[0].cancel()

        holder.append(bus.subscribe("t", once))
        for _ in range(3):
            bus.publish("t", b"x")
        assert bus.drain()
        assert len(seen.items) == 1
    finally:
        bus.stop()
