"""Sources per reactor: which source owns which channel, and the drivers that read them.

A station reads each reactor from one or more *sources* (``[[acquisition.sources]]``,
docs/drivers.md): a serial off-gas analyser, a lab's MQTT topics, bptwin's own topics on the
bus, a simulated reactor, a recorded batch. Each source claims named channels of named
reactors; a (reactor, channel) claimed by two sources is a configuration error naming both.
``channels = ["*"]`` claims every catalogue channel no other source claims for that reactor
(the default of the sources that can deliver any channel).

A kind of source is a :class:`SourceKind` in :data:`SOURCE_KINDS`: its options (a pydantic
model, so a typo is refused with the key named), its default channels, and how it builds its
drivers. OPC UA and Modbus sources plug in with :func:`register_kind` the same way.

The plan says who owns what; :meth:`AcquisitionPlan.policy` turns that into the admission
policy (database/admission.py) that checks every reading where it enters the station.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bptwin.database.admission import AdmissionPolicy
from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.drivers.base import Driver, ReadingSink
from bptwin.drivers.field_points import (
    PointOptions,
    check_point_ownership,
    fill_point_reactors,
    point_channels,
    point_reactor,
)

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.database.reading import Reading
    from bptwin.drivers.replay import LoadedReplay

REST = "*"
SERIAL_CHANNELS = ("offgas_o2", "offgas_co2", "offgas_flow")
LEGACY_KINDS = ("simulated", "mqtt", "serial", "replay", "none")
# How the single-source form names a source's keys (``acquisition.<name>``), for messages.
LEGACY_KEYS = {
    "file": "replay_file",
    "batch": "replay_batch",
    "notebook_batch": "replay_notebook_batch",
    "port": "serial.port",
    "baudrate": "serial.baudrate",
}


class DriverConfigError(ValueError):
    """Settings that cannot make a source; the message names the setting."""


# -- options -----------------------------------------------------------------------------------


class SourceOptions(BaseModel):
    """What every source says: its name, kind, reactors and channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    kind: str
    reactors: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not all(c.isascii() and (c.isalnum() or c in "_-.") for c in name):
            raise ValueError(f"source name {name!r} may hold ASCII letters, digits, '_-.' only")
        return name

    @field_validator("channels")
    @classmethod
    def _catalogue_channels(cls, channels: list[str]) -> list[str]:
        unknown = [c for c in channels if c != REST and c not in CHANNELS_BY_NAME]
        if unknown:
            raise ValueError(
                f"unknown channels {unknown} (known: {', '.join(CHANNELS_BY_NAME)}, or '*')"
            )
        if len(set(channels)) != len(channels):
            raise ValueError("a channel is listed twice")
        return channels


class SimulatedOptions(SourceOptions):
    kind: Literal["simulated"] = "simulated"
    speed: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="simulated s per wall s; 0 = flat out"
    )
    seed: int = 17


class ReplayOptions(SourceOptions):
    kind: Literal["replay"] = "replay"
    file: Path
    speed: float = Field(1.0, ge=0, allow_inf_nan=False)
    batch: int | None = Field(None, ge=0, description="batch number when file is a dataset folder")
    notebook_batch: int | None = Field(
        None, ge=1, description="notebook batch that records a dataset batch's offline samples"
    )


class SerialOptions(SourceOptions):
    kind: Literal["serial"] = "serial"
    port: str = Field(min_length=1)
    baudrate: int = Field(9600, gt=0)


class MqttOptions(SourceOptions):
    kind: Literal["mqtt"] = "mqtt"
    topic_map: dict[str, str] | list[dict[str, Any]]


class BptwinTopicsOptions(SourceOptions):
    kind: Literal["bptwin"] = "bptwin"


# -- kinds -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What building drivers needs from the station, as plain values."""

    sink_for: Callable[[str], ReadingSink]
    station_reactors: tuple[str, ...]
    bus: Bus | None = None
    bus_is_mqtt: bool = False
    prefix: str = "bptwin"
    on_sample: Callable[[Any], None] | None = None
    # Recordings the station loaded ahead, by source name (a dataset batch with its samples).
    replays: Mapping[str, LoadedReplay] = field(default_factory=dict)


