"""One acquisition per reactor: a lock file on this machine, a retained claim on the broker.

Two acquisitions of one reactor would store every reading twice and fight over setpoints, so
``bptwin serve`` / ``bptwin run`` take an :class:`AcquisitionLock` per reactor before starting
drivers:

- on this machine, ``fcntl.flock`` on ``<data_dir>/locks/acquisition-<reactor>.lock`` (freed
  by the kernel when the process dies, even by SIGKILL);
- when the bus is MQTT, a retained claim on ``<prefix>/v1/<reactor>/status/acquisition``
  (``{"ts", "state": "running", "host", "pid", "station"}``), held by a small client of its
  own whose MQTT will sets the state to ``offline`` if the process dies or loses the network,
  so a second machine sees a live claim and is refused, but a crashed one does not block.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from bptwin.database.bus import topics
from bptwin.tui.settings import Settings, SettingsError

log = logging.getLogger(__name__)

STATUS_COMPONENT = "acquisition"
STATE_RUNNING = "running"
STATE_STOPPED = "stopped"
STATE_OFFLINE = "offline"
DEFAULT_KEEPALIVE_S = 15  # a crashed holder's claim turns "offline" after ~1.5x this


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

    def describe(self) -> str:
        pid = f" pid {self.pid}" if self.pid is not None else ""
        station = f" (station {self.station})" if self.station else ""
        since = f" since {self.since}" if self.since else ""
        return f"{self.host}{pid}{station}{since}"


def lock_path(settings: Settings, reactor: str) -> Path:
    return settings.data_dir / "locks" / f"acquisition-{reactor}.lock"


def status_topic(settings: Settings, reactor: str) -> str:
    return topics.status_topic(reactor, STATUS_COMPONENT, prefix=settings.bus.prefix)


class AcquisitionLock:
    """A held acquisition lock; :meth:`release` (or ``with``) gives it back."""

    def __init__(
        self,
        reactor: str,
        path: Path,
        handle: IO[str],
        claim: _BrokerClaim | None,
    ) -> None:
        self.reactor = reactor
        self.path = path
        self._handle: IO[str] | None = handle
        self._claim = claim

    @property
    def held(self) -> bool:
        return self._handle is not None

    @property
    def conflicts(self) -> list[AcquisitionOwner]:
        """Other hosts that claimed this reactor on the broker while we held it (should be [])."""
        return list(self._claim.conflicts) if self._claim else []

    def release(self) -> None:
        """Mark the acquisition stopped on the broker and unlock the file; safe to call twice."""
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.release()
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

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
) -> AcquisitionLock:
    """Take the reactor's acquisition lock or raise :class:`AcquisitionLockedError`.

    Raises SettingsError naming ``bus.host``/``bus.port`` when the MQTT broker cannot be
    reached (the acquisition could not publish anyway). ``hostname`` defaults to this machine's.
    """
    host = hostname or socket.gethostname()
    path = lock_path(settings, reactor)
    handle = _lock_file(path, reactor, host, settings.station.name)
    if settings.bus.backend != "mqtt":
        return AcquisitionLock(reactor, path, handle, None)
    try:
        claim = _BrokerClaim(settings, reactor, host, keepalive_s=keepalive_s)
        claim.take(timeout_s)
    except BaseException:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        raise
    return AcquisitionLock(reactor, path, handle, claim)


def acquisition_owner(
    settings: Settings, reactor: str, *, timeout_s: float = 5.0
) -> AcquisitionOwner | None:
    """Who runs this reactor's acquisition now (this machine or, over MQTT, any), else None.

    For the TUI: attach as a viewer instead of starting a second acquisition.
    """
    local = _local_owner(lock_path(settings, reactor), reactor)
    if local is not None or settings.bus.backend != "mqtt":
        return local
    claim = _BrokerClaim(settings, reactor, socket.gethostname(), keepalive_s=DEFAULT_KEEPALIVE_S)
    retained = claim.read_retained(timeout_s)
    return retained if retained is not None and retained.state == STATE_RUNNING else None


# --- this machine: flock ------------------------------------------------------------------


def _lock_file(path: Path, reactor: str, host: str, station: str) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # "a+" never truncates: the holder's description stays readable to a refused process.
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
    except OSError as exc:
        raise SettingsError(
            f"station.data_dir: cannot create the acquisition lock {path}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        owner = _local_owner(path, reactor)
        who = owner.describe() if owner else f"another process (lock file {path})"
        raise AcquisitionLockedError(
            f"reactor {reactor}: an acquisition is already running on {who}; stop it first "
            f"(e.g. 'systemctl stop bptwin') or open 'bptwin run' to watch it"
        ) from None
    handle.seek(0)
    handle.truncate(0)
    handle.write(json.dumps(_claim_payload(STATE_RUNNING, host, station)) + "\n")
    handle.flush()
    return handle


def _local_owner(path: Path, reactor: str) -> AcquisitionOwner | None:
    """The holder described in the lock file if the file is locked, else None."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _owner_from(reactor, handle.read()) or AcquisitionOwner(
                reactor, socket.gethostname(), None
            )
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def _claim_payload(state: str, host: str, station: str, since: str | None = None) -> dict:
    now = datetime.now(tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "ts": now,
        "state": state,
        "host": host,
        "pid": os.getpid(),
        "station": station,
        "since": since or now,
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
        pid=pid if isinstance(pid, int) else None,
        state=str(data.get("state", STATE_RUNNING)),
        station=str(data.get("station", "")),
        since=str(data.get("since", "")),
    )


