"""The command line and settings: useful help, clear errors naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bptwin.tui.cli import build_parser, main
from bptwin.tui.commands import COMMANDS
from bptwin.tui.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bptwin.tui.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def command_name(module: str) -> str:
    """The sub-command a module registers: its ``COMMAND`` (``import`` is a Python keyword),
    else its name with dashes."""
    import importlib

    loaded = importlib.import_module(f"bptwin.tui.commands.{module}")
    return str(getattr(loaded, "COMMAND", module.replace("_", "-")))


@pytest.mark.parametrize("command", [command_name(name) for name in COMMANDS])
def test_every_sub_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: bptwin {command}" in out
    assert len(out.splitlines()) >= 3
    # A description is printed as written, not %-formatted: "95 %% CI" would show doubled.
    assert "%%" not in out


def test_version_names_the_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bptwin ")
    assert "textual " in out and "lightgbm " in out


def test_unknown_setting_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text('[bus]\nbackend = "mqtt"\nhots = "broker"\n')
    result = run_cli("--config", str(config), "version")
    assert result.returncode == 2
    assert "bus.hots: unknown setting" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_url_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text('[notebook]\nurl = "mysql://x"\n')
    with pytest.raises(SettingsError, match=r"notebook\.url: must start with sqlite://"):
        load_settings(config)


def test_malformed_toml_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text("[bus\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config)


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text('[bus]\nbackend = "mqtt"\nport = 1884\n[station]\nreactors = ["V1", "V2"]\n')
    monkeypatch.setenv("BPTWIN_BUS__PORT", "1999")
    settings = load_settings(config)
    assert settings.bus.backend == "mqtt"
    assert settings.bus.port == 1999
    assert settings.station.reactors == ["V1", "V2"]


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPTWIN_ACQUISITION__SPEED", "fast")
    with pytest.raises(SettingsError, match="BPTWIN_ACQUISITION__SPEED"):
        load_settings(None)


def test_defaults_are_embedded_under_the_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", "/tmp/bptwin-data")
    settings = load_settings(None)
    assert settings.timeseries.backend == "embedded"
    assert settings.bus.backend == "local"
    assert settings.notebook_url() == "sqlite:////tmp/bptwin-data/notebook.sqlite"


def test_world_readable_secret_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text('[bus]\npassword = "s3cret"\n')
    config.chmod(0o644)
    result = run_cli("--config", str(config), "version")
    assert result.returncode == 0
    assert "readable by other users and holds bus.password" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    config.chmod(0o600)
    assert "readable by other users" not in run_cli("--config", str(config), "version").stderr


def test_example_settings_file_is_valid() -> None:
    settings = load_settings(ROOT / "docs" / "bptwin.example.toml")
    assert settings.bus.backend == "mqtt"
    assert settings.timeseries.api_version == "2"
    assert settings.notebook_url().startswith("postgresql://")


def test_no_help_text_shows_a_doubled_percent() -> None:
    """Every parser and sub-parser, nested ones too (``db upgrade``, ``export-csv channels``)."""
    import argparse

    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = [path] if "%%" in parser.format_help() else []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += walk(child, f"{path} {name}")
        return found

    assert walk(build_parser(), "bptwin") == []
