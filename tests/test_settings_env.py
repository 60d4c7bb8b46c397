"""Environment overrides are read like the settings file; a variable naming nothing fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bptwin.tui.settings import Settings, SettingsError, load_settings
from bptwin.tui.settings_env import setting_variables, unknown_variables


def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **environment: str) -> Settings:
    config = tmp_path / "bptwin.toml"
    config.write_text("")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return load_settings(config)


# One case per kind of setting: (variable, text, where to read it, the value the file gives).
CASES: list[tuple[str, str, tuple[str, ...], Any]] = [
    ("BPTWIN_CONTROL__MODE", "0", ("control", "mode"), 0),
    ("BPTWIN_CONTROL__MODE", "1", ("control", "mode"), 1),
    ("BPTWIN_BUS__PORT", "1999", ("bus", "port"), 1999),
    ("BPTWIN_ACQUISITION__SPEED", "60", ("acquisition", "speed"), 60.0),
    ("BPTWIN_UI__REFRESH_S", "0.5", ("ui", "refresh_s"), 0.5),
    ("BPTWIN_BUS__TLS", "true", ("bus", "tls"), True),
    ("BPTWIN_CONTROL__ENABLED", "false", ("control", "enabled"), False),
    ("BPTWIN_STATION__REACTORS", '["R1", "R2"]', ("station", "reactors"), ["R1", "R2"]),
    ("BPTWIN_VOLUME__FOLLOWS", '["feed", "base"]', ("volume", "follows"), ["feed", "base"]),
    ("BPTWIN_CALIBRATION__MANDATORY", '["ph"]', ("calibration", "mandatory"), ["ph"]),
    ("BPTWIN_STATION__DATA_DIR", "/srv/bptwin", ("station", "data_dir"), Path("/srv/bptwin")),
    ("BPTWIN_BUS__CA_FILE", "/etc/bptwin/ca.crt", ("bus", "ca_file"), Path("/etc/bptwin/ca.crt")),
    ("BPTWIN_TIMESERIES__API_VERSION", "1", ("timeseries", "api_version"), "1"),
    ("BPTWIN_TIMESERIES__API_VERSION", "auto", ("timeseries", "api_version"), "auto"),
    ("BPTWIN_UI__THEME", "light", ("ui", "theme"), "light"),
    ("BPTWIN_ACQUISITION__REPLAY_BATCH", "16", ("acquisition", "replay_batch"), 16),
    ("BPTWIN_NOTIFY__SMTP__PORT", "25", ("notify", "smtp", "port"), 25),
    ("BPTWIN_CALIBRATION__VALIDITY_HOURS__PH", "48", ("calibration", "validity_hours", "ph"), 48.0),
    ("BPTWIN_PROCESS__CARBON_BALANCE", "fit", ("process", "carbon_balance"), "fit"),
]


@pytest.mark.parametrize(("variable", "text", "where", "expected"), CASES)
def test_environment_value_is_read_like_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    text: str,
    where: tuple[str, ...],
    expected: Any,
) -> None:
    settings: Any = _load(tmp_path, monkeypatch, **{variable: text})
    for part in where:
        settings = getattr(settings, part)
    assert settings == expected
    assert type(settings) is type(expected)


def test_alarm_table_values_from_the_environment_are_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bptwin.twin.alarm_rules import rules_from_config

    settings = _load(
        tmp_path,
        monkeypatch,
        BPTWIN_ALARMS__SENSOR_FROZEN__ENABLED="false",
        BPTWIN_ALARMS__TEMPERATURE__ON_DELAY_S="45",
    )
    assert settings.alarms == {
        "sensor_frozen": {"enabled": False},
        "temperature": {"on_delay_s": 45},
    }
    rules = {rule.name: rule for rule in rules_from_config(settings.alarms)}
    assert "sensor_frozen" not in rules
    assert {level.on_delay_s for level in rules["temperature"].levels} == {45}


@pytest.mark.parametrize("text", ["0", "1", "1.0", "true", "2", "1.5", "advisory"])
def test_environment_and_file_agree_on_every_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The same text in the file and in BPTWIN_CONTROL__MODE: both accepted alike or refused."""
    config = tmp_path / "mode.toml"
    config.write_text(
        f"[control]\nmode = {text}\n" if text != "advisory" else "[control]\nmode = 'advisory'\n"
    )
    outcomes = []
    for load in (
        lambda: load_settings(config),
        lambda: _load(tmp_path, monkeypatch, BPTWIN_CONTROL__MODE=text),
    ):
        try:
            outcomes.append(load().control.mode)
        except SettingsError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("text", ["2", "advisory", "1.5", ""])
def test_out_of_range_literal_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    with pytest.raises(SettingsError, match="BPTWIN_CONTROL__MODE"):
        _load(tmp_path, monkeypatch, BPTWIN_CONTROL__MODE=text)


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("BPTWIN_BUSS__HOST", "BPTWIN_BUS__HOST"),
        ("BPTWIN_BUS_HOST", "BPTWIN_BUS__HOST"),
        ("BPTWIN_NOTIFY__SMTP__PASWORD", "BPTWIN_NOTIFY__SMTP__PASSWORD"),
        ("BPTWIN_CONTROL__MODES", "BPTWIN_CONTROL__MODE"),
    ],
)
def test_variable_naming_no_setting_is_refused_with_the_closest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, closest: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        _load(tmp_path, monkeypatch, **{variable: "x"})
    assert variable in str(refused.value)
    assert f"did you mean {closest}?" in str(refused.value)


def test_variable_far_from_any_setting_is_refused_without_a_guess() -> None:
    problems = unknown_variables({"BPTWIN_ZZZZZZZZZZZZ": "1"}, Settings)
    assert problems == ["environment BPTWIN_ZZZZZZZZZZZZ: names no setting"]


def test_free_form_tables_and_command_variables_are_not_refused() -> None:
    environment = {
        "BPTWIN_ALARMS__RQ_HIGH__HI": "1.3",  # [alarms] holds rules the user names
        "BPTWIN_SUPERVISOR_PIN": "1234",  # read by `bptwin accept`
        "BPTWIN_TEST_POSTGRES_URL": "postgresql://x@127.0.0.1/x",  # the test fixtures
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environment, Settings) == []


def test_every_setting_has_an_environment_name() -> None:
    names = setting_variables(Settings)
    assert "BPTWIN_BUS__CA_FILE" in names
    assert "BPTWIN_NOTIFY__SMTP__PASSWORD" in names
    assert names["BPTWIN_ALARMS"] is True  # free-form below
    assert names["BPTWIN_BUS"] is False


@pytest.mark.parametrize(("written", "expected"), [("1", "1"), ('"2"', "2"), ('"auto"', "auto")])
def test_api_version_as_number_or_text_in_the_file(
    tmp_path: Path, written: str, expected: str
) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text(f"[timeseries]\napi_version = {written}\n")
    assert load_settings(config).timeseries.api_version == expected


@pytest.mark.parametrize("written", ["3", "true", '"v2"'])
def test_api_version_other_than_auto_1_2_is_refused(tmp_path: Path, written: str) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text(f"[timeseries]\napi_version = {written}\n")
    with pytest.raises(SettingsError, match=r"timeseries\.api_version"):
        load_settings(config)
