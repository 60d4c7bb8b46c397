"""One acquisition per reactor: a lock file on this machine, a verified claim on the broker.

Two acquisitions of one reactor would store every reading twice and fight over setpoints, so
``bptwin serve`` / ``bptwin run`` take an :class:`AcquisitionLock` per reactor before starting
drivers:

- on this machine, a file lock (``filelock``) on ``<data_dir>/locks/acquisition-<reactor>.lock``,
  freed by the kernel when the process dies, even by SIGKILL; the holder describes itself in
  ``acquisition-<reactor>.json`` beside it;
- when the bus is MQTT, a retained claim on ``<prefix>/v1/<reactor>/status/acquisition``
  (``{"ts", "state", "host", "pid", "station", "since", "data_dir", "instance"}``), held by a
  client of its own whose MQTT will sets the state to ``offline`` if the process dies.

A claim on an anonymous broker can be written by anyone, so a retained "running" is believed
only when its holder answers: the claimant pings ``.../status/acquisition/ping`` with a nonce
and the claim's ``instance``, and only that live holder answers on ``.../pong``. A forged or
stale claim does not answer and is overridden (and counted). The owner is a host *and* a data
folder, so a second station on the same host with another data folder is refused too (by the
claim: with the local bus only the file lock of one data folder guards, docs/operations.md). Only
the owner releases: a holder that sees its claim replaced by a "stopped", "offline" or dead
"running" of someone else publishes its own again. With the broker away at start, the claim is
taken as soon as the broker answers; a live claim found then is reported as a conflict.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bptwin.database.bus import topics
from bptwin.tui.settings import Settings, SettingsError, require_file

log = logging.getLogger(__name__)

STATUS_COMPONENT = "acquisition"
STATE_RUNNING = "running"
STATE_STOPPED = "stopped"
STATE_OFFLINE = "offline"
DEFAULT_KEEPALIVE_S = 15  # a crashed holder's claim turns "offline" after ~1.5x this
DEFAULT_LIVENESS_S = 5.0  # how long a claim's holder has to answer a ping
DESCRIPTION_WAIT_S = 5.0  # a refused process waits this long for the holder's description
REASSERT_INTERVAL_S = 1.0


class AcquisitionLockedError(SettingsError):
    """Another acquisition holds this reactor; the message names where it runs."""


@dataclass(frozen=True, slots=True)
class AcquisitionOwner:
    """Who runs (or ran) the acquisition of a reactor."""

    reactor: str
    host: str
    pid: int | None
    state: str = STATE_RUNNING
    station: str = ""
    since: str = ""
    data_dir: str = ""
    instance: str = ""

    @property
    def identity(self) -> tuple[str, str]:
        """Host and data folder: one station, whichever process runs it."""
        return (self.host, self.data_dir)

    def describe(self) -> str:
        pid = f" pid {self.pid}" if self.pid is not None else ""
        details = [f"station {self.station}"] if self.station else []
        if self.data_dir:
            details.append(f"data {self.data_dir}")
        extra = f" ({', '.join(details)})" if details else ""
        since = f" since {self.since}" if self.since else ""
        return f"{self.host}{pid}{extra}{since}"


def lock_path(settings: Settings, reactor: str) -> Path:
    return settings.data_dir / "locks" / f"acquisition-{reactor}.lock"


def description_path(settings: Settings, reactor: str) -> Path:
    return lock_path(settings, reactor).with_suffix(".json")


def status_topic(settings: Settings, reactor: str) -> str:
    return topics.status_topic(reactor, STATUS_COMPONENT, prefix=settings.bus.prefix)


def data_dir_of(settings: Settings) -> str:
    return str(Path(settings.data_dir).expanduser().resolve())


class AcquisitionLock:
    """A held acquisition lock; :meth:`release` (or ``with``) gives it back."""

    def __init__(
        self,
        reactor: str,
        path: Path,
        file_lock: FileLock,
        description: Path,
        claim: BrokerClaim | None,
    ) -> None:
        self.reactor = reactor
        self.path = path
        self._file_lock: FileLock | None = file_lock
        self._description = description
        self.claim = claim

    @property
    def held(self) -> bool:
        return self._file_lock is not None

    @property
    def conflicts(self) -> list[AcquisitionOwner]:
        """Live acquisitions of this reactor found on the broker while we held it (should be [])."""
        return list(self.claim.conflicts) if self.claim else []

    @property
    def claim_pending(self) -> bool:
        """True while the broker could not be reached to publish the claim."""
        return self.claim is not None and not self.claim.holding and not self.claim.conflicts

    def release(self) -> None:
        """Mark the acquisition stopped on the broker and unlock the file; safe to call twice."""
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.release()
        file_lock, self._file_lock = self._file_lock, None
        if file_lock is not None:
            with contextlib.suppress(OSError):
                self._description.unlink()
            file_lock.release()

    def __enter__(self) -> AcquisitionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_acquisition_lock(
    settings: Settings,
    reactor: str,
    *,
    hostname: str | None = None,
    keepalive_s: int = DEFAULT_KEEPALIVE_S,
    timeout_s: float = 10.0,
    liveness_s: float = DEFAULT_LIVENESS_S,
    wait_for_broker: bool = True,
    on_conflict: Callable[[AcquisitionOwner], None] | None = None,
) -> AcquisitionLock:
    """Take the reactor's acquisition lock or raise :class:`AcquisitionLockedError`.

    With ``wait_for_broker`` (the default) an unreachable MQTT broker raises SettingsError
    naming ``bus.host``/``bus.port``; without it the claim is taken when the broker answers,
    and ``on_conflict`` hears of a live acquisition found there then. ``hostname`` defaults
    to this machine's.
    """
    if settings.bus.backend == "mqtt":
        require_file("bus.ca_file", settings.bus.ca_file)  # before the file lock is taken
    host = hostname or socket.gethostname()
    path = lock_path(settings, reactor)
    description = description_path(settings, reactor)
    file_lock = _lock_file(path, description, reactor, host, settings)
    if settings.bus.backend != "mqtt":
        return AcquisitionLock(reactor, path, file_lock, description, None)
    claim = BrokerClaim(settings, reactor, host, keepalive_s=keepalive_s, liveness_s=liveness_s)
    claim.on_conflict = on_conflict
    try:
        try:
            claim.take(timeout_s)
        except BrokerUnreachable:
            if wait_for_broker:
                raise
            claim.take_when_reachable()
    except BaseException:
        claim.release()
        with contextlib.suppress(OSError):
            description.unlink()
        file_lock.release()
        raise
    return AcquisitionLock(reactor, path, file_lock, description, claim)


def acquisition_owner(
    settings: Settings,
    reactor: str,
    *,
    timeout_s: float = 5.0,
    liveness_s: float = DEFAULT_LIVENESS_S,
) -> AcquisitionOwner | None:
    """Who runs this reactor's acquisition now (this machine or, over MQTT, any), else None.

    A claim on the broker counts only if its holder answers. For the TUI: attach as a viewer
    instead of starting a second acquisition.
    """
    local = _local_owner(lock_path(settings, reactor), description_path(settings, reactor), reactor)
    if local is not None or settings.bus.backend != "mqtt":
        return local
    claim = BrokerClaim(
        settings, reactor, socket.gethostname(), keepalive_s=DEFAULT_KEEPALIVE_S,
        liveness_s=liveness_s,
    )  # fmt: skip
    return claim.live_owner(timeout_s)


# --- this machine: a file lock and its description ----------------------------------------


def _lock_file(
    path: Path, description: Path, reactor: str, host: str, settings: Settings
) -> FileLock:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_lock = FileLock(path, preserve_lock_file=True, thread_local=False)
        file_lock.acquire(timeout=0)
    except Timeout:
        owner = _local_owner(path, description, reactor)
        who = owner.describe() if owner else f"another process (lock file {path})"
        raise AcquisitionLockedError(
            f"reactor {reactor}: an acquisition is already running on {who}; stop it first "
            f"(e.g. 'systemctl stop bptwin') or open 'bptwin run' to watch it"
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"station.data_dir: cannot create the acquisition lock {path}: {exc.strerror or exc}"
        ) from None
    payload = _claim_payload(STATE_RUNNING, host, settings.station.name, data_dir_of(settings), "")
    staging = description.with_name(f".{description.name}.{os.getpid()}")
    try:
        staging.write_text(json.dumps(payload) + "\n", encoding="utf-8")
        staging.replace(description)  # whole or not at all: a reader never sees half of it
    except OSError as exc:
        file_lock.release()
        raise SettingsError(
            f"station.data_dir: cannot write {description}: {exc.strerror or exc}"
        ) from None
    return file_lock


def _local_owner(path: Path, description: Path, reactor: str) -> AcquisitionOwner | None:
    """The holder of the lock file, None when nobody holds it.

    The holder writes its description right after taking the lock: a description that is
    missing or names a process that no longer runs is waited for, briefly, not reported.
    """
    if not path.exists():
        return None
    probe = FileLock(path, preserve_lock_file=True, thread_local=False)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        pass
    except OSError:
        return None
    else:
        probe.release()
        return None
    deadline = time.monotonic() + DESCRIPTION_WAIT_S
    while True:
        owner = None
        with contextlib.suppress(OSError):
            owner = _owner_from(reactor, description.read_text(encoding="utf-8"))
        if owner is not None and _process_runs(owner):
            return owner
        if time.monotonic() >= deadline:
            return owner or AcquisitionOwner(reactor, socket.gethostname(), None)
        time.sleep(0.05)


def _process_runs(owner: AcquisitionOwner) -> bool:
    if owner.pid is None:
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it runs
    return True


def _claim_payload(
    state: str, host: str, station: str, data_dir: str, instance: str, since: str | None = None
) -> dict[str, Any]:
    now = datetime.now(tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "ts": now,
        "state": state,
        "host": host,
        "pid": os.getpid(),
        "station": station,
        "since": since or now,
        "data_dir": data_dir,
        "instance": instance,
    }


def _owner_from(reactor: str, text: str | bytes) -> AcquisitionOwner | None:
    try:
        data: Any = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("host"), str):
        return None
    pid = data.get("pid")
    return AcquisitionOwner(
        reactor=reactor,
        host=data["host"],
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        state=str(data.get("state", STATE_RUNNING)),
        station=str(data.get("station", "")),
        since=str(data.get("since", "")),
        data_dir=str(data.get("data_dir", "")),
        instance=str(data.get("instance", "")),
    )


owner_from_payload = _owner_from


# --- the broker: a retained claim, verified by ping -----------------------------------------


class BrokerUnreachable(SettingsError):
    """The MQTT broker did not accept the lock client (names bus.host/bus.port)."""


class BrokerClaim:
    """A paho client of its own: reads and verifies the claim, publishes ours, defends it."""

    def __init__(
        self,
        settings: Settings,
        reactor: str,
        host: str,
        *,
        keepalive_s: int,
        liveness_s: float = DEFAULT_LIVENESS_S,
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings
        self.reactor = reactor
        self.host = host
        self.data_dir = data_dir_of(settings)
        self.instance = uuid.uuid4().hex
        self.topic = status_topic(settings, reactor)
        self.ping_topic = f"{self.topic}/ping"
        self.pong_topic = f"{self.topic}/pong"
        self.probe_topic = f"{self.topic}/probe-{uuid.uuid4().hex[:12]}"
        self.keepalive_s = keepalive_s
        self.liveness_s = liveness_s
        self.conflicts: list[AcquisitionOwner] = []
        self.ignored_claims = 0  # forged or stale claims overridden
        self.on_conflict: Callable[[AcquisitionOwner], None] | None = None
        self.refused_by: AcquisitionOwner | None = None  # the live claim that refused us
        self.holding = False
        self._since: str | None = None
        self._state = threading.Condition()
        self._retained: AcquisitionOwner | None = None
        self._latest: AcquisitionOwner | None = None  # newest claim seen on the topic
        self._probe_seen = False
        self._pongs: set[tuple[str, str]] = set()  # (nonce, instance)
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._last_reassert = 0.0
        self._reassert_timer: threading.Timer | None = None
        self._released = False
        self._deferred: threading.Thread | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bptwin-lock-{reactor}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        bus = settings.bus
        require_file("bus.ca_file", bus.ca_file)
        if bus.username:
            password = bus.password.get_secret_value() if bus.password else None
            self._client.username_pw_set(bus.username, password)
        if bus.tls or bus.ca_file:
            self._client.tls_set(ca_certs=str(bus.ca_file) if bus.ca_file else None)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    @property
    def identity(self) -> tuple[str, str]:
        return (self.host, self.data_dir)

    # -- public steps --

    def live_owner(self, timeout_s: float) -> AcquisitionOwner | None:
        """The running claim whose holder answers, without claiming; connects and disconnects."""
        self._connect(timeout_s)
        try:
            current = self._read_retained(timeout_s)
            if current is None or current.state != STATE_RUNNING:
                return None
            return current if self._answers(current) else None
        finally:
            self._disconnect()

    def read_retained(self, timeout_s: float) -> AcquisitionOwner | None:
        """The retained claim (any state, unverified); connects and disconnects."""
        self._connect(timeout_s)
        try:
            return self._read_retained(timeout_s)
        finally:
            self._disconnect()

    def take(self, timeout_s: float) -> None:
        """Refuse if a live claim of another owner is retained, else publish and defend ours."""
        self._set_will()
        self._connect(timeout_s)
        try:
            self._take(timeout_s)
        except BaseException:
            self._disconnect()
            raise

    def take_when_reachable(self) -> None:
        """The broker is away: connect in the background and take the claim when it answers."""
        self._connect_error = None
        self._set_will()
        bus = self.settings.bus
        self._client.connect_async(bus.host, bus.port, keepalive=self.keepalive_s)
        self._client.loop_start()

        def take_later() -> None:
            while not self._released and not self._connected.wait(1.0):
                pass
            if self._released:
                return
            try:
                self._take(10.0)
            except AcquisitionLockedError as exc:
                log.error("%s", exc)
                if self.refused_by is not None:
                    self.conflicts.append(self.refused_by)
                    if self.on_conflict is not None:
                        self.on_conflict(self.refused_by)
            except SettingsError as exc:
                log.error("acquisition claim of %s not taken: %s", self.reactor, exc)
            else:
                log.warning("reactor %s: acquisition claim taken on the broker", self.reactor)

        self._deferred = threading.Thread(target=take_later, name="lock-claim", daemon=True)
        self._deferred.start()

    def release(self) -> None:
        """Publish "stopped" if the claim is still ours, then disconnect."""
        self._released = True
        if self.holding:
            self.holding = False
            with self._state:
                latest = self._latest
            if latest is None or latest.instance == self.instance or latest.state != STATE_RUNNING:
                self._publish_claim(STATE_STOPPED)
            else:
                log.warning(
                    "reactor %s: claim now held by %s; not marked stopped",
                    self.reactor,
                    latest.describe(),
                )
        self._disconnect()

    # -- the protocol --

    def _take(self, timeout_s: float) -> None:
        current = self._read_retained(timeout_s)
        self._refuse_if_live(current)
        self.holding = True
        self._publish_claim(STATE_RUNNING)
        # Two claimants at once: the broker orders the claims; the last one seen wins for both.
        self._round_trip(timeout_s)
        with self._state:
            latest = self._latest
        if latest is not None and latest.instance != self.instance:
            try:
                self._refuse_if_live(latest)
            except AcquisitionLockedError:
                self.holding = False
                raise
            self._publish_claim(STATE_RUNNING)

    def _refuse_if_live(self, current: AcquisitionOwner | None) -> None:
        if current is None or current.state != STATE_RUNNING:
            return
        if current.identity == self.identity or current.instance == self.instance:
            return  # this station's leftover: the file lock proved that process is gone
        if not self._answers(current):
            self.ignored_claims += 1
            log.warning(
                "reactor %s: ignoring the claim of %s on %s: its holder does not answer "
                "(stale or forged)",
                self.reactor,
                current.describe(),
                self.topic,
            )
            return
        self.refused_by = current
        bus = self.settings.bus
        raise AcquisitionLockedError(
            f"reactor {self.reactor}: an acquisition is already running on "
            f"{current.describe()} (retained on {self.topic} at {bus.host}:{bus.port}); "
            "stop it there first, or open 'bptwin run', which attaches to it as a viewer"
        )

    def _answers(self, owner: AcquisitionOwner) -> bool:
        """True when the holder named by ``owner`` answers a ping within ``liveness_s``."""
        if not owner.instance:
            return False  # a claim without an instance cannot be asked: unverifiable
        nonce = uuid.uuid4().hex
        self._client.publish(
            self.ping_topic, json.dumps({"nonce": nonce, "instance": owner.instance}), qos=1
        )
        deadline = time.monotonic() + self.liveness_s
        with self._state:
            while (nonce, owner.instance) not in self._pongs:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.wait(remaining)
        return True

    def _read_retained(self, timeout_s: float) -> AcquisitionOwner | None:
        # The broker sends retained messages right after SUBACK, before anything published
        # later on this connection: once our own probe comes back, the retained one (if any)
        # has arrived. No guessing how long to wait for a message that may not exist.
        self._client.subscribe(
            [(self.topic, 1), (self.probe_topic, 1), (self.ping_topic, 1), (self.pong_topic, 1)]
        )
        self._round_trip(timeout_s)
        with self._state:
            return self._retained

    def _round_trip(self, timeout_s: float) -> None:
        with self._state:
            self._probe_seen = False
        self._client.publish(self.probe_topic, b"probe", qos=1)
        with self._state:
            if not self._state.wait_for(lambda: self._probe_seen, timeout_s):
                bus = self.settings.bus
                raise SettingsError(
                    f"bus: MQTT broker at {bus.host}:{bus.port} did not deliver on {self.topic} "
                    f"within {timeout_s:.0f} s (check the ACL for this user)"
                )

    def _set_will(self) -> None:
        will = _claim_payload(
            STATE_OFFLINE, self.host, self.settings.station.name, self.data_dir, self.instance
        )
        self._client.will_set(self.topic, json.dumps(will), qos=1, retain=True)

    def _connect(self, timeout_s: float) -> None:
        bus = self.settings.bus
        try:
            self._client.connect(bus.host, bus.port, keepalive=self.keepalive_s)
        except OSError as exc:
            raise BrokerUnreachable(
                f"bus.host/bus.port: cannot reach the MQTT broker at {bus.host}:{bus.port} "
                f"to check the acquisition lock: {exc}"
            ) from None
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._connect_error is not None:
            self._disconnect()
            reason = self._connect_error or f"no answer within {timeout_s:.0f} s"
            raise SettingsError(
                f"bus.host/bus.port: MQTT broker at {bus.host}:{bus.port} refused the "
                f"acquisition-lock client: {reason}"
            )

    def _disconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()  # a clean disconnect: the will is not published
        self._client.loop_stop()

    def _publish_claim(self, state: str) -> None:
        payload = _claim_payload(
            state, self.host, self.settings.station.name, self.data_dir, self.instance, self._since
        )
        self._since = payload["since"]
        info = self._client.publish(self.topic, json.dumps(payload), qos=1, retain=True)
        if threading.current_thread() is not getattr(self._client, "_thread", None):
            with contextlib.suppress(Exception):
                info.wait_for_publish(timeout=5.0)

    # -- paho callbacks (network thread: never block, never raise) --

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._connect_error = str(reason)
        elif self.holding:
            # Reconnected after a loss: the will may have marked us offline meanwhile.
            client.subscribe([(self.topic, 1), (self.ping_topic, 1), (self.pong_topic, 1)])
            self._publish_claim(STATE_RUNNING)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.topic == self.probe_topic:
                with self._state:
                    self._probe_seen = True
                    self._state.notify_all()
            elif message.topic == self.ping_topic:
                self._answer_ping(message.payload)
            elif message.topic == self.pong_topic:
                self._note_pong(message.payload)
            elif message.topic == self.topic:
                self._note_claim(message.payload)
        except Exception:
            log.exception("acquisition lock: message on %s not handled", message.topic)

    def _answer_ping(self, payload: bytes) -> None:
        data = json.loads(payload)
        if not self.holding or not isinstance(data, dict):
            return
        if data.get("instance") != self.instance or not isinstance(data.get("nonce"), str):
            return
        answer = {"nonce": data["nonce"], "instance": self.instance, "host": self.host}
        self._client.publish(self.pong_topic, json.dumps(answer), qos=1)

    def _note_pong(self, payload: bytes) -> None:
        data = json.loads(payload)
        if isinstance(data, dict) and isinstance(data.get("nonce"), str):
            with self._state:
                self._pongs.add((data["nonce"], str(data.get("instance", ""))))
                self._state.notify_all()

    def _note_claim(self, payload: bytes) -> None:
        owner = _owner_from(self.reactor, payload) if payload else None
        if payload and owner is None:
            log.warning("ignoring an unreadable acquisition claim on %s", self.topic)
            return
        with self._state:
            if not self._probe_seen:
                self._retained = owner
            self._latest = owner
        if not self.holding or (owner is not None and owner.instance == self.instance):
            if (
                owner is not None
                and owner.instance == self.instance
                and owner.state != STATE_RUNNING
            ):
                self._reassert()  # our own will, published while we were reconnecting
            return
        if owner is not None and owner.state == STATE_RUNNING:
            # Someone claims our reactor: a live acquisition is a conflict, a dead claim is not.
            threading.Thread(target=self._check_rival, args=(owner,), daemon=True).start()
        else:
            self._reassert()  # a "stopped"/"offline"/empty not ours: only the owner releases

    def _check_rival(self, owner: AcquisitionOwner) -> None:
        if self._answers(owner):
            log.error(
                "reactor %s: %s claims the acquisition this process runs",
                self.reactor,
                owner.describe(),
            )
            self.conflicts.append(owner)
            if self.on_conflict is not None:
                self.on_conflict(owner)
        else:
            self.ignored_claims += 1
            self._reassert()

    def _reassert(self) -> None:
        """Publish our claim again, at most once a second (a later call waits its turn)."""
        if not self.holding or self._released:
            return
        wait = self._last_reassert + REASSERT_INTERVAL_S - time.monotonic()
        if wait > 0:
            if self._reassert_timer is None or not self._reassert_timer.is_alive():
                self._reassert_timer = threading.Timer(wait, self._reassert)
                self._reassert_timer.daemon = True
                self._reassert_timer.start()
            return
        self._last_reassert = time.monotonic()
        log.warning("reactor %s: claim replaced by another client; restored", self.reactor)
        self._publish_claim(STATE_RUNNING)


def wait_for_state(
    settings: Settings, reactor: str, state: str, timeout_s: float = 30.0
) -> AcquisitionOwner | None:
    """Poll the retained claim until it is in ``state`` (for tests and scripts)."""
    deadline = time.monotonic() + timeout_s
    owner = None
    while time.monotonic() < deadline:
        claim = BrokerClaim(settings, reactor, socket.gethostname(), keepalive_s=5)
        owner = claim.read_retained(5.0)
        if owner is not None and owner.state == state:
            return owner
        time.sleep(0.2)
    return owner