class SourceKind(ABC):
    """One kind of source: its options, its default channels and how it builds drivers."""

    name: ClassVar[str]
    options_model: ClassVar[type[SourceOptions]]
    # Stamps come from the station's clock or are re-based to it (simulated, replay): such
    # readings may lie further in the past than the history horizon.
    stamps_from_station: ClassVar[bool] = False
    # Readings arrive over bptwin's own topics on the station's bus, not from a driver.
    over_bus: ClassVar[bool] = False
    # Serves exactly one reactor (a serial port, a recording).
    one_reactor: ClassVar[bool] = False
    # Emits channels it was not given silently dropped (simulated: all 19 of them); a source
    # whose input names its channels (MQTT) lets admission count the ones it does not own.
    drops_unclaimed: ClassVar[bool] = True

    def default_channels(self, options: SourceOptions) -> list[str]:
        return [REST]

    def check(self, options: SourceOptions, context_is_mqtt: bool) -> None:  # noqa: B027
        """Raise DriverConfigError naming the option that cannot work."""

    @abstractmethod
    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        """The drivers of ``source`` (none for sources that arrive over the bus)."""


class SimulatedKind(SourceKind):
    name = "simulated"
    options_model = SimulatedOptions
    stamps_from_station = True

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        from bptwin.drivers.simulated import SimulatedReactorDriver

        options = source.options
        assert isinstance(options, SimulatedOptions)
        drivers: list[Driver] = []
        for reactor in source.reactors:
            # The seed moves with the reactor's place in the station, so each differs.
            index = context.station_reactors.index(reactor)
            drivers.append(
                SimulatedReactorDriver(
                    sink,
                    reactor=reactor,
                    seed=options.seed + index,
                    speed=options.speed,
                    on_sample=context.on_sample,
                    name=_driver_name(source, reactor),
                )
            )
        return drivers


class ReplayKind(SourceKind):
    name = "replay"
    options_model = ReplayOptions
    stamps_from_station = True
    one_reactor = True

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        from bptwin.drivers.replay import ReplayDriver, ReplayError

        options = source.options
        assert isinstance(options, ReplayOptions)
        loaded = context.replays.get(source.name)
        try:
            return [
                ReplayDriver(
                    sink,
                    options.file if loaded is None else loaded.recording,
                    reactor=source.reactors[0],
                    speed=options.speed,
                    shift_to_now=True,
                    batch=options.batch,
                    on_sample=None if loaded is None else loaded.on_sample,
                    offset=None if loaded is None else loaded.offset,
                    name=source.name,
                )
            ]
        except ReplayError as exc:
            raise DriverConfigError(f"{source.setting('file')}: {exc}") from None


class SerialKind(SourceKind):
    name = "serial"
    options_model = SerialOptions
    one_reactor = True

    def default_channels(self, options: SourceOptions) -> list[str]:
        return list(SERIAL_CHANNELS)

    def check(self, options: SourceOptions, context_is_mqtt: bool) -> None:
        extra = [c for c in options.channels if c not in SERIAL_CHANNELS]
        if extra:
            raise DriverConfigError(
                f"channels: the off-gas analyser gives {', '.join(SERIAL_CHANNELS)} only, "
                f"not {extra}"
            )

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        from bptwin.drivers.serial_analyser import SerialAnalyserDriver

        options = source.options
        assert isinstance(options, SerialOptions)
        return [
            SerialAnalyserDriver(
                sink,
                port=options.port,
                reactor=source.reactors[0],
                baudrate=options.baudrate,
                name=source.name,
            )
        ]


