"""What a receiver checks before obeying a setpoint (twin/setpoints.py): each forgery is refused
with its reason and counted; the station key file is checked like a private key."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from bptwin.database.bus.payloads import iso_timestamp
from bptwin.twin.setpoints import (
    ControlKey,
    ControlKeyError,
    SetpointCommand,
    SetpointRefused,
    SetpointVerifier,
    signed_payload,
)

T0 = 1_790_000_000.0
KEY = ControlKey.generate()
TOPIC = "bptwin/v1/R1/setpoints/stirrer_speed"


def payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reactor": "R1",
        "parameter": "stirrer_speed",
        "ts": iso_timestamp(T0),
        "seq": int(T0 * 1000),
        "value": 650.0,
        "unit": "rpm",
        "previous": 600.0,
        "mode": 1,
        "rule": "do_low_stirrer_up",
        "reason": "DO 24 %",
        "supervisor": "sam",
        "authorised_until": iso_timestamp(T0 + 3600),
        "source": "bptwin",
    }
    data.update(changes)
    return data


def verifier(now: float = T0) -> SetpointVerifier:
    return SetpointVerifier(KEY, clock=lambda: now)


def refused(check: SetpointVerifier, topic: str, message: bytes) -> str:
    with pytest.raises(SetpointRefused) as excinfo:
        SetpointCommand.from_message(topic, message, check)
    return excinfo.value.reason


def test_a_signed_fresh_authorised_setpoint_within_limits_is_accepted() -> None:
    check = verifier()
    command = SetpointCommand.from_message(TOPIC, signed_payload(TOPIC, payload(), KEY), check)
    assert (command.reactor, command.parameter, command.value, command.unit) == (
        "R1",
        "stirrer_speed",
        650.0,
        "rpm",
    )
    assert command.seq == int(T0 * 1000) and command.rule == "do_low_stirrer_up"
    assert check.accepted == 1 and sum(check.refused.values()) == 0


def test_the_anonymous_unsigned_setpoint_of_the_finding_is_refused() -> None:
    # The finding: mosquitto_pub of 1999 rpm, authorised until the year 2000, no signature.
    forged = {"ts": iso_timestamp(T0), "value": 1999, "authorised_until": "2000-01-01T00:00:00Z"}
    check = verifier()
    assert refused(check, TOPIC, json.dumps(forged).encode()) == "unsigned"
    assert check.refused["unsigned"] == 1 and check.accepted == 0


@pytest.mark.parametrize(
    ("name", "message", "reason"),
    [
        ("another key", signed_payload(TOPIC, payload(), ControlKey.generate()), "bad_signature"),
        ("value changed after signing", None, "bad_signature"),
        (
            "signed for another reactor's topic",
            signed_payload("bptwin/v1/R2/setpoints/stirrer_speed", payload(reactor="R2"), KEY),
            "bad_signature",
        ),
        (
            "expired",
            signed_payload(TOPIC, payload(authorised_until=iso_timestamp(T0 - 1)), KEY),
            "expired",
        ),
        (
            "authorised a week ahead",
            signed_payload(TOPIC, payload(authorised_until=iso_timestamp(T0 + 7 * 86400)), KEY),
            "expired",
        ),
        (
            "sent an hour ago",
            signed_payload(TOPIC, payload(ts=iso_timestamp(T0 - 3600)), KEY),
            "clock_skew",
        ),
        ("1999 rpm", signed_payload(TOPIC, payload(value=1999.0), KEY), "out_of_limits"),
        ("unit changed", signed_payload(TOPIC, payload(unit="rps"), KEY), "malformed"),
        ("no seq", signed_payload(TOPIC, payload(seq=None), KEY), "malformed"),
        ("names R2 on R1's topic", signed_payload(TOPIC, payload(reactor="R2"), KEY), "malformed"),
        ("sig not last", json.dumps({"sig": "0" * 64, **payload()}).encode(), "unsigned"),
    ],
)
def test_forged_or_stale_setpoints_are_refused_and_counted(
    name: str, message: bytes | None, reason: str
) -> None:
    if message is None:
        message = signed_payload(TOPIC, payload(), KEY).replace(b"650.0", b"999.0")
    check = verifier()
    assert refused(check, TOPIC, message) == reason, name
    assert check.refused[reason] == 1 and check.accepted == 0


def test_a_replayed_setpoint_is_refused_even_within_the_skew() -> None:
    check = verifier()
    message = signed_payload(TOPIC, payload(), KEY)
    SetpointCommand.from_message(TOPIC, message, check)
    assert refused(check, TOPIC, message) == "replayed"
    older = signed_payload(TOPIC, payload(seq=int(T0 * 1000) - 5), KEY)
    assert refused(check, TOPIC, older) == "replayed"
    newer = signed_payload(TOPIC, payload(seq=int(T0 * 1000) + 1, value=700.0), KEY)
    assert SetpointCommand.from_message(TOPIC, newer, check).value == 700.0


def test_bad_topics_are_refused_by_name() -> None:
    check = verifier()
    assert refused(check, "bptwin/v1/R1/sensors/do", b"{}") == "malformed"
    assert refused(check, "bptwin/v1/R1/setpoints/temperature", b"{}") == "malformed"
    only_r2 = SetpointVerifier(KEY, clock=lambda: T0, reactors=("R2",))
    assert refused(only_r2, TOPIC, signed_payload(TOPIC, payload(), KEY)) == "unknown_reactor"


def test_key_files_are_created_private_and_read_back(tmp_path: Path) -> None:
    path = ControlKey.generate().write(tmp_path / "control.key")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert ControlKey.from_file(path).secret == bytes.fromhex(path.read_text())
    with pytest.raises(FileExistsError):
        ControlKey.generate().write(path)  # a key is never overwritten


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ("ab" * 32, 0o644, "chmod 600"),
        ("ab" * 32, 0o660, "chmod 600"),
        ("ab" * 8, 0o600, "at least 32 bytes"),
        ("not hex at all", 0o600, "hexadecimal"),
    ],
)
def test_unsafe_or_bad_key_files_are_refused_naming_the_setting(
    tmp_path: Path, content: str, mode: int, words: str
) -> None:
    path = tmp_path / "control.key"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(ControlKeyError, match=words) as excinfo:
        ControlKey.from_file(path)
    assert str(excinfo.value).startswith(f"control.key_file: {path}")


def test_a_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ControlKeyError, match="openssl rand -hex 32"):
        ControlKey.from_file(tmp_path / "none.key")
    assert repr(ControlKey.generate()) == "ControlKey()"  # the secret never shows in a log


def test_the_verify_example_in_control_md_accepts_ours_and_refuses_a_forgery() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "control.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(encoding="utf-8"), flags=re.S)
    (example,) = [block for block in blocks if "def verify(" in block]
    namespace: dict[str, Any] = {}
    exec(example, namespace)  # the documented gateway check, as a reader would copy it
    verify = namespace["verify"]
    message = signed_payload(TOPIC, payload(), KEY)
    assert json.loads(verify(KEY.secret, TOPIC, message)) == payload()
    for forged, words in (
        (json.dumps(payload()).encode(), "unsigned"),
        (signed_payload(TOPIC, payload(), ControlKey.generate()), "bad signature"),
        (message.replace(b"650.0", b"999.0"), "bad signature"),
    ):
        with pytest.raises(ValueError, match=words):
            verify(KEY.secret, TOPIC, forged)
