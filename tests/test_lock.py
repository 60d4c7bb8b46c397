"""The acquisition lock: one acquisition per reactor, on this machine and across the broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bptwin.tui.runtime.acquisition_lock import (
    STATE_OFFLINE,
    STATE_RUNNING,
    STATE_STOPPED,
    AcquisitionLockedError,
    acquire_acquisition_lock,
    acquisition_owner,
    description_path,
    wait_for_state,
)
from bptwin.tui.settings import Settings, SettingsError
from tests.fixtures.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def local_settings(data_dir: Path) -> Settings:
    return Settings.model_validate({"station": {"data_dir": data_dir, "name": "bench-test"}})


def mqtt_settings(data_dir: Path, broker: tuple[str, int], prefix: str) -> Settings:
    host, port = broker
    return Settings.model_validate(
        {
            "station": {"data_dir": data_dir, "name": "bench-test"},
            "bus": {"backend": "mqtt", "host": host, "port": port, "prefix": prefix},
        }
    )


def test_second_lock_on_one_machine_is_refused_naming_the_holder(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    with acquire_acquisition_lock(settings, "R1") as lock:
        assert lock.held
        with pytest.raises(AcquisitionLockedError) as refused:
            acquire_acquisition_lock(settings, "R1")
        message = str(refused.value)
        assert "reactor R1" in message and f"pid {os.getpid()}" in message
        assert "bench-test" in message
        # Another reactor is independent.
        with acquire_acquisition_lock(settings, "R2"):
            pass
        owner = acquisition_owner(settings, "R1")
        assert owner is not None and owner.pid == os.getpid()
    assert not lock.held
    assert acquisition_owner(settings, "R1") is None
    with acquire_acquisition_lock(settings, "R1"):
        pass  # free again after release


def test_local_bus_guards_one_data_folder_only(tmp_path: Path) -> None:
    """What docs/operations.md says the locks do not cover: with the local bus, stations with
    other data folders share nothing that could tell them apart, so each acquires."""
    first, second = local_settings(tmp_path / "a"), local_settings(tmp_path / "b")
    with (
        acquire_acquisition_lock(first, "R1") as one,
        acquire_acquisition_lock(second, "R1") as two,
    ):
        assert one.held and two.held
        for settings in (first, second):  # each data folder names its own holder
            owner = acquisition_owner(settings, "R1")
            assert owner is not None and owner.data_dir == str(settings.data_dir)


def test_lock_held_by_another_process_is_freed_when_it_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from bptwin.tui.runtime.acquisition_lock import acquire_acquisition_lock
        from bptwin.tui.settings import Settings
        settings = Settings.model_validate({{"station": {{"data_dir": {str(tmp_path)!r}}}}})
        lock = acquire_acquisition_lock(settings, "R1")
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        settings = local_settings(tmp_path)
        with pytest.raises(AcquisitionLockedError, match=f"pid {holder.pid}"):
            acquire_acquisition_lock(settings, "R1")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # The kernel dropped the flock with the process: no stale lock after a crash.
        with acquire_acquisition_lock(settings, "R1"):
            description = json.loads(description_path(settings, "R1").read_text())
            assert description["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_bad_reactor_lock_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "locks").write_text("not a folder")
    with pytest.raises(SettingsError, match=r"station\.data_dir: cannot create the acquisition"):
        acquire_acquisition_lock(local_settings(tmp_path), "R1")


def test_second_machine_is_refused_through_the_broker(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    # Two data folders stand for two machines: only the broker can tell them apart.
    here = mqtt_settings(tmp_path / "here", mqtt_broker, mqtt_prefix)
    there = mqtt_settings(tmp_path / "there", mqtt_broker, mqtt_prefix)
    lock = acquire_acquisition_lock(here, "R1", hostname="lab-pc")
    try:
        with pytest.raises(AcquisitionLockedError) as refused:
            acquire_acquisition_lock(there, "R1", hostname="jetson")
        message = str(refused.value)
        assert "lab-pc" in message and f"pid {os.getpid()}" in message
        assert f"{mqtt_prefix}/v1/R1/status/acquisition" in message
        owner = acquisition_owner(there, "R1")
        assert owner is not None and owner.host == "lab-pc" and owner.state == STATE_RUNNING
    finally:
        lock.release()
    stopped = wait_for_state(there, "R1", STATE_STOPPED, timeout_s=10)
    assert stopped is not None and stopped.host == "lab-pc"
    with acquire_acquisition_lock(there, "R1", hostname="jetson") as taken:
        assert taken.held
        assert taken.conflicts == []


def publish_retained(broker: tuple[str, int], topic: str, payload: dict[str, object]) -> None:
    """An anonymous client leaves a retained message, as anyone on an open broker can."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(*broker)
    client.loop_start()
    client.publish(topic, json.dumps(payload), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_forged_retained_claim_does_not_stop_an_acquisition(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    topic = f"{mqtt_prefix}/v1/R1/status/acquisition"
    for forged in (
        {"state": "running", "host": "evil"},
        {"state": "running", "host": "evil", "pid": 1, "instance": "0" * 32, "data_dir": "/x"},
    ):
        publish_retained(mqtt_broker, topic, forged)
        settings = mqtt_settings(tmp_path / "station", mqtt_broker, mqtt_prefix)
        # Nobody answers for the forged claim: it is overridden (and counted), not obeyed.
        assert acquisition_owner(settings, "R1", liveness_s=1.0) is None
        with acquire_acquisition_lock(settings, "R1", liveness_s=1.0) as lock:
            assert lock.held and lock.claim is not None
            assert lock.claim.ignored_claims == 1
            owner = wait_for_state(settings, "R1", STATE_RUNNING, timeout_s=10)
            assert owner is not None and owner.pid == os.getpid() and owner.host != "evil"


def test_second_station_on_the_same_host_with_another_data_folder_is_refused(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    first = mqtt_settings(tmp_path / "first", mqtt_broker, mqtt_prefix)
    second = mqtt_settings(tmp_path / "second", mqtt_broker, mqtt_prefix)
    with acquire_acquisition_lock(first, "R1") as lock:
        assert lock.claim is not None
        with pytest.raises(AcquisitionLockedError) as refused:
            acquire_acquisition_lock(second, "R1")
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and f"data {tmp_path / 'first'}" in message
        # The refused station left the running claim alone: still ours, still running.
        owner = wait_for_state(second, "R1", STATE_RUNNING, timeout_s=10)
        assert owner is not None and owner.instance == lock.claim.instance
        assert owner.data_dir == str((tmp_path / "first").resolve())


def test_only_the_owner_releases_its_claim(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    settings = mqtt_settings(tmp_path, mqtt_broker, mqtt_prefix)
    topic = f"{mqtt_prefix}/v1/R1/status/acquisition"
    with acquire_acquisition_lock(settings, "R1", liveness_s=1.0) as lock:
        assert lock.claim is not None
        instance = lock.claim.instance
        for forged_state in ("stopped", "offline", "running"):
            forged = {"state": forged_state, "host": "evil", "pid": 1, "instance": "f" * 32}
            publish_retained(mqtt_broker, topic, forged)

            # The holder puts its own claim back; a viewer sees the real acquisition.
            def restored() -> bool:
                owner = wait_for_state(settings, "R1", STATE_RUNNING, timeout_s=5)
                return owner is not None and owner.instance == instance

            assert wait_until(restored, timeout_s=20), forged_state
        assert lock.conflicts == []  # a dead forged "running" is no conflict
    stopped = wait_for_state(settings, "R1", STATE_STOPPED, timeout_s=10)
    assert stopped is not None and stopped.instance == instance


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_crashed_holder_is_marked_offline_by_its_will(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    host, port = mqtt_broker
    script = textwrap.dedent(
        f"""
        import time
        from bptwin.tui.runtime.acquisition_lock import acquire_acquisition_lock
        from bptwin.tui.settings import Settings
        settings = Settings.model_validate({{
            "station": {{"data_dir": {str(tmp_path / "crash")!r}}},
            "bus": {{
                "backend": "mqtt", "host": {host!r}, "port": {port}, "prefix": {mqtt_prefix!r}
            }},
        }})
        lock = acquire_acquisition_lock(settings, "R1", hostname="crashing-pc", keepalive_s=1)
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        other = mqtt_settings(tmp_path / "other", mqtt_broker, mqtt_prefix)
        with pytest.raises(AcquisitionLockedError, match="crashing-pc"):
            acquire_acquisition_lock(other, "R1", hostname="jetson")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # The broker publishes the will once the keep-alive (1 s) lapses.
        offline = wait_for_state(other, "R1", STATE_OFFLINE, timeout_s=30)
        assert offline is not None and offline.host == "crashing-pc"
        with acquire_acquisition_lock(other, "R1", hostname="jetson") as lock:
            assert lock.held
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_unreachable_broker_names_the_setting(tmp_path: Path) -> None:
    settings = mqtt_settings(tmp_path, ("127.0.0.1", free_port()), "bptwin")
    with pytest.raises(SettingsError, match=r"bus\.host/bus\.port: cannot reach"):
        acquire_acquisition_lock(settings, "R1")
    # The local lock was given back with the failure.
    with acquire_acquisition_lock(local_settings(tmp_path), "R1"):
        pass


def serve_process(data_dir: Path, broker: tuple[str, int], prefix: str) -> subprocess.Popen[str]:
    host, port = broker
    environment = {
        **os.environ,
        "BPTWIN_STATION__DATA_DIR": str(data_dir),
        "BPTWIN_ACQUISITION__SPEED": "10",
        "BPTWIN_BUS__BACKEND": "mqtt",
        "BPTWIN_BUS__HOST": host,
        "BPTWIN_BUS__PORT": str(port),
        "BPTWIN_BUS__PREFIX": prefix,
        # The simulated source on the reactor's own name (not "sim-R1"): the claim is R1's.
        "BPTWIN_ACQUISITION__SIMULATED_REACTOR_PREFIX": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "serve"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_serves_on_one_host_with_other_data_folders_cannot_both_acquire(
    tmp_path: Path, mqtt_broker: tuple[str, int], mqtt_prefix: str
) -> None:
    first = serve_process(tmp_path / "first", mqtt_broker, mqtt_prefix)
    second: subprocess.Popen[str] | None = None
    watching = mqtt_settings(tmp_path / "watch", mqtt_broker, mqtt_prefix)
    try:
        assert wait_until(lambda: acquisition_owner(watching, "R1") is not None, 60)
        owner = acquisition_owner(watching, "R1")
        assert owner is not None and owner.pid == first.pid
        second = serve_process(tmp_path / "second", mqtt_broker, mqtt_prefix)
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 2, stderr
        assert f"already running on {owner.host} pid {first.pid}" in stderr
        # The refused one stopped without touching the first one's claim.
        still = acquisition_owner(watching, "R1")
        assert still is not None and still.pid == first.pid and still.state == STATE_RUNNING
        assert first.poll() is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                finally:
                    process.kill()
    assert first.returncode == 0
    stopped = wait_for_state(watching, "R1", STATE_STOPPED, timeout_s=10)
    assert stopped is not None and stopped.pid == first.pid


def test_claims_deferred_while_the_broker_was_away_end_with_one_owner(tmp_path: Path) -> None:
    from tests.fixtures.mqtt import MosquittoServer, mosquitto_binary
    from tests.fixtures.servers import server_missing

    if mosquitto_binary() is None:
        server_missing("mosquitto is not installed, so no private broker can be started")
    broker = MosquittoServer(tmp_path / "mosquitto")  # configured, not started yet
    settings_a = mqtt_settings(tmp_path / "a", broker.address, "deferred")
    settings_b = mqtt_settings(tmp_path / "b", broker.address, "deferred")
    conflicts: list[str] = []
    # After a power cut both stations come up before the broker: both acquire.
    lock_a = acquire_acquisition_lock(
        settings_a, "R1", wait_for_broker=False, on_conflict=lambda o: conflicts.append("a")
    )
    lock_b = acquire_acquisition_lock(
        settings_b, "R1", wait_for_broker=False, on_conflict=lambda o: conflicts.append("b")
    )
    try:
        assert lock_a.claim_pending and lock_b.claim_pending
        broker.start()
        # The broker orders the two claims: exactly one owns the reactor, the other is told.
        assert wait_until(lambda: not lock_a.claim_pending and not lock_b.claim_pending, 60)
        assert wait_until(lambda: len(conflicts) == 1, 30)
        holder = lock_b if conflicts == ["a"] else lock_a
        loser = lock_a if holder is lock_b else lock_b
        assert holder.claim is not None and holder.claim.holding and holder.conflicts == []
        assert loser.claim is not None and not loser.claim.holding
        assert [o.instance for o in loser.conflicts] == [holder.claim.instance]
        elsewhere = mqtt_settings(tmp_path / "c", broker.address, "deferred")
        owner = acquisition_owner(elsewhere, "R1", liveness_s=5.0)
        assert owner is not None and owner.instance == holder.claim.instance
    finally:
        lock_a.release()
        lock_b.release()
        broker.stop()