class MqttKind(SourceKind):
    name = "mqtt"
    options_model = MqttOptions
    drops_unclaimed = False

    def default_channels(self, options: SourceOptions) -> list[str]:
        assert isinstance(options, MqttOptions)
        named = _topic_map_channels(options.topic_map)
        return [REST] if named is None else named

    def check(self, options: SourceOptions, context_is_mqtt: bool) -> None:
        from bptwin.drivers.topic_map import TopicMap, TopicMapError

        assert isinstance(options, MqttOptions)
        if not context_is_mqtt:
            raise DriverConfigError(
                "needs bus.backend = 'mqtt' (the in-process bus receives nothing from outside)"
            )
        if not options.topic_map:
            raise DriverConfigError(
                "topic_map: empty; sensors that publish bptwin's own topics are a source of "
                "kind 'bptwin'"
            )
        try:
            TopicMap.from_settings(options.topic_map)
        except (TopicMapError, ValueError) as exc:
            raise DriverConfigError(f"topic_map: {exc}") from None

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        from bptwin.drivers.mqtt_source import MqttSourceDriver
        from bptwin.drivers.topic_map import TopicMap, TopicMapError

        options = source.options
        assert isinstance(options, MqttOptions) and context.bus is not None
        try:
            mapping = TopicMap.from_settings(options.topic_map)
            return [
                MqttSourceDriver(
                    sink,
                    context.bus,
                    mapping,
                    reactor=source.reactors[0],
                    name=source.name,
                    sink_prefix=context.prefix,
                )
            ]
        except (TopicMapError, ValueError) as exc:
            raise DriverConfigError(f"{source.where}: topic_map: {exc}") from None


class BptwinTopicsKind(SourceKind):
    """Sensors or another station publishing bptwin's own contract (docs/mqtt.md)."""

    name = "bptwin"
    options_model = BptwinTopicsOptions
    over_bus = True
    drops_unclaimed = False

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        return []  # the station's own bus subscription receives them


SOURCE_KINDS: dict[str, SourceKind] = {}


def register_kind(kind: SourceKind) -> None:
    """Make a kind of source available to ``[[acquisition.sources]]`` (e.g. OPC UA, Modbus)."""
    SOURCE_KINDS[kind.name] = kind


for _kind in (SimulatedKind(), ReplayKind(), SerialKind(), MqttKind(), BptwinTopicsKind()):
    register_kind(_kind)


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedSource:
    """A source with its reactors and the channels it owns on each."""

    where: str  # how the settings name it, for messages: "acquisition.sources[1] ('probes')"
    kind: SourceKind
    options: SourceOptions
    reactors: tuple[str, ...]
    channels: Mapping[str, frozenset[str]]  # reactor -> owned channels
    legacy: bool = False  # from the single-source form (``acquisition.source``)

    @property
    def name(self) -> str:
        return self.options.name

    def key_name(self, key: str) -> str:
        """The name of one of this source's keys in the form the settings use."""
        return LEGACY_KEYS.get(key, key) if self.legacy else key

    def setting(self, key: str) -> str:
        """Where the settings hold one of this source's keys, for messages."""
        if self.legacy:
            return f"acquisition.{self.key_name(key)}"
        return f"{self.where}: {key}"


@dataclass(frozen=True, slots=True)
class AcquisitionPlan:
    """Every source of the station and who owns which (reactor, channel)."""

    sources: tuple[PlannedSource, ...]
    reactors: tuple[str, ...]
    owners: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def policy(
        self,
        *,
        max_clock_skew_s: float,
        history_horizon_s: float,
        clock_fault_after_s: float,
    ) -> AdmissionPolicy:
        return AdmissionPolicy(
            reactors=frozenset(self.reactors),
            owners=dict(self.owners),
            bus_sources=frozenset(s.name for s in self.sources if s.kind.over_bus),
            station_clock_sources=frozenset(
                s.name for s in self.sources if s.kind.stamps_from_station
            ),
            max_clock_skew_s=max_clock_skew_s,
            history_horizon_s=history_horizon_s,
            clock_fault_after_s=clock_fault_after_s,
        )

    @property
    def local_reactors(self) -> frozenset[str]:
        """Reactors that at least one driver of this station reads."""
        return frozenset(r for s in self.sources if not s.kind.over_bus for r in s.reactors)

    @property
    def simulated(self) -> bool:
        return any(isinstance(s.kind, SimulatedKind) for s in self.sources)

    @property
    def stamps_from_station_only(self) -> bool:
        """True when every source re-bases its stamps (each start is a batch of its own)."""
        return bool(self.sources) and all(s.kind.stamps_from_station for s in self.sources)

    def build_drivers(self, context: SourceContext) -> list[Driver]:
        """Every source's drivers; each emits into ``context.sink_for(source name)``."""
        drivers: list[Driver] = []
        for source in self.sources:
            sink = context.sink_for(source.name)
            if source.kind.drops_unclaimed:
                sink = _claimed_only(sink, source.channels)
            drivers += source.kind.build(source, context, sink)
        return drivers

    def describe(self) -> list[str]:
        """One line per source: name, kind, and what it owns, for doctor and the log."""
        lines = []
        for source in self.sources:
            owned = sorted({c for channels in source.channels.values() for c in channels})
            where = ", ".join(source.reactors) or "no reactor"
            lines.append(
                f"{source.name} ({source.kind.name}) on {where}: "
                + (", ".join(owned) if owned else "no channel left to own")
            )
        return lines


