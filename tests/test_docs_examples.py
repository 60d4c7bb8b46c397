"""The checks that run the documentation's examples (tests/docs_examples.py) catch what drifts."""

from __future__ import annotations

import pytest

from bptwin.tui.settings import SettingsError
from bptwin.twin.alarm_rules import AlarmConfigError
from tests.docs_examples import (
    bptwin_arguments,
    check_command,
    check_environment,
    check_toml,
    command_lines,
)


def test_settings_example_with_an_unknown_key_fails() -> None:
    check_toml('[bus]\nbackend = "mqtt"\nhost = "broker.lab"\n', "ok")
    with pytest.raises(SettingsError, match=r"bus\.hots: unknown setting"):
        check_toml('[bus]\nhots = "broker.lab"\n', "typo")


def test_alarm_example_naming_no_rule_fails() -> None:
    check_toml("[alarms.sensor_frozen]\nenabled = false\n", "ok")
    with pytest.raises(AlarmConfigError, match="no rule named 'frozen'"):
        check_toml("[alarms.frozen]\nenabled = false\n", "wrong rule")
    with pytest.raises(AlarmConfigError, match=r"alarms\.do_low\.on_delay_s does nothing"):
        check_toml("[alarms.do_low]\non_delay_s = 240\n", "no-op key")


def test_toml_that_is_neither_settings_nor_an_import_map_fails() -> None:
    with pytest.raises(AssertionError, match="neither settings"):
        check_toml('[[outputs.mqtt]]\nservers = ["127.0.0.1:1883"]\n', "telegraf")


def test_command_missing_its_argument_or_with_an_unknown_option_fails() -> None:
    check_command(["validate", "build/campaign", "--model", "v1"], "ok")
    with pytest.raises(AssertionError, match="bptwin validate"):
        check_command(["validate"], "README")  # the dataset folder is required
    with pytest.raises(AssertionError, match="invalid choice: 'samples-cubic'"):
        check_command(["train", "DIR", "--label", "samples-cubic"], "model.md")


def test_synopsis_placeholders_and_transcripts() -> None:
    line = "bptwin simulate --campaign --out DIR --seed S [--faults] [--hours H] [--quiet]"
    arguments = bptwin_arguments(line)
    assert arguments == [
        "simulate", "--campaign", "--out", "DIR", "--seed", "7", "--faults", "--hours", "24",
        "--quiet",
    ]  # fmt: skip
    check_command(arguments, "synopsis")
    transcript = "$ bptwin doctor\nbptwin doctor: station x on y\nCHECK STATUS\n"
    assert list(command_lines(transcript)) == ["bptwin doctor"]
    assert bptwin_arguments("bptwin — reactor R1 · batch 7", strict=False) is None


def test_environment_example_naming_no_setting_fails() -> None:
    check_environment({"BPTWIN_BUS__PASSWORD": "x", "BPTWIN_CONTROL__MODE": "1"}, "ok")
    with pytest.raises(AssertionError, match="BPTWIN_BUS_PASSWORD"):
        check_environment({"BPTWIN_BUS_PASSWORD": "x"}, "one underscore")


def _table_commands(text: str) -> list[str]:
    """The commands of README's command table: its first cell's code spans, alternatives
    (``list/show``, ``channels\\|notebook``) expanded into one command each."""
    import itertools
    import re

    commands = []
    for row in text.splitlines():
        if not row.startswith("| `bptwin"):
            continue
        first_cell = re.split(r"(?<!\\) \| ", row[2:])[0]
        for span in re.findall(r"`(bptwin[^`]*)`", first_cell):
            words = [
                re.split(r"\\\||/", word) if not word.startswith(("-", "[", ".")) else [word]
                for word in span.split()
            ]
            commands += [" ".join(choice) for choice in itertools.product(*words)]
    return commands


def test_readme_command_table_runs_as_written() -> None:
    """Each command of README's table is accepted by bptwin's parser (``bptwin validate`` alone
    used to be listed though it needs its dataset folder)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    commands = _table_commands(text)
    assert "bptwin models restore" in commands and "bptwin export-csv notebook" in commands
    assert len(commands) >= 15
    for command in commands:
        arguments = bptwin_arguments(command)
        assert arguments is not None, command
        check_command(arguments, f"README.md: {command}")


def test_readme_table_check_catches_a_missing_argument() -> None:
    with pytest.raises(AssertionError, match="required: dataset"):
        for command in _table_commands("| `bptwin validate` | score a model |\n"):
            check_command(bptwin_arguments(command) or [], command)


def test_signature_synopsis_is_compared_with_the_code() -> None:
    from tests.docs_synopsis import check_synopsis

    shown = 'ReplayDriver(sink, recording, *, reactor=None, speed=1.0, name="replay")\n'
    assert check_synopsis(shown) == 1  # the code's extra optional parameters may be left out
    with pytest.raises(AssertionError, match=r"default 2\.0 != 1\.0"):
        check_synopsis(shown.replace("speed=1.0", "speed=2.0"))
    with pytest.raises(AssertionError, match="no parameter 'records'"):
        check_synopsis(shown.replace("recording", "records"))
    with pytest.raises(AssertionError, match="required parameter 'recording'"):
        check_synopsis("ReplayDriver(sink, *, reactor=None)\n")
