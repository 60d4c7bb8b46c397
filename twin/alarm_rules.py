"""Alarm rules: frozen, validated definitions and their settings-file form.

A rule says *when* a condition is abnormal; :mod:`bptwin.twin.alarms` decides what the operator
sees.
Rules come from the settings file's ``[alarms]`` table (see ``docs/alarms.md``): every key is a
rule name holding a table with a ``type``; a table named like a default rule is merged onto it,
``enabled = false`` switches a rule off, ``include_defaults = false`` drops the SOP defaults.
Every mistake raises :class:`AlarmConfigError` naming the rule and the field, e.g.
``alarms.do_low.on_delay_s must be >= 0``; so does a table naming no rule, and a key that would
change nothing (a rule-wide delay every level overrides).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, MISSING, dataclass, fields
from enum import Enum
from itertools import pairwise
from typing import Any, ClassVar

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.twin.features import ProcessState

RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class AlarmConfigError(ValueError):
    """A rule that cannot be used; the message names ``alarms.<rule>.<field>``."""


class Priority(str, Enum):
    """Alarm priority, most urgent first (the order of :data:`PRIORITY_RANK`)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


PRIORITY_RANK: dict[Priority, int] = {Priority.CRITICAL: 0, Priority.WARNING: 1, Priority.INFO: 2}


class LevelKind(str, Enum):
    HI_HI = "hi_hi"
    HI = "hi"
    LO = "lo"
    LO_LO = "lo_lo"

    @property
    def is_high(self) -> bool:
        return self in (LevelKind.HI, LevelKind.HI_HI)


# Derived values a rule may watch: every float field of the 30 s ProcessState (rq, our, cer, ...).
DERIVED_VALUES: frozenset[str] = frozenset(
    f.name for f in fields(ProcessState) if f.type in ("float", float)
)

# Events the wiring feeds (AlarmEngine.feed_event / feed_state / feed_cleaning_event).
EVENT_GLYCEROL_DEPLETED = "glycerol_depleted"
EVENT_IMPOSSIBLE_VALUE = "impossible_value"
# The predictor's drift watch (twin/drift.py): the batch is outside what the model learnt.
EVENT_MODEL_DRIFT = "model_drift"
KNOWN_EVENTS = frozenset({EVENT_GLYCEROL_DEPLETED, EVENT_IMPOSSIBLE_VALUE, EVENT_MODEL_DRIFT})


def _path(rule: str, field: str | None = None) -> str:
    return f"alarms.{rule}" + (f".{field}" if field else "")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not RULE_NAME.match(name):
        raise AlarmConfigError(
            f"alarms.{name}: a rule name must be 1-48 lower-case letters, digits or '_', "
            "starting with a letter"
        )