def plan_sources(
    raw_sources: Sequence[Mapping[str, Any]],
    *,
    reactors: Sequence[str],
    bus_is_mqtt: bool,
    where: str = "acquisition.sources",
) -> AcquisitionPlan:
    """The plan of ``[[acquisition.sources]]``; DriverConfigError names the setting at fault."""
    options = [parse_source(raw, f"{where}[{index}]") for index, raw in enumerate(raw_sources)]
    names = [o.name for o in options]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise DriverConfigError(f"{where}: source names must be unique, {doubled} repeat")
    located = [
        (f"{where}[{index}] ({option.name!r})", option) for index, option in enumerate(options)
    ]
    return _resolve(located, tuple(reactors), bus_is_mqtt)


def parse_source(raw: Mapping[str, Any], where: str) -> SourceOptions:
    """One ``[[acquisition.sources]]`` table, validated by its kind's options model."""
    if not isinstance(raw, Mapping):
        raise DriverConfigError(f"{where}: must be a table with 'name' and 'kind'")
    kind = SOURCE_KINDS.get(str(raw.get("kind", "")))
    if kind is None:
        raise DriverConfigError(
            f"{where}: kind {raw.get('kind')!r} is not one of {', '.join(SOURCE_KINDS)}"
        )
    label = f"{where} ({raw.get('name')!r})" if raw.get("name") else where
    try:
        return kind.options_model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'table'}: "
            + ("unknown setting" if error["type"] == "extra_forbidden" else error["msg"])
            for error in exc.errors()
        )
        raise DriverConfigError(f"{label}: {problems}") from None


def legacy_sources(
    source: str,
    *,
    reactors: Sequence[str],
    speed: float = 1.0,
    seed: int = 17,
    replay_file: str | Path | None = None,
    replay_batch: int | None = None,
    replay_notebook_batch: int | None = None,
    topic_map: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    serial_port: str = "/dev/ttyUSB0",
    baudrate: int = 9600,
) -> list[dict[str, Any]]:
    """The sources the single ``acquisition.source`` setting stands for.

    The named source on the reactors it served before, and bptwin's own topics for every
    reactor it leaves without a source (before, bus readings of reactors not acquired here
    were recorded; now only for configured reactors and channels).
    """
    if source not in LEGACY_KINDS:
        raise DriverConfigError(
            f"acquisition.source: {source!r} is not one of {', '.join(LEGACY_KINDS)}"
        )
    first = [reactors[0]]
    tables: list[dict[str, Any]] = []
    if source == "simulated":
        tables.append({"name": "simulated", "kind": "simulated", "speed": speed, "seed": seed})
    elif source == "serial":
        if not serial_port:
            raise DriverConfigError("acquisition.serial.port: no serial port given")
        tables.append(
            {
                "name": "offgas-analyser",
                "kind": "serial",
                "reactors": first,
                "port": serial_port,
                "baudrate": baudrate,
            }
        )
    elif source == "replay":
        if replay_file is None:
            raise DriverConfigError("acquisition.replay_file: needed when source = 'replay'")
        tables.append(
            {
                "name": "replay",
                "kind": "replay",
                "reactors": first,
                "file": replay_file,
                "speed": speed,
                "batch": replay_batch,
                "notebook_batch": replay_notebook_batch,
            }
        )
    elif source == "mqtt" and topic_map:
        tables.append({"name": "mqtt", "kind": "mqtt", "topic_map": topic_map})
    claimed_rest: set[str] = set()
    for table in tables:
        kind = SOURCE_KINDS[table["kind"]]
        if kind.default_channels(kind.options_model.model_validate(table)) == [REST]:
            claimed_rest.update(table.get("reactors") or reactors)
    open_reactors = [r for r in reactors if r not in claimed_rest]
    if open_reactors:
        tables.append({"name": "bptwin-topics", "kind": "bptwin", "reactors": open_reactors})
    return tables


