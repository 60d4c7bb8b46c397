"""The import map: a TOML file saying how one lab's exports become a bptwin dataset.

It names the files of a batch (several per batch, merged on time), how each is laid out,
which of its columns feed which channel (with unit, factor and offset), the offline samples,
the process constants and the batches. Every key is checked; a typo is an error naming it.
The format is documented with a worked example in ``docs/dataset.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.twin.dataset import PHASES, ROLES, UNIT_CONVERSIONS, DatasetError
from bptwin.twin.lab_import.cells import DEFAULT_MISSING, THOUSANDS
from bptwin.twin.lab_import.clock import describe_formats, is_known_format, time_zone
from bptwin.twin.lab_import.text_table import AUTO, DELIMITERS, WHITESPACE, TextLayout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SAMPLE_FIELDS = ("od600", "dcw_g_l", "glycerol_g_l", "microscopy", "kind", "planned_h")
SAMPLE_TEXT_FIELDS = ("microscopy", "kind")
SAMPLE_KINDS = ("scheduled", "depletion", "extra")
SOP_HOURS = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)  # docs/process.md, "The campaign"
VOLUME_FOLLOWS = ("feed", "base", "samples")


class MapError(DatasetError):
    """An import map that cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layout(_Strict):
    """How a text file is written; every field may be left to detection ("auto")."""

    encoding: str | None = None
    delimiter: str | None = None
    decimal: Literal[".", ",", "auto"] | None = None
    thousands: str | None = None
    skip_rows: int | Literal["auto"] | None = Field(
        default=None, description="lines before the header"
    )
    unit_rows: int | Literal["auto"] | None = Field(
        default=None, description="rows under the header"
    )
    header: bool | None = None
    names: list[str] | None = None
    missing: list[str] | None = Field(default=None, description="cells that mean 'no reading'")
    on_bad_cell: Literal["error", "missing"] | None = None

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = {"tab": "\t", "\\t": "\t", "TAB": "\t"}.get(value, value)
        if value not in (*DELIMITERS, WHITESPACE, AUTO):
            raise ValueError("must be ';', ',', '\\t' (or 'tab'), '|', 'whitespace' or 'auto'")
        return value

    @field_validator("thousands")
    @classmethod
    def _thousands(cls, value: str | None) -> str | None:
        if value is not None and value not in THOUSANDS:
            raise ValueError(f"must be one of {THOUSANDS[1:]!r} or '' (none)")
        return value

    @field_validator("skip_rows", "unit_rows")
    @classmethod
    def _rows(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= 10_000:
            raise ValueError("must be 0 or more")
        return value

    def over(self, base: Layout) -> Layout:
        """This layout, with what it leaves unset taken from ``base``."""
        mine = {
            name: getattr(self, name)
            for name in Layout.model_fields
            if getattr(self, name) is not None
        }
        return Layout.model_validate({**base.model_dump(exclude_none=True), **mine})

    def text_layout(self) -> TextLayout:
        def rows(value: int | str | None) -> int | None:
            return value if isinstance(value, int) else None

        return TextLayout(
            encoding=self.encoding or AUTO,
            delimiter=self.delimiter or AUTO,
            decimal=self.decimal or AUTO,
            thousands=self.thousands or "",
            skip_rows=rows(self.skip_rows),
            unit_rows=rows(self.unit_rows),
            header=True if self.header is None else self.header,
            names=tuple(self.names or ()),
            missing=tuple(DEFAULT_MISSING if self.missing is None else self.missing),
        )


class ColumnSpec(_Strict):
    """One column into one channel: value = convert(unit)(cell) × factor + offset."""

    channel: str
    unit: str | None = Field(
        default=None, description="a named conversion, e.g. 'mbar', 'ppm', 'K'"
    )
    factor: float = 1.0
    offset: float = 0.0

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in CHANNELS_BY_NAME:
            raise ValueError(f"unknown channel {value!r}; known: {', '.join(CHANNELS_BY_NAME)}")
        return value

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        if value is not None and value not in UNIT_CONVERSIONS:
            raise ValueError(f"unknown unit {value!r}; known: {', '.join(UNIT_CONVERSIONS)}")
        return value


class SampleColumn(_Strict):
    """One column of the samples file into one sample field (numbers: × factor + offset)."""

    field: str
    factor: float = 1.0
    offset: float = 0.0

    @field_validator("field")
    @classmethod
    def _field(cls, value: str) -> str:
        if value not in SAMPLE_FIELDS:
            raise ValueError(f"unknown sample field {value!r}; known: {', '.join(SAMPLE_FIELDS)}")
        return value


class TimeSpec(_Strict):
    """Where a file's time is and how it is written."""

    column: str | list[str] = Field(description="a column, or [date column, time column]")
    format: str | None = None
    timezone: str | None = None
    start: str = Field(
        "inoculation",
        description="for elapsed formats: 'inoculation', 'batch' (the batch's starts.<file>) "
        "or a date-time",
    )
    shift_s: float = Field(
        default=0.0, description="added to every time (a logger clock that is off)"
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None and not is_known_format(value):
            raise ValueError(f"unknown time format {value!r}; use {describe_formats()}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                time_zone(value)
            except DatasetError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def columns(self) -> list[str]:
        return [self.column] if isinstance(self.column, str) else list(self.column)


def _short_form(value: Any, key: str) -> Any:
    """``"pH" = "ph"`` is short for ``"pH" = { <key> = "ph" }``."""
    if isinstance(value, dict):
        return {k: {key: v} if isinstance(v, str) else v for k, v in value.items()}
    return value


class _TimedFile(Layout):
    """A file of every batch (``path`` may hold {folder} and {batch}) and its time column."""

    path: str
    time: TimeSpec
    required: bool = True

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str | list) else value


class FileSpec(_TimedFile):
    """One export file of every batch with sensor columns."""

    columns: dict[str, ColumnSpec]

    @field_validator("columns", mode="before")
    @classmethod
    def _short_columns(cls, value: Any) -> Any:
        return _short_form(value, "channel")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if not value:
            raise ValueError("map at least one column to a channel")
        return value


class SamplesSpec(_TimedFile):
    """The offline samples: one file per batch, or one for all with a batch column."""

    columns: dict[str, SampleColumn]
    batch_column: str | None = Field(default=None, description="when one file holds every batch")
    sop_hours: list[float] = Field(default_factory=lambda: list(SOP_HOURS))
    sop_tolerance_min: float = Field(default=30.0, ge=0, le=600)
    kinds: dict[str, Literal["scheduled", "depletion", "extra"]] = Field(
        default_factory=dict, description="the lab's words in the kind column"
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _short_columns(cls, value: Any) -> Any:
        return _short_form(value, "field")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, SampleColumn]) -> dict[str, SampleColumn]:
        fields = [target.field for target in value.values()]
        doubled = sorted({f for f in fields if fields.count(f) > 1})
        if doubled:
            raise ValueError(f"several columns go to {doubled}")
        return value


class ProcessSpec(_Strict):
    """Process constants of a batch, kept in the dataset for features and labels."""

    initial_volume_l: float | None = Field(default=None, gt=0, le=100_000)
    volume_follows: list[Literal["feed", "base", "samples"]] | None = None
    sample_volume_ml: float | None = Field(default=None, ge=0, le=10_000)
    evaporation_ml_per_h: float | None = Field(default=None, ge=0, le=10_000)
    assumed_rq: float | None = Field(default=None, gt=0.2, le=3.0)
    initial_biomass_g_l: float | None = Field(default=None, ge=0, le=500)
    yield_x_per_co2_g_per_mmol: float | None = Field(default=None, gt=0, le=1.0)
    carbon_balance: Literal["constants", "fit"] | None = None
    glycerol_g_l: float | None = Field(default=None, ge=0, le=1000)

    def over(self, base: ProcessSpec) -> ProcessSpec:
        return base.model_copy(update=self.model_dump(exclude_none=True))

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class BatchSpec(_Strict):
    number: int = Field(ge=1, le=99_999)
    folder: str = ""
    phase: str = "B"
    role: str = "training"
    variation: str = "real batch"
    inoculation: str | None = Field(
        default=None, description="date-time; default: the first reading"
    )
    depletion: str | None = None
    depletion_h: float | None = Field(default=None, ge=0, le=1000)
    starts: dict[str, str] = Field(default_factory=dict, description="file name -> start")
    samples_key: str | None = Field(
        default=None, description="the batch's value in the batch column"
    )
    process: ProcessSpec = Field(default_factory=ProcessSpec)

    @field_validator("phase")
    @classmethod
    def _phase(cls, value: str) -> str:
        if value not in PHASES:
            raise ValueError(f"must be one of {', '.join(PHASES)}")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"must be one of {', '.join(ROLES)}")
        return value

    @model_validator(mode="after")
    def _one_depletion(self) -> BatchSpec:
        if self.depletion is not None and self.depletion_h is not None:
            raise ValueError("give depletion (a date-time) or depletion_h, not both")
        return self


