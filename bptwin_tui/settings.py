"""The one settings object: TOML file, then ``BPTWIN_...`` environment overrides, then defaults.

Every section refuses unknown keys so a typo is reported, not ignored.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from platformdirs import user_config_dir, user_data_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bptwin.tui.api.config import ApiSettings
from bptwin.tui.settings_env import FileLikeEnvSource, unknown_variables
from bptwin.tui.settings_ops import MetricsSettings, NotifySettings

if TYPE_CHECKING:
    from collections.abc import Callable

    from bptwin.database.admission import ClockFault
    from bptwin.drivers.intake import ReadingIntake
    from bptwin.drivers.sources import AcquisitionPlan
    from bptwin.eln.audit_seal import AuditSeal
    from bptwin.eln.calibration_validity import CalibrationPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "BPTWIN_"
DEFAULT_CONFIG_PATH = Path(user_config_dir("bptwin")) / "bptwin.toml"
DEFAULT_DATA_DIR = Path(user_data_dir("bptwin"))

_config_file: ContextVar[Path | None] = ContextVar("bptwin_config_file", default=None)


@functools.lru_cache(maxsize=16)
def _load_audit_seal(key: Path, anchor: Path) -> AuditSeal:
    """Read (or create) the key once per process and file, not on every notebook_url()."""
    from bptwin.eln.audit_seal import seal_from_files

    return seal_from_files(key, anchor)


class SettingsError(Exception):
    """Settings that cannot be used; the message names the key and says why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StationSettings(Section):
    """Where bptwin runs and what it watches."""

    name: str = "bench-1"
    reactors: list[str] = Field(default_factory=lambda: ["R1"], min_length=1)
    data_dir: Path = DEFAULT_DATA_DIR
    operator: str = ""

    @field_validator("reactors")
    @classmethod
    def _reactor_names(cls, reactors: list[str]) -> list[str]:
        for reactor in reactors:
            if not reactor or not all(c.isalnum() or c in "_-." for c in reactor):
                raise ValueError(f"reactor name {reactor!r} may hold letters, digits, '_-.' only")
        if len(set(reactors)) != len(reactors):
            raise ValueError("reactor names must be unique")
        return reactors


class NotebookSettings(Section):
    """The relational store of the lab notebook."""

    url: str = Field("", description="SQLAlchemy URL; empty = SQLite file in the data folder")
    audit_key_file: Path | None = Field(
        None,
        description="key that seals the audit trail (hex, mode 600, created on first use); "
        "default = audit.key in the data folder",
    )
    audit_anchor_file: Path | None = Field(
        None,
        description="newest audit entry this station wrote, sealed; default = audit.anchor "
        "in the data folder",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg2://")):
            raise ValueError("must start with sqlite://, postgresql:// or postgresql+psycopg2://")
        if url.startswith("postgresql") and not urlparse(url).hostname:
            raise ValueError(
                "a postgresql URL needs a host, e.g. postgresql://bptwin@127.0.0.1/bptwin"
            )
        return url


class TimeSeriesSettings(Section):
    """The time-series store: embedded file or InfluxDB (1.x or 2.x)."""

    backend: Literal["embedded", "influxdb"] = "embedded"
    path: Path | None = Field(None, description="embedded store file; default in data_dir")
    url: str = "http://127.0.0.1:8086"
    api_version: Literal["auto", "1", "2"] = "auto"
    token: SecretStr | None = None
    org: str = ""
    bucket: str = "bptwin"
    database: str = "bptwin"
    username: str = ""
    password: SecretStr | None = None
    batch_size: int = Field(500, ge=1, le=100_000)
    flush_interval_s: float = Field(1.0, gt=0, le=60)

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_number(cls, version: object) -> object:
        # `api_version = 1` in the file means the same as "1".
        if isinstance(version, int) and not isinstance(version, bool) and version in (1, 2):
            return str(version)
        return version

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8086")
        return url


class BusSettings(Section):
    """The publish/subscribe bus: in-process or MQTT."""

    backend: Literal["local", "mqtt"] = "local"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    username: str = ""
    password: SecretStr | None = None
    client_id: str = ""
    prefix: str = "bptwin"

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, prefix: str) -> str:
        if not prefix or any(c in prefix for c in "+#") or prefix.endswith("/"):
            raise ValueError("must be a plain topic level without '+', '#' or a trailing '/'")
        return prefix


class SerialSettings(Section):
    port: str = "/dev/ttyUSB0"
    baudrate: int = Field(9600, gt=0)