def plan_legacy(
    source: str,
    *,
    reactors: Sequence[str],
    bus_is_mqtt: bool,
    **values: Any,
) -> AcquisitionPlan:
    """The plan of the single-source settings (``acquisition.source`` and its keys)."""
    tables = legacy_sources(source, reactors=reactors, **values)
    options = [parse_source(table, "acquisition") for table in tables]
    located = [(_legacy_where(option), option) for option in options]
    return _resolve(located, tuple(reactors), bus_is_mqtt, legacy=True)


def _legacy_where(option: SourceOptions) -> str:
    return {
        "serial": "acquisition.serial",
        "replay": "acquisition.replay_file",
        "mqtt": "acquisition.topic_map",
    }.get(option.kind, "acquisition.source")


def _resolve(
    located: list[tuple[str, SourceOptions]],
    reactors: tuple[str, ...],
    bus_is_mqtt: bool,
    *,
    legacy: bool = False,
) -> AcquisitionPlan:
    """Check every source and give each (reactor, channel) its one owner."""
    if not reactors:
        raise DriverConfigError("station.reactors: no reactor to acquire")
    owners: dict[tuple[str, str], str] = {}
    owner_where: dict[str, str] = {}
    rest_of: dict[str, str] = {}  # reactor -> the source that takes its remaining channels
    staged: list[tuple[str, SourceOptions, SourceKind, tuple[str, ...], list[str]]] = []
    for where, option in located:
        kind = SOURCE_KINDS[option.kind]
        try:
            kind.check(option, bus_is_mqtt)
        except DriverConfigError as exc:
            raise DriverConfigError(f"{where}: {exc}") from None
        chosen = tuple(option.reactors) or ((reactors[0],) if kind.one_reactor else tuple(reactors))
        unknown = [r for r in chosen if r not in reactors]
        if unknown:
            raise DriverConfigError(
                f"{where}: reactors {unknown} are not in station.reactors {list(reactors)}"
            )
        if kind.one_reactor and len(chosen) != 1:
            raise DriverConfigError(f"{where}: a {kind.name} source reads exactly one reactor")
        channels = list(option.channels) or kind.default_channels(option)
        owner_where[option.name] = where
        for reactor in chosen:
            for channel in channels:
                if channel == REST:
                    _claim(rest_of, reactor, option.name, owner_where, f"the rest of {reactor}")
                else:
                    _claim(owners, (reactor, channel), option.name, owner_where, None)
        staged.append((where, option, kind, chosen, channels))
    sources = []
    for where, option, kind, chosen, channels in staged:
        owned: dict[str, frozenset[str]] = {}
        for reactor in chosen:
            mine = {c for c in channels if c != REST}
            if REST in channels:
                mine |= {c for c in CHANNELS_BY_NAME if (reactor, c) not in owners}
            owned[reactor] = frozenset(mine)
        sources.append(PlannedSource(where, kind, option, chosen, owned, legacy))
    for source in sources:
        for reactor, owned_channels in source.channels.items():
            for channel in owned_channels:
                owners.setdefault((reactor, channel), source.name)
    return AcquisitionPlan(tuple(sources), reactors, owners)