# --- the broker: retained claim with a will -------------------------------------------------


class _BrokerClaim:
    """A paho client of its own: reads the retained claim, publishes ours, leaves a will."""

    def __init__(self, settings: Settings, reactor: str, host: str, *, keepalive_s: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.settings = settings
        self.reactor = reactor
        self.host = host
        self.topic = status_topic(settings, reactor)
        self.probe_topic = f"{self.topic}/probe-{uuid.uuid4().hex[:12]}"
        self.keepalive_s = keepalive_s
        self.conflicts: list[AcquisitionOwner] = []
        self._since: str | None = None
        self._holding = False
        self._retained: AcquisitionOwner | None = None
        self._probe_seen = threading.Event()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bptwin-lock-{reactor}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
        )
        bus = settings.bus
        if bus.username:
            password = bus.password.get_secret_value() if bus.password else None
            self._client.username_pw_set(bus.username, password)
        if bus.tls or bus.ca_file:
            self._client.tls_set(ca_certs=str(bus.ca_file) if bus.ca_file else None)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    # -- public steps --

    def read_retained(self, timeout_s: float) -> AcquisitionOwner | None:
        """The retained claim (any state) without claiming; connects and disconnects."""
        self._connect(timeout_s)
        try:
            return self._wait_for_retained(timeout_s)
        finally:
            self._disconnect()

    def take(self, timeout_s: float) -> None:
        """Refuse if a live claim of another host is retained, else publish ours."""
        will = _claim_payload(STATE_OFFLINE, self.host, self.settings.station.name)
        self._client.will_set(self.topic, json.dumps(will), qos=1, retain=True)
        self._connect(timeout_s)
        try:
            current = self._wait_for_retained(timeout_s)
            if self._blocks(current):
                assert current is not None
                raise AcquisitionLockedError(
                    f"reactor {self.reactor}: an acquisition is already running on "
                    f"{current.describe()} (retained on {self.topic} at "
                    f"{self.settings.bus.host}:{self.settings.bus.port}); stop it there first, "
                    "or open 'bptwin run', which attaches to it as a viewer"
                )
            self._holding = True
            self._publish_claim(STATE_RUNNING)
        except BaseException:
            self._disconnect()
            raise

    def release(self) -> None:
        if self._holding:
            self._holding = False
            self._publish_claim(STATE_STOPPED)
        self._disconnect()

    # -- internals --

    def _blocks(self, current: AcquisitionOwner | None) -> bool:
        if current is None or current.state != STATE_RUNNING:
            return False
        # The same host passed the flock, so its retained "running" is a leftover of a process
        # that died without its will being published (e.g. the broker restarted meanwhile).
        return current.host != self.host

    def _connect(self, timeout_s: float) -> None:
        bus = self.settings.bus
        try:
            self._client.connect(bus.host, bus.port, keepalive=self.keepalive_s)
        except OSError as exc:
            raise SettingsError(
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

    def _wait_for_retained(self, timeout_s: float) -> AcquisitionOwner | None:
        # The broker sends retained messages right after SUBACK, before anything published
        # later on this connection: once our own probe comes back, the retained one (if any)
        # has arrived. No guessing how long to wait for a message that may not exist.
        self._client.subscribe([(self.topic, 1), (self.probe_topic, 1)])
        self._client.publish(self.probe_topic, b"probe", qos=1)
        if not self._probe_seen.wait(timeout_s):
            raise SettingsError(
                f"bus: MQTT broker at {self.settings.bus.host}:{self.settings.bus.port} did not "
                f"deliver on {self.topic} within {timeout_s:.0f} s (check the ACL for this user)"
            )
        self._client.unsubscribe(self.probe_topic)
        return self._retained

    def _publish_claim(self, state: str) -> None:
        payload = _claim_payload(state, self.host, self.settings.station.name, self._since)
        self._since = payload["since"]
        info = self._client.publish(self.topic, json.dumps(payload), qos=1, retain=True)
        with contextlib.suppress(Exception):
            info.wait_for_publish(timeout=5.0)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._connect_error = str(reason)
        elif self._holding:
            # Reconnected after a loss: the will may have marked us offline meanwhile.
            self._publish_claim(STATE_RUNNING)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.probe_topic:
            self._probe_seen.set()
            return
        if not message.payload:
            self._retained = None  # an empty retained message clears the claim
            return
        owner = _owner_from(self.reactor, message.payload)
        if owner is None:
            log.warning("ignoring an unreadable acquisition claim on %s", message.topic)
            return
        if not self._probe_seen.is_set():
            self._retained = owner
        elif self._holding and owner.state == STATE_RUNNING and owner.host != self.host:
            log.error(
                "reactor %s: %s claims the acquisition this process runs",
                self.reactor,
                owner.describe(),
            )
            self.conflicts.append(owner)


def wait_for_state(
    settings: Settings, reactor: str, state: str, timeout_s: float = 30.0
) -> AcquisitionOwner | None:
    """Poll the retained claim until it is in ``state`` (for tests and scripts)."""
    deadline = time.monotonic() + timeout_s
    owner = None
    while time.monotonic() < deadline:
        claim = _BrokerClaim(settings, reactor, socket.gethostname(), keepalive_s=5)
        owner = claim.read_retained(5.0)
        if owner is not None and owner.state == state:
            return owner
        time.sleep(0.2)
    return owner
