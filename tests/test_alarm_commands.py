"""The alarm command message (twin/commands.py): signed, fresh, once only; and its answer."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from bptwin.twin.commands import (
    ACKNOWLEDGE,
    SHELVE,
    AlarmCommand,
    CommandRefused,
    CommandResult,
    CommandVerifier,
    decode_result,
)
from bptwin.twin.setpoints import ControlKey, ControlKeyError, signed_payload

PREFIX = "bptwin"
NOW = 1_800_000_000.0
KEY = ControlKey(b"k" * 32)
ALARM_ID = "R1/ph/hi"


def verifier(clock: float = NOW) -> CommandVerifier:
    return CommandVerifier(KEY, ["R1"], prefix=PREFIX, clock=lambda: clock)


def command(action: str = ACKNOWLEDGE, **fields: object) -> AlarmCommand:
    made = AlarmCommand.new(
        "R1", action, ALARM_ID, "vera", lifetime_s=10, origin="test", clock=lambda: NOW
    )
    return AlarmCommand(**{**_fields(made), **fields})  # type: ignore[arg-type]


def _fields(made: AlarmCommand) -> dict[str, object]:
    return {name: getattr(made, name) for name in AlarmCommand.__slots__}


def refusal(topic: str, payload: bytes, check: CommandVerifier | None = None) -> CommandRefused:
    with pytest.raises(CommandRefused) as caught:
        (check or verifier()).verify(topic, payload)
    return caught.value


def test_a_signed_fresh_command_is_verified_as_sent() -> None:
    sent = command(SHELVE, reason="probe swap", duration_s=1800.0)
    topic, payload = sent.message(PREFIX, KEY)
    assert topic == "bptwin/v1/R1/commands/alarm"
    got = verifier().verify(topic, payload)
    assert got == sent
    assert got.describe() == "shelve R1/ph/hi by vera for 30 min"


def test_unsigned_forged_and_other_key_commands_are_refused_without_an_id() -> None:
    sent = command()
    topic, payload = sent.message(PREFIX, KEY)
    body = json.loads(payload)
    del body["sig"]
    unsigned = refusal(topic, json.dumps(body).encode())
    assert (unsigned.reason, unsigned.command_id) == ("unsigned", None)

    forged = payload.replace(b'"actor":"vera"', b'"actor":"boss"')
    assert refusal(topic, forged).reason == "bad_signature"
    _, other_key = sent.message(PREFIX, ControlKey(b"x" * 32))
    assert refusal(topic, other_key).reason == "bad_signature"
    # Signed for another reactor's topic, sent on R1's: the topic is part of what is signed.
    _, for_r2 = command(reactor="R2", alarm_id="R2/ph/hi").message(PREFIX, KEY)
    assert refusal(topic, for_r2).reason == "bad_signature"


def test_stale_early_and_long_lived_commands_are_refused_naming_the_command() -> None:
    sent = command()
    topic, payload = sent.message(PREFIX, KEY)
    late = refusal(topic, payload, verifier(NOW + 31))
    assert (late.reason, late.command_id) == ("clock_skew", sent.command_id)
    assert "late, replayed, or a clock is wrong" in str(late)
    assert refusal(topic, payload, verifier(NOW - 31)).reason == "clock_skew"
    assert refusal(topic, payload, verifier(NOW + 11)).reason == "expired"
    _, forever = command(expires_at=NOW + 3600).message(PREFIX, KEY)
    assert refusal(topic, forever).reason == "expired"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"action": "delete"}, "'action'"),
        ({"alarm_id": "R2/ph/hi"}, "'alarm_id'"),
        ({"actor": " "}, "'actor'"),
        ({"action": SHELVE, "duration_s": 0.0}, "'duration_s'"),
        ({"action": SHELVE, "duration_s": 2 * 86400.0}, "'duration_s'"),
        ({"issued_at": "yesterday"}, "'issued_at'"),
        ({"command_id": "x"}, "'command_id'"),
    ],
)
def test_malformed_commands_are_refused_naming_the_field(
    fields: dict[str, object], named: str
) -> None:
    topic, payload = command(**fields).message(PREFIX, KEY)
    refused = refusal(topic, payload)
    assert refused.reason == "malformed" and named in str(refused)


def test_a_command_for_a_reactor_run_elsewhere_is_refused() -> None:
    topic, payload = command(reactor="R9", alarm_id="R9/ph/hi").message(PREFIX, KEY)
    assert "of a reactor this engine runs" in str(refusal(topic, payload))


def test_a_command_is_claimed_once_and_its_answer_kept_for_repeats() -> None:
    check = verifier()
    sent = command()
    assert check.claim(sent.command_id) == (True, None)
    assert check.claim(sent.command_id) == (False, None)  # still being carried out
    answer = CommandResult(sent.command_id, "R1", True, "", "acknowledged", answered_at=NOW)
    check.answered(answer)
    first, earlier = check.claim(sent.command_id)
    assert not first and earlier == answer
    assert earlier.again().duplicate


def test_the_engines_answer_verifies_and_a_forged_one_does_not() -> None:
    answer = CommandResult("c" * 32, "R1", False, "unknown_operator", "'eve' is not registered")
    topic, payload = answer.message_for(PREFIX, KEY)
    assert topic == "bptwin/v1/R1/commands/alarm/result"
    assert decode_result(topic, payload, KEY) == answer
    with pytest.raises(CommandRefused, match="signature"):
        decode_result(topic, payload.replace(b'"ok":false', b'"ok":true'), KEY)
    other = "bptwin/v1/R2/commands/alarm/result"
    with pytest.raises(CommandRefused, match="another reactor"):
        decode_result(other, signed_payload(other, asdict(answer), KEY), KEY)


def test_the_shared_command_key_may_be_group_readable_never_world_readable(
    tmp_path: Path,
) -> None:
    path = ControlKey.generate().write(tmp_path / "commands.key")
    os.chmod(path, 0o640)
    assert ControlKey.from_file(path, "commands.key_file", shared=True).secret
    with pytest.raises(ControlKeyError, match="chmod 600"):
        ControlKey.from_file(path)  # the setpoint key stays private to the service user
    os.chmod(path, 0o644)
    with pytest.raises(ControlKeyError, match=r"commands.key_file: .*chmod 640"):
        ControlKey.from_file(path, "commands.key_file", shared=True)


def test_doctor_names_a_missing_or_unusable_command_key(tmp_path: Path) -> None:
    from bptwin.tui.doctor import Status, check_commands
    from bptwin.tui.settings import Settings

    settings = Settings()
    settings.bus.backend = "mqtt"
    missing = check_commands(settings)
    assert missing.status is Status.WARN and "commands.key_file is not set" in missing.detail
    settings.commands.key_file = tmp_path / "commands.key"
    absent = check_commands(settings)
    assert absent.status is Status.FAIL and "does not exist" in absent.detail
    ControlKey.generate().write(tmp_path / "commands.key")
    assert check_commands(settings).status is Status.PASS
