"""The MQTT topic tree of bptwin and MQTT wildcard matching (one implementation, shared).

Tree (``<prefix>`` is ``bptwin`` unless configured; ``v1`` versions the contract)::

    <prefix>/v1/<reactor>/sensors/<channel>     one reading   {"ts", "value", "unit", "quality"}
    <prefix>/v1/<reactor>/sensors               snapshot      {"ts", "values": {channel: ...}}
    <prefix>/v1/<reactor>/predictions/<name>    model outputs
    <prefix>/v1/<reactor>/alarms/<rule>         alarm transitions
    <prefix>/v1/<reactor>/status/<component>    component health (retained)
    <prefix>/v1/<reactor>/setpoints/<name>      setpoint changes
    <prefix>/v1/<reactor>/commands/<kind>       an operator's signed command to the engine
    <prefix>/v1/<reactor>/commands/<kind>/result  the engine's signed answer

docs/mqtt.md is the full contract.
"""

from __future__ import annotations

import re
from functools import lru_cache

CONTRACT_VERSION = "v1"
DEFAULT_PREFIX = "bptwin"
SENSORS = "sensors"
# MQTT caps topics at 65 535 bytes; ours are short, anything long is an error upstream.
MAX_TOPIC_LENGTH = 1024
_NOT_IN_LEVEL = re.compile(r"[/+#\x00]")
_NOT_IN_TOPIC = re.compile(r"[+#\x00]")


def _level(kind: str, name: str) -> str:
    """A single plain topic level: no wildcard, no separator, not empty."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} must be a non-empty topic level")
    if _NOT_IN_LEVEL.search(name):
        raise ValueError(f"{kind} {name!r} must not contain '/', '+', '#' or NUL")
    return name


def _prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix or prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must be non-empty without a trailing '/'")
    if _NOT_IN_TOPIC.search(prefix):
        raise ValueError(f"prefix {prefix!r} must not contain '+', '#' or NUL")
    return prefix


def reactor_root(reactor: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{_prefix(prefix)}/{CONTRACT_VERSION}/{_level('reactor', reactor)}"


@lru_cache(maxsize=4096)  # called for every reading published
def reading_topic(reactor: str, channel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``bptwin/v1/<reactor>/sensors/<channel>``: one reading per message."""
    return f"{reactor_root(reactor, prefix)}/{SENSORS}/{_level('channel', channel)}"