class AcquisitionSettings(Section):
    """Where readings come from, and what of them the station admits (docs/drivers.md)."""

    # The single-source form (one source for the station, as before sources existed).
    source: Literal["simulated", "mqtt", "serial", "replay", "none"] = "simulated"
    speed: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="simulated/replay speed; 0 = flat out"
    )
    seed: int = 17
    replay_file: Path | None = None
    replay_batch: int | None = Field(
        default=None, ge=1, description="the batch to replay when replay_file is a dataset folder"
    )
    replay_notebook_batch: int | None = Field(
        default=None, ge=1, description="notebook batch that records the replayed samples"
    )
    # A simulated or replayed run acquires reactor "sim-R1" for "R1" (bptwin run / serve), so
    # its readings, alarms and batches never land in a reactor that holds real batches.
    simulated_reactor_prefix: str = Field(
        "sim-",
        pattern=r"^[A-Za-z0-9_.-]*$",
        max_length=16,
        description="prefix of the reactors a simulated or replayed run acquires; '' = same",
    )
    topic_map: dict[str, str] | list[dict[str, Any]] = Field(default_factory=dict)
    serial: SerialSettings = Field(default_factory=SerialSettings)
    # Several sources per reactor, each owning named channels ([[acquisition.sources]]).
    sources: list[dict[str, Any]] = Field(default_factory=list)
    # Admission (database/admission.py, docs/security.md).
    max_clock_skew_s: float = Field(5.0, ge=0, le=3600, allow_inf_nan=False)
    history_horizon_s: float = Field(7200.0, gt=0, le=30 * 86400, allow_inf_nan=False)
    clock_fault_after_s: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)

    @field_validator("sources")
    @classmethod
    def _valid_sources(cls, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bptwin.drivers.sources import DriverConfigError, parse_source

        for index, raw in enumerate(sources):
            try:
                parse_source(raw, f"sources[{index}]")
            except DriverConfigError as exc:
                raise ValueError(str(exc)) from None
        return sources

    def plan(self, reactors: list[str], *, bus_is_mqtt: bool) -> AcquisitionPlan:
        """Who owns which channel; SettingsError names the setting that cannot work."""
        from bptwin.drivers.sources import DriverConfigError, plan_legacy, plan_sources

        legacy_keys = {
            "source",
            "speed",
            "seed",
            "replay_file",
            "replay_batch",
            "replay_notebook_batch",
            "topic_map",
            "serial",
        }
        try:
            if self.sources:
                mixed = sorted(legacy_keys & self.model_fields_set)
                if mixed:
                    raise DriverConfigError(
                        f"acquisition.{mixed[0]} belongs to the single-source form; with "
                        "[[acquisition.sources]] give each source its own settings"
                    )
                return plan_sources(self.sources, reactors=reactors, bus_is_mqtt=bus_is_mqtt)
            return plan_legacy(
                self.source,
                reactors=reactors,
                bus_is_mqtt=bus_is_mqtt,
                speed=self.speed,
                seed=self.seed,
                replay_file=self.replay_file,
                replay_batch=self.replay_batch,
                replay_notebook_batch=self.replay_notebook_batch,
                topic_map=self.topic_map,
                serial_port=self.serial.port,
                baudrate=self.serial.baudrate,
            )
        except DriverConfigError as exc:
            raise SettingsError(str(exc)) from None

    def intake(
        self,
        reactors: list[str],
        *,
        bus_is_mqtt: bool,
        on_clock_fault: Callable[[ClockFault], None] | None = None,
    ) -> ReadingIntake:
        """The station's intake: the plan's drivers and bus readings, each one admitted."""
        from bptwin.drivers.intake import ReadingIntake

        return ReadingIntake(
            self.plan(reactors, bus_is_mqtt=bus_is_mqtt),
            max_clock_skew_s=self.max_clock_skew_s,
            history_horizon_s=self.history_horizon_s,
            clock_fault_after_s=self.clock_fault_after_s,
            on_clock_fault=on_clock_fault,
        )


class ProcessSettings(Section):
    """Process constants of the live batches (a dataset batch brings its own)."""

    assumed_rq: float = Field(
        default=0.7, gt=0.2, le=3.0, description="RQ for CER from CO₂ alone (no O₂ analyser)"
    )
    initial_biomass_g_l: float | None = Field(default=None, ge=0, le=500, description="X₀")
    yield_x_per_co2_g_per_mmol: float | None = Field(default=None, gt=0, le=1.0)
    carbon_balance: Literal["constants", "fit"] = "constants"
    glycerol_g_l: float | None = Field(default=None, ge=0, le=1000)


class VolumeSettings(Section):
    """The liquid volume of the live batches and what it follows."""

    initial_l: float = Field(default=1.0, gt=0, le=100_000)
    follows: list[Literal["feed", "base", "samples"]] = Field(default_factory=list)
    sample_ml: float = Field(default=0.0, ge=0, le=10_000, description="removed per sample")
    evaporation_ml_per_h: float = Field(default=0.0, ge=0, le=10_000)


class ModelSettings(Section):
    """The OD600 model in service."""

    path: Path | None = Field(None, description="model card JSON; default = the shipped model")


class ControlSettings(Section):
    """The control path (docs/control.md): advice only unless mode 1, enabled and confirmed."""

    mode: Literal[0, 1] = 0
    enabled: bool = False
    confirmation_minutes: float = Field(60.0, gt=0, le=1440)
    key_file: Path | None = Field(
        None, description="station key that signs setpoints (hex, mode 600); needed in mode 1"
    )


class CommandSettings(Section):
    """Operators' commands from a viewer to the engine over the bus (docs/operations.md)."""

    key_file: Path | None = Field(
        None,
        description="the operators' command key (hex, mode 640, shared by the engine and the "
        "operator accounts); needed to acknowledge and shelve from a viewer",
    )
    timeout_s: float = Field(
        10.0, gt=0, le=60, description="how long a viewer waits for the answer"
    )
    max_skew_s: float = Field(30.0, gt=0, le=600, description="clock difference a command may have")


class UiSettings(Section):
    theme: Literal["dark", "light"] = "dark"
    refresh_s: float = Field(1.0, gt=0, le=10)


CalibrationKindName = Literal["ph", "do", "offgas", "pressure", "od_probe"]


class CalibrationValiditySettings(Section):
    """Hours a passing calibration of each kind stays valid (docs/operator-guide-setup.md)."""

    ph: float = Field(72.0, gt=0, le=8760)
    do: float = Field(72.0, gt=0, le=8760)
    offgas: float = Field(72.0, gt=0, le=8760)
    pressure: float = Field(720.0, gt=0, le=8760)
    od_probe: float = Field(72.0, gt=0, le=8760)


class CalibrationSettings(Section):
    """Which calibrations must pass before a batch may start, and how long each is valid."""

    mandatory: list[CalibrationKindName] = Field(
        default_factory=lambda: list[CalibrationKindName](["ph", "do", "offgas"])
    )
    validity_hours: CalibrationValiditySettings = Field(default_factory=CalibrationValiditySettings)

    def policy(self) -> CalibrationPolicy:
        """The notebook's rule object: ``NotebookService(..., calibration_policy=...)``."""
        from bptwin.eln.calibration_validity import CalibrationPolicy

        return CalibrationPolicy.from_settings(
            list(dict.fromkeys(self.mandatory)), self.validity_hours.model_dump()
        )


class Settings(BaseSettings):
    """Everything bptwin can be told; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    station: StationSettings = Field(default_factory=StationSettings)
    notebook: NotebookSettings = Field(default_factory=NotebookSettings)
    timeseries: TimeSeriesSettings = Field(default_factory=TimeSeriesSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    acquisition: AcquisitionSettings = Field(default_factory=AcquisitionSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    process: ProcessSettings = Field(default_factory=lambda: ProcessSettings())
    volume: VolumeSettings = Field(default_factory=lambda: VolumeSettings())
    alarms: dict[str, Any] = Field(
        default_factory=dict, description="alarm rules over the SOP defaults (docs/alarms.md)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, FileLikeEnvSource(settings_cls)]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def data_dir(self) -> Path:
        return self.station.data_dir.expanduser()

    @property
    def simulated_run(self) -> bool:
        """The one source re-bases its stamps (simulated or replayed): a run of its own."""
        return not self.acquisition.sources and self.acquisition.source in ("simulated", "replay")

    def simulation_kept_apart(self) -> Settings:
        """These settings, with a simulated or replayed run's reactors renamed
        (``acquisition.simulated_reactor_prefix``): "R1" becomes "sim-R1", so the run's
        readings, alarms and batches never share a reactor with real batches. A real
        acquisition, ``[[acquisition.sources]]`` and an empty prefix are left as they are."""
        prefix = self.acquisition.simulated_reactor_prefix
        if not prefix or not self.simulated_run:
            return self
        reactors = [r if r.startswith(prefix) else f"{prefix}{r}" for r in self.station.reactors]
        return self.model_copy(
            update={"station": self.station.model_copy(update={"reactors": reactors})}
        )

    def notebook_url(self) -> str:
        """The notebook's database URL, with the station's audit key attached to it in this
        process: every audited write through it is sealed and anchored (eln.audit_seal)."""
        url = self.notebook.url or f"sqlite:///{self.data_dir / 'notebook.sqlite'}"
        from bptwin.eln.audit_seal import attach_seal

        attach_seal(url, self.audit_seal())
        return url

    def audit_seal(self) -> AuditSeal:
        """The audit key (created on first use) and anchor; SettingsError naming the file."""
        from bptwin.eln.audit_seal import AuditKeyError

        key = (self.notebook.audit_key_file or self.data_dir / "audit.key").expanduser()
        anchor = (self.notebook.audit_anchor_file or self.data_dir / "audit.anchor").expanduser()
        try:
            return _load_audit_seal(key, anchor)
        except AuditKeyError as exc:
            raise SettingsError(str(exc)) from None

    def timeseries_path(self) -> Path:
        return (self.timeseries.path or self.data_dir / "timeseries.sqlite").expanduser()

    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def process_constants(self) -> dict[str, Any]:
        """[process] and [volume] as the constants twin/process_inputs.py reads."""
        constants: dict[str, Any] = {
            key: value
            for key, value in self.process.model_dump().items()
            if value is not None and key != "carbon_balance"
        }
        constants["carbon_balance"] = self.process.carbon_balance
        constants["initial_volume_l"] = self.volume.initial_l
        constants["volume_follows"] = list(self.volume.follows)
        constants["sample_volume_ml"] = self.volume.sample_ml
        constants["evaporation_ml_per_h"] = self.volume.evaporation_ml_per_h
        return constants


def load_settings(path: Path | str | None = None, *, require_file: bool = False) -> Settings:
    """Read settings from ``path`` (or the user's config file if present) plus the environment."""
    config_file: Path | None = Path(path).expanduser() if path is not None else DEFAULT_CONFIG_PATH
    assert config_file is not None
    if not config_file.exists():
        if path is not None or require_file:
            raise SettingsError(f"settings file {config_file} does not exist")
        config_file = None
    if config_file is not None:
        _check_toml(config_file)
    unknown = unknown_variables(os.environ, Settings, ENV_PREFIX)
    if unknown:
        raise SettingsError("bad environment:\n" + "\n".join(f"  {line}" for line in unknown))
    token = _config_file.set(config_file)
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, config_file)) from None
    finally:
        _config_file.reset(token)