def _finite(rule: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AlarmConfigError(f"{_path(rule, field)} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise AlarmConfigError(f"{_path(rule, field)} must be finite, got {value!r}")
    return float(value)


def _non_negative(rule: str, field: str, value: Any) -> float:
    number = _finite(rule, field, value)
    if number < 0:
        raise AlarmConfigError(f"{_path(rule, field)} must be >= 0, got {value!r}")
    return number


def _positive(rule: str, field: str, value: Any) -> float:
    number = _finite(rule, field, value)
    if number <= 0:
        raise AlarmConfigError(f"{_path(rule, field)} must be > 0, got {value!r}")
    return number


def _positive_or_none(rule: str, field: str, value: Any) -> float | None:
    return None if value is None else _positive(rule, field, value)


def _priority(rule: str, field: str, value: Any) -> Priority:
    if isinstance(value, Priority):
        return value
    try:
        return Priority(value)
    except ValueError:
        choices = ", ".join(p.value for p in Priority)
        raise AlarmConfigError(
            f"{_path(rule, field)} must be one of {choices}, got {value!r}"
        ) from None


def _channel(rule: str, field: str, value: Any) -> str:
    if value not in CHANNELS_BY_NAME:
        raise AlarmConfigError(f"{_path(rule, field)}: unknown channel {value!r}")
    return str(value)


def _source(rule: str, field: str, value: Any) -> str:
    if value not in CHANNELS_BY_NAME and value not in DERIVED_VALUES:
        raise AlarmConfigError(
            f"{_path(rule, field)}: {value!r} is neither a channel nor a derived value "
            "(e.g. do, ph, temp_broth, rq, our, cer, mu_cer)"
        )
    return str(value)


def _reactors(rule: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(r, str) and r and "/" not in r for r in value
    ):
        raise AlarmConfigError(f"{_path(rule, 'reactors')} must be a list of reactor names")
    return tuple(value)


_Check = Callable[[str, str, Any], Any]


def _normalise(target: Any, rule: str, /, **checks: _Check) -> None:
    """Check and normalise fields of a frozen rule (or level) in place; errors name the field
    as ``alarms.<rule>.<field>`` (``rule`` may be ``do_low.lo`` for a level)."""
    for field, check in checks.items():
        object.__setattr__(target, field, check(rule, field, getattr(target, field)))


@dataclass(frozen=True, slots=True)
class LimitLevel:
    """One limit of a :class:`LimitRule`; each level is its own alarm (ISA-18.2)."""

    kind: LevelKind
    limit: float
    priority: Priority = Priority.WARNING
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0

    def validate(self, rule: str) -> None:
        _normalise(
            self,
            f"{rule}.{self.kind.value}",
            limit=_finite,
            priority=_priority,
            on_delay_s=_non_negative,
            off_delay_s=_non_negative,
        )


@dataclass(frozen=True, slots=True)
class LimitRule:
    """hi / hi-hi / lo / lo-lo limits on a channel or derived value, with deadband and delays.

    A level becomes active when the value is beyond its limit for ``on_delay_s`` and returns
    when the value is back inside by more than ``deadband`` for ``off_delay_s``.
    """

    kind: ClassVar[str] = "limit"
    name: str
    source: str
    levels: tuple[LimitLevel, ...]
    deadband: float = 0.0
    reactors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        _source(self.name, "source", self.source)
        _normalise(self, self.name, deadband=_non_negative)
        if not self.levels:
            raise AlarmConfigError(f"{_path(self.name)} needs at least one of hi_hi, hi, lo, lo_lo")
        seen: dict[LevelKind, float] = {}
        for level in self.levels:
            if not isinstance(level, LimitLevel) or not isinstance(level.kind, LevelKind):
                raise AlarmConfigError(f"{_path(self.name, 'levels')} must hold LimitLevel items")
            if level.kind in seen:
                raise AlarmConfigError(f"{_path(self.name, level.kind.value)} is given twice")
            level.validate(self.name)
            seen[level.kind] = level.limit
        _check_order(self.name, seen)

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(level.kind.value for level in self.levels)


def _check_order(rule: str, limits: Mapping[LevelKind, float]) -> None:
    """hi_hi >= hi > lo >= lo_lo, for the levels present."""
    order = [LevelKind.HI_HI, LevelKind.HI, LevelKind.LO, LevelKind.LO_LO]
    present = [(kind, limits[kind]) for kind in order if kind in limits]
    for (upper, upper_limit), (lower, lower_limit) in pairwise(present):
        strict = upper.is_high and not lower.is_high
        if upper_limit < lower_limit or (strict and upper_limit == lower_limit):
            relation = ">" if strict else ">="
            raise AlarmConfigError(
                f"{_path(rule, upper.value)}.limit ({upper_limit:g}) must be {relation} "
                f"{lower.value}.limit ({lower_limit:g})"
            )


@dataclass(frozen=True, slots=True)
class RateOfChangeRule:
    """Rate of change (units per minute) over ``window_s`` beyond ``max_rise`` or ``max_fall``.

    Conditions ``rise`` and ``fall``; the rate must come back inside by ``deadband``
    (units per minute) to return.
    """

    kind: ClassVar[str] = "rate"
    name: str
    source: str
    window_s: float = 60.0
    max_rise_per_min: float | None = None
    max_fall_per_min: float | None = None
    deadband: float = 0.0
    priority: Priority = Priority.WARNING
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0
    reactors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        _source(self.name, "source", self.source)
        if self.max_rise_per_min is None and self.max_fall_per_min is None:
            raise AlarmConfigError(f"{_path(self.name)} needs max_rise_per_min or max_fall_per_min")
        _normalise(
            self,
            self.name,
            max_rise_per_min=_positive_or_none,
            max_fall_per_min=_positive_or_none,
            window_s=_positive,
            deadband=_non_negative,
            priority=_priority,
            on_delay_s=_non_negative,
            off_delay_s=_non_negative,
        )

    @property
    def conditions(self) -> tuple[str, ...]:
        names = []
        if self.max_rise_per_min is not None:
            names.append("rise")
        if self.max_fall_per_min is not None:
            names.append("fall")
        return tuple(names)


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """What the per-channel rules (stale, frozen, clock) share: one alarm per listed channel
    (condition = channel name), a priority, and the checks of those fields."""

    kind: ClassVar[str] = ""
    channels_required: ClassVar[bool] = True  # False: an empty list means every channel
    name: str
    channels: tuple[str, ...]
    _: KW_ONLY
    priority: Priority = Priority.WARNING
    reactors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.channels or self.channels_required:
            _check_channels(self.name, self.channels)
        _normalise(self, self.name, priority=_priority, **self.field_checks())

    def field_checks(self) -> dict[str, _Check]:
        """The checks of the rule type's own fields."""
        return {}

    @property
    def conditions(self) -> tuple[str, ...]:
        return self.channels


@dataclass(frozen=True, slots=True)
class StaleRule(ChannelRule):
    """No usable reading (finite value, quality not bad) for ``max_age_s`` on a channel.

    Checked by :meth:`AlarmEngine.evaluate`; a channel is watched from its first reading.
    """

    kind: ClassVar[str] = "stale"
    max_age_s: float = 60.0

    def field_checks(self) -> dict[str, _Check]:
        return {"max_age_s": _positive}


@dataclass(frozen=True, slots=True)
class FrozenRule(ChannelRule):
    """A channel whose value moves no more than ``epsilon`` for ``duration_s`` (stuck sensor)."""

    kind: ClassVar[str] = "frozen"
    duration_s: float = 900.0
    epsilon: float = 0.0

    def field_checks(self) -> dict[str, _Check]:
        return {"duration_s": _positive, "epsilon": _non_negative}


@dataclass(frozen=True, slots=True)
class ClockRule(ChannelRule):
    """Readings of a channel keep arriving stamped ahead of the station clock (a clock fault).

    The engine refuses (and counts) every reading stamped more than its ``max_ahead_s`` past
    the station clock; this rule raises the channel's alarm when such readings persist for
    ``persist_s``, and returns it with the channel's next reading on time. A single stamp from
    the future raises nothing. ``channels`` empty: every channel.
    """

    kind: ClassVar[str] = "clock"
    channels_required: ClassVar[bool] = False
    channels: tuple[str, ...] = ()
    persist_s: float = 30.0

    def field_checks(self) -> dict[str, _Check]:
        return {"persist_s": _non_negative}


def _check_channels(rule: str, channels: Any) -> None:
    if not isinstance(channels, tuple) or not channels:
        raise AlarmConfigError(f"{_path(rule, 'channels')} must be a non-empty list of channels")
    for name in channels:
        _channel(rule, "channels", name)
    if len(set(channels)) != len(channels):
        raise AlarmConfigError(f"{_path(rule, 'channels')} lists a channel twice")


@dataclass(frozen=True, slots=True)
class ModelDisagreementRule:
    """An offline OD600 sample differs from the model's prediction by more than ``max_percent``.

    Relative difference = |predicted − measured| / measured. Samples below ``min_measured``
    are skipped (relative error is meaningless near zero). The alarm stays active until a later
    sample agrees again.
    """

    kind: ClassVar[str] = "model_disagreement"
    name: str
    max_percent: float = 20.0
    min_measured: float = 1.0
    priority: Priority = Priority.WARNING
    reactors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        _normalise(
            self,
            self.name,
            max_percent=_positive,
            min_measured=_non_negative,
            priority=_priority,
        )

    @property
    def conditions(self) -> tuple[str, ...]:
        return ("od600",)


@dataclass(frozen=True, slots=True)
class EventRule:
    """An event alarm (e.g. glycerol depletion): raised when the event happens, then returned.

    With ``once`` the alarm is raised at most once per reactor until
    :meth:`AlarmEngine.rearm_events` (a new batch).
    """

    kind: ClassVar[str] = "event"
    name: str
    event: str
    priority: Priority = Priority.INFO
    once: bool = True
    reactors: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.event not in KNOWN_EVENTS:
            raise AlarmConfigError(
                f"{_path(self.name, 'event')} must be one of {', '.join(sorted(KNOWN_EVENTS))}, "
                f"got {self.event!r}"
            )
        _normalise(self, self.name, priority=_priority)
        if not isinstance(self.once, bool):
            raise AlarmConfigError(f"{_path(self.name, 'once')} must be true or false")


# Any rule: StaleRule, FrozenRule and ClockRule are the ChannelRule types (RULE_TYPES lists all).
Rule = LimitRule | RateOfChangeRule | ChannelRule | ModelDisagreementRule | EventRule
RULE_TYPES: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (
        LimitRule,
        RateOfChangeRule,
        StaleRule,
        FrozenRule,
        ClockRule,
        ModelDisagreementRule,
        EventRule,
    )
}

# --------------------------------------------------------------------------------------------
# Settings-file form
# --------------------------------------------------------------------------------------------

_COMMON_KEYS = {"type", "enabled", "reactors", "description"}
_LEVEL_KEYS = {"limit", "priority", "on_delay_s", "off_delay_s"}
_LIMIT_KEYS = {"source", "deadband", "priority", "on_delay_s", "off_delay_s"} | {
    kind.value for kind in LevelKind
}

# The SOP defaults in settings-file form (docs/alarms.md shows them as TOML).
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "do_low": {
        "type": "limit",
        "source": "do",
        "deadband": 1.0,
        "lo": {"limit": 20.0, "priority": "warning", "on_delay_s": 300},
        "lo_lo": {"limit": 15.0, "priority": "critical", "on_delay_s": 120},
        "description": "SOP: DO < 20 % for > 5 min warning, < 15 % for > 2 min critical",
    },
    "temperature": {
        "type": "limit",
        "source": "temp_broth",
        "hi": 30.3,
        "lo": 29.7,
        "priority": "warning",
        "deadband": 0.05,
        "on_delay_s": 30,
        "description": "SOP: broth temperature outside 30.0 ± 0.3 °C",
    },
    "ph": {
        "type": "limit",
        "source": "ph",
        "hi": 5.1,
        "lo": 4.9,
        "priority": "warning",
        "deadband": 0.02,
        "on_delay_s": 30,
        "description": "SOP: pH outside 5.0 ± 0.1",
    },
    "temperature_rate": {
        "type": "rate",
        "source": "temp_broth",
        "window_s": 120,
        "max_rise_per_min": 0.5,
        "max_fall_per_min": 0.5,
        "deadband": 0.1,
        "priority": "warning",
        "description": "broth temperature moving faster than 0.5 °C/min (heating/cooling fault)",
    },
    "sensor_stale": {
        "type": "stale",
        "channels": [
            "ph",
            "do",
            "temp_broth",
            "offgas_o2",
            "offgas_co2",
            "air_flow",
            "stirrer_speed",
            "pressure",
        ],
        "max_age_s": 60,
        "priority": "warning",
        "description": "a sensor stopped reporting usable values",
    },
    "weight_stale": {
        "type": "stale",
        "channels": ["vessel_weight"],
        "max_age_s": 120,
        "priority": "warning",
        "description": "the balance (10 s cadence) stopped reporting",
    },
    "sensor_frozen": {
        "type": "frozen",
        "channels": ["ph", "do", "temp_broth", "offgas_o2", "offgas_co2"],
        "duration_s": 900,
        "epsilon": 0.0,
        "priority": "warning",
        "description": "a sensor repeats exactly the same value for 15 min",
    },
    "clock_fault": {
        "type": "clock",
        "persist_s": 30,
        "priority": "warning",
        "description": "a sensor's readings keep arriving stamped ahead of the station clock",
    },
    "od600_disagreement": {
        "type": "model_disagreement",
        "max_percent": 20.0,
        "min_measured": 1.0,
        "priority": "warning",
        "description": "offline OD600 differs from the model by more than 20 %",
    },
    "glycerol_depleted": {
        "type": "event",
        "event": EVENT_GLYCEROL_DEPLETED,
        "priority": "info",
        "description": "glycerol depleted (DO spike, CER drop): take the depletion sample",
    },
    "impossible_value": {
        "type": "event",
        "event": EVENT_IMPOSSIBLE_VALUE,
        "priority": "warning",
        "once": False,
        "description": "a physically impossible value was removed (e.g. pH < 2, DO > 150 %)",
    },
    "model_drift": {
        "type": "event",
        "event": EVENT_MODEL_DRIFT,
        "priority": "warning",
        "description": "the OD600 model is outside what it learnt (drift watch): take an "
        "offline OD600 sample so the twin can calibrate to this reactor",
    },
}


