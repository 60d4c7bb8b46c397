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
    with pytest.raises(AssertionError, match="invalid choice: 'samples-loglinear'"):
        check_command(["train", "DIR", "--label", "samples-loglinear"], "model.md")


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