def _claim(
    table: dict[Any, str],
    key: Any,
    name: str,
    owner_where: Mapping[str, str],
    label: str | None,
) -> None:
    other = table.get(key)
    if other is not None and other != name:
        what = label or f"channel {key[1]!r} of reactor {key[0]!r}"
        raise DriverConfigError(
            f"{what} is claimed by two sources: {owner_where[other]} and {owner_where[name]}; "
            "give one of them an explicit 'channels' list without it"
        )
    table[key] = name


def _claimed_only(sink: ReadingSink, channels: Mapping[str, frozenset[str]]) -> ReadingSink:
    """A sink that passes only the channels the source owns on each reactor."""

    def claimed(reading: Reading) -> None:
        owned = channels.get(reading.reactor)
        if owned is not None and reading.channel in owned:
            sink(reading)

    return claimed


def _driver_name(source: PlannedSource, reactor: str) -> str:
    return source.name if len(source.reactors) == 1 else f"{source.name}-{reactor}"


def _topic_map_channels(raw: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The channels a topic map names, or None when a rule captures ``{channel}``."""
    named: list[str] = []
    if isinstance(raw, Mapping):
        for target in raw.values():
            named.append(str(target).rpartition("/")[2])
    else:
        for rule in raw:
            if not isinstance(rule, Mapping):
                return None
            if rule.get("kind") == "snapshot" or "{channel}" in str(rule.get("topic", "")):
                return None
            if rule.get("channel") is None:
                return None
            named.append(str(rule["channel"]))
    known = [c for c in dict.fromkeys(named) if c in CHANNELS_BY_NAME]
    return known if len(known) == len(set(named)) else None


# -- field-bus sources (opcua, modbus): what they share around their list of points ----------


class PointSourceOptions(SourceOptions):
    """A source whose points are listed under :attr:`points_key` (``nodes``, ``registers``)."""

    points_key: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _reactors_from_points(cls, data: Any) -> Any:
        return fill_point_reactors(data, cls.points_key)

    def point_list(self) -> Sequence[PointOptions]:
        points: Sequence[PointOptions] = getattr(self, self.points_key)
        return points


class _PointDriverFactory(Protocol):
    def __call__(self, sink: ReadingSink, options: Any, *, name: str) -> Driver: ...


class PointSourceKind(SourceKind):
    """A field-bus kind: channels and ownership come from the points; one driver a source."""

    options_model: ClassVar[type[PointSourceOptions]]
    driver_class: ClassVar[_PointDriverFactory]

    def default_channels(self, options: SourceOptions) -> list[str]:
        assert isinstance(options, self.options_model)
        return point_channels(options.point_list())

    def check(self, options: SourceOptions, context_is_mqtt: bool) -> None:
        assert isinstance(options, self.options_model)
        try:
            check_point_ownership(
                options.point_list(), options.reactors, options.channels, options.points_key
            )
        except ValueError as exc:
            raise DriverConfigError(str(exc)) from None

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        assert isinstance(source.options, self.options_model)
        return [self.driver_class(sink, source.options, name=source.name)]


class PointDriverTiming(TypedDict, total=False):
    """How a field-bus driver backs off between reconnections, and the clock it stamps with."""

    backoff_initial_s: float
    backoff_max_s: float
    clock: Callable[[], float]


class PointSourceDriver(Driver):
    """A driver reading the points of one link, reconnecting with back-off when it is lost."""

    def __init__(
        self,
        sink: ReadingSink,
        options: PointSourceOptions,
        *,
        name: str,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, options.reactors[0] if options.reactors else "", sink)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        self._reactors = [point_reactor(p, options.reactors) for p in options.point_list()]

    def _label(self, index: int, channel: str) -> str:
        """``"R1/ph"``: the reactor and channel of point ``index``."""
        return f"{self._reactors[index]}/{channel}"


# Field-bus kinds live in modules of their own and register themselves; their libraries
# (asyncua, pymodbus) load only when a driver connects.
from bptwin.drivers import modbus_source, opcua_source  # noqa: E402, F401  (registers the kinds)