def rules_from_config(
    data: Mapping[str, Any] | None, *, include_defaults: bool = True
) -> list[Rule]:
    """The rules of a settings ``[alarms]`` table, merged onto the SOP defaults.

    ``data`` maps rule names to tables; the optional key ``include_defaults`` (bool) overrides
    the argument. A table named like a default rule is merged key by key onto the default
    (a different ``type`` replaces it); ``enabled = false`` removes a rule.
    """
    data = dict(data or {})
    flag = data.pop("include_defaults", include_defaults)
    if not isinstance(flag, bool):
        raise AlarmConfigError("alarms.include_defaults must be true or false")
    tables: dict[str, dict[str, Any]] = (
        {name: dict(table) for name, table in DEFAULT_CONFIG.items()} if flag else {}
    )
    for name, table in data.items():
        _check_name(name)
        if not isinstance(table, Mapping):
            raise AlarmConfigError(f"alarms.{name} must be a table, got {table!r}")
        base = tables.get(name)
        if base is None and "type" not in table:
            # e.g. [alarms.frozen] enabled = false: the rule is sensor_frozen, nothing changes.
            known = ", ".join(tables) or "none, include_defaults is false"
            raise AlarmConfigError(
                f"alarms.{name}: there is no rule named {name!r} to change (rules: {known}); "
                "a new rule needs a 'type'"
            )
        if base is None or ("type" in table and table["type"] != base.get("type")):
            base = {}
        tables[name] = {**base, **table}
    rules: list[Rule] = []
    for name, table in tables.items():
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            raise AlarmConfigError(f"alarms.{name}.enabled must be true or false")
        rule = rule_from_table(name, table)  # a rule switched off is checked all the same
        if enabled:
            rules.append(rule)
    return rules