def snapshot_topic(reactor: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``bptwin/v1/<reactor>/sensors``: several channels of one reactor per message."""
    return f"{reactor_root(reactor, prefix)}/{SENSORS}"


def prediction_topic(reactor: str, name: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{reactor_root(reactor, prefix)}/predictions/{_level('prediction', name)}"


def alarm_topic(reactor: str, rule: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{reactor_root(reactor, prefix)}/alarms/{_level('rule', rule)}"


def status_topic(reactor: str, component: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{reactor_root(reactor, prefix)}/status/{_level('component', component)}"


def setpoint_topic(reactor: str, name: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{reactor_root(reactor, prefix)}/setpoints/{_level('setpoint', name)}"


COMMANDS = "commands"
RESULT = "result"


def command_topic(reactor: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``bptwin/v1/<reactor>/commands/<kind>``: a control room asks the engine to act."""
    return f"{reactor_root(reactor, prefix)}/{COMMANDS}/{_level('command', kind)}"


def command_result_topic(reactor: str, kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``bptwin/v1/<reactor>/commands/<kind>/result``: the engine's answer to a command."""
    return f"{command_topic(reactor, kind, prefix)}/{RESULT}"


def command_results_pattern(kind: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """Every reactor's answers to commands of one kind (``+``: any kind): a control room's."""
    kind = kind if kind == "+" else _level("command", kind)
    return f"{_prefix(prefix)}/{CONTRACT_VERSION}/+/{COMMANDS}/{kind}/{RESULT}"


def readings_pattern(reactor: str = "+", channel: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    """Subscription pattern for single readings; ``+`` means any reactor/channel."""
    reactor = reactor if reactor == "+" else _level("reactor", reactor)
    channel = channel if channel == "+" else _level("channel", channel)
    return f"{_prefix(prefix)}/{CONTRACT_VERSION}/{reactor}/{SENSORS}/{channel}"


def snapshots_pattern(reactor: str = "+", prefix: str = DEFAULT_PREFIX) -> str:
    reactor = reactor if reactor == "+" else _level("reactor", reactor)
    return f"{_prefix(prefix)}/{CONTRACT_VERSION}/{reactor}/{SENSORS}"


def parse_reading_topic(topic: str, *, prefix: str | None = None) -> tuple[str, str | None]:
    """``(reactor, channel)`` of a reading topic, ``(reactor, None)`` of a snapshot topic.

    With ``prefix`` the topic must be exactly ``<prefix>/v1/<reactor>/sensors[/<channel>]``;
    without, any prefix (which may itself contain '/') is taken. Raises ValueError naming the
    problem (e.g. a topic with extra levels).
    """
    shape = f"<prefix>/{CONTRACT_VERSION}/<reactor>/{SENSORS}[/<channel>]"
    if prefix is not None:
        head = f"{prefix}/{CONTRACT_VERSION}/"
        levels = topic[len(head) :].split("/") if topic.startswith(head) else []
        if len(levels) not in (2, 3) or levels[1] != SENSORS:
            raise ValueError(f"topic {topic[:200]!r} is not {shape} (prefix {prefix!r})")
        reactor, channel = levels[0], (levels[2] if len(levels) == 3 else None)
    else:
        levels = topic.split("/")
        if len(levels) >= 4 and levels[-2] == SENSORS and levels[-4] == CONTRACT_VERSION:
            reactor, channel = levels[-3], levels[-1]
        elif len(levels) >= 3 and levels[-1] == SENSORS and levels[-3] == CONTRACT_VERSION:
            reactor, channel = levels[-2], None
        else:
            raise ValueError(f"topic {topic[:200]!r} is not {shape}")
    if not reactor or channel == "":
        raise ValueError(f"topic {topic[:200]!r} has an empty reactor or channel level")
    return reactor, channel


def validate_topic(topic: str) -> str:
    """A topic one may publish to: non-empty, no wildcards, no NUL, not too long."""
    if not isinstance(topic, str) or not topic:
        raise ValueError("topic must be non-empty text")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic of {len(topic)} characters exceeds {MAX_TOPIC_LENGTH}")
    if _NOT_IN_TOPIC.search(topic):
        raise ValueError(f"topic {topic[:200]!r} must not contain '+', '#' or NUL")
    return topic


def validate_pattern(pattern: str) -> str:
    """A subscription pattern: '+' fills a whole level, '#' only as the whole last level."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("subscription pattern must be non-empty text")
    if len(pattern) > MAX_TOPIC_LENGTH or "\x00" in pattern:
        raise ValueError(f"subscription pattern {pattern[:200]!r} is too long or holds NUL")
    levels = pattern.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"pattern {pattern!r}: '#' must be the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"pattern {pattern!r}: '+' must fill a whole level")
    return pattern


@lru_cache(maxsize=1024)
def _split(pattern: str) -> tuple[str, ...]:
    return tuple(validate_pattern(pattern).split("/"))


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches the MQTT subscription ``pattern`` (wildcards ``+``, ``#``).

    As in MQTT, wildcards in the first level never match topics starting with ``$``.
    """
    wanted = _split(pattern)
    levels = topic.split("/")
    if topic.startswith("$") and wanted[0] in {"+", "#"}:
        return False
    for index, level in enumerate(wanted):
        if level == "#":
            return True  # also matches the parent level itself ("a/#" matches "a")
        if index >= len(levels):
            return False
        if level != "+" and level != levels[index]:
            return False
    return len(levels) == len(wanted)