def _check_toml(config_file: Path) -> None:
    try:
        with config_file.open("rb") as handle:
            tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {config_file} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"settings file {config_file} cannot be read: {exc.strerror}") from None


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" in {config_file}" if config_file else ""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        env_name = ENV_PREFIX + "__".join(str(part) for part in error["loc"]).upper()
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"  {key}: {message} (file key '{key}' or environment {env_name})")
    heading = "setting" if len(problems) == 1 else "settings"
    return f"bad {heading}{where}:\n" + "\n".join(problems)


SECRET_KEYS = ("password", "token")


def secrets_in_world_readable_file(path: Path) -> list[str]:
    """Secret keys held by a settings file that other users can read (to warn about)."""
    try:
        mode = path.stat().st_mode
        if not mode & (stat.S_IROTH | stat.S_IRGRP):
            return []
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return [
        f"{section}.{key}"
        for section, values in data.items()
        if isinstance(values, dict)
        for key in values
        if key in SECRET_KEYS and values[key]
    ]


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict with secrets masked, safe to log or show."""
    return settings.model_dump(mode="json")  # SecretStr dumps as '**********'


# Path settings bptwin creates when they are missing; every other one names a file that must exist.
CREATED_PATHS = frozenset({"station.data_dir", "timeseries.path"})


def file_settings(settings: BaseModel, prefix: str = "") -> list[tuple[str, Path]]:
    """Every configured path setting that must exist, as (key, path), in declaration order."""
    found: list[tuple[str, Path]] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            found += file_settings(value, key + ".")
        elif isinstance(value, Path) and key not in CREATED_PATHS:
            found.append((key, value.expanduser()))
    return found


def missing_files(settings: Settings) -> list[str]:
    """One line per path setting whose file is not there, naming the setting."""
    return [
        f"{key}: {path} does not exist"
        for key, path in file_settings(settings)
        if not path.exists()
    ]


def require_file(key: str, path: Path | None) -> None:
    """SettingsError naming ``key`` when ``path`` is set and missing (before a library opens it)."""
    if path is not None and not path.expanduser().exists():
        raise SettingsError(f"{key}: {path} does not exist")


def environment_overrides() -> list[str]:
    return sorted(name for name in os.environ if name.startswith(ENV_PREFIX))