def rule_from_table(name: str, table: Mapping[str, Any]) -> Rule:
    """One rule from its settings table; AlarmConfigError names the rule and field."""
    _check_name(name)
    kind = table.get("type")
    if kind not in RULE_TYPES:
        raise AlarmConfigError(
            f"alarms.{name}.type must be one of {', '.join(RULE_TYPES)}, got {kind!r}"
        )
    common: dict[str, Any] = {"name": name}
    if "reactors" in table:
        common["reactors"] = _reactors(name, table["reactors"])
    if "description" in table:
        if not isinstance(table["description"], str):
            raise AlarmConfigError(f"alarms.{name}.description must be text")
        common["description"] = table["description"]
    if kind == LimitRule.kind:
        _known_keys(name, table, _LIMIT_KEYS)
        return _limit_rule(name, table, common)
    cls = RULE_TYPES[kind]
    allowed = {f.name for f in fields(cls)} - {"name", "levels"}
    _known_keys(name, table, allowed)
    kwargs = {key: value for key, value in table.items() if key not in _COMMON_KEYS}
    for key in ("channels",):
        if key in kwargs:
            if not isinstance(kwargs[key], (list, tuple)):
                raise AlarmConfigError(f"alarms.{name}.{key} must be a list of channels")
            kwargs[key] = tuple(kwargs[key])
    if "priority" in kwargs:
        kwargs["priority"] = _priority(name, "priority", kwargs["priority"])
    for key, value in kwargs.items():
        if key in {"source", "event", "channels", "priority", "once"} or value is None:
            continue
        _finite(name, key, value)
    missing = [
        f.name
        for f in fields(cls)
        if f.name not in kwargs
        and f.name not in common
        and f.default is MISSING
        and f.default_factory is MISSING
    ]
    if missing:
        raise AlarmConfigError(f"alarms.{name}.{missing[0]} is required for type {kind!r}")
    return cls(**common, **kwargs)