class ImportMap(_Strict):
    """The whole import map (see the module docstring)."""

    description: str = ""
    timezone: str = "UTC"
    time_format: str = "iso"
    defaults: Layout = Field(default_factory=Layout)
    files: dict[str, FileSpec]
    samples: SamplesSpec | None = None
    process: ProcessSpec = Field(default_factory=ProcessSpec)
    batches: list[BatchSpec] = Field(min_length=1)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            time_zone(value)
        except DatasetError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("time_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if not is_known_format(value):
            raise ValueError(f"unknown time format {value!r}; use {describe_formats()}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ImportMap:
        if not self.files:
            raise ValueError("files: name at least one export file")
        owners: dict[str, str] = {}
        for file_name, spec in self.files.items():
            for column, target in spec.columns.items():
                earlier = owners.setdefault(target.channel, f"{file_name}.{column}")
                if earlier != f"{file_name}.{column}":
                    raise ValueError(
                        f"channel {target.channel!r} comes from both {earlier} and "
                        f"{file_name}.{column}; map each channel from one column"
                    )
        numbers = [batch.number for batch in self.batches]
        doubled = sorted({n for n in numbers if numbers.count(n) > 1})
        if doubled:
            raise ValueError(f"batch numbers {doubled} appear more than once")
        for batch in self.batches:
            unknown = sorted(set(batch.starts) - set(self.files))
            if unknown:
                raise ValueError(f"batch {batch.number}: starts names unknown files {unknown}")
        shared = self.samples is not None and not any(
            p in self.samples.path for p in ("{folder}", "{batch}")
        )
        if shared and self.samples.batch_column is None and len(self.batches) > 1:  # type: ignore[union-attr]
            raise ValueError(
                "samples: one path for several batches needs batch_column (or put {folder} "
                "or {batch} into the path)"
            )
        return self

    def file_layout(self, spec: Layout) -> Layout:
        return spec.over(self.defaults)

    def resolve(self, pattern: str, batch: BatchSpec) -> Path:
        text = pattern.replace("{folder}", batch.folder or ".").replace(
            "{batch}", str(batch.number)
        )
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def load_map(path: Path | str) -> ImportMap:
    """Read and check an import map; a MapError names the file and every bad key."""
    source = Path(path)
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise MapError(f"import map {source}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"import map {source} is not valid TOML: {exc}") from None
    return parse_map(data, base_dir=source.resolve().parent, where=str(source))


def parse_map(data: dict[str, Any], *, base_dir: Path, where: str = "import map") -> ImportMap:
    try:
        return ImportMap.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"  {key or '(top level)'}: {message}")
        unique = list(dict.fromkeys(problems))
        heading = f"import map {where} has {len(unique)} problem(s):"
        raise MapError("\n".join([heading, *unique])) from None