def _known_keys(name: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed and key not in _COMMON_KEYS:
            known = ", ".join(sorted((allowed | _COMMON_KEYS) - {"name"}))
            raise AlarmConfigError(f"alarms.{name}: unknown field {key!r} (known: {known})")


def _limit_rule(name: str, table: Mapping[str, Any], common: dict[str, Any]) -> LimitRule:
    if "source" not in table:
        raise AlarmConfigError(f"alarms.{name}.source is required for type 'limit'")
    defaults = {
        "priority": _priority(name, "priority", table.get("priority", "warning")),
        "on_delay_s": _non_negative(name, "on_delay_s", table.get("on_delay_s", 0.0)),
        "off_delay_s": _non_negative(name, "off_delay_s", table.get("off_delay_s", 0.0)),
    }
    levels = []
    own: dict[str, list[str]] = {key: [] for key in defaults}  # levels that set a key themselves
    for kind in LevelKind:
        if kind.value not in table:
            continue
        spec = table[kind.value]
        if not isinstance(spec, Mapping):
            spec = {"limit": spec}
        for key in own:
            if key in spec:
                own[key].append(kind.value)
        for key in spec:
            if key not in _LEVEL_KEYS:
                raise AlarmConfigError(
                    f"alarms.{name}.{kind.value}: unknown field {key!r} "
                    f"(known: {', '.join(sorted(_LEVEL_KEYS))})"
                )
        if "limit" not in spec:
            raise AlarmConfigError(f"alarms.{name}.{kind.value}.limit is required")
        merged = {**defaults, **spec}
        levels.append(
            LimitLevel(
                kind=kind,
                limit=_finite(name, f"{kind.value}.limit", merged["limit"]),
                priority=_priority(name, f"{kind.value}.priority", merged["priority"]),
                on_delay_s=_non_negative(name, f"{kind.value}.on_delay_s", merged["on_delay_s"]),
                off_delay_s=_non_negative(name, f"{kind.value}.off_delay_s", merged["off_delay_s"]),
            )
        )
    for key, setters in own.items():
        # A rule-wide default that every level overrides would be silently without effect.
        if key in table and levels and len(setters) == len(levels):
            raise AlarmConfigError(
                f"alarms.{name}.{key} does nothing: every level ({', '.join(setters)}) sets its "
                f"own {key}; set it per level, e.g. alarms.{name}.{setters[0]}.{key}"
            )
    return LimitRule(
        source=table["source"],
        levels=tuple(levels),
        deadband=table.get("deadband", 0.0),
        **common,
    )


DEFAULT_RULES: tuple[Rule, ...] = tuple(rules_from_config({}))
