"""Topic tree and MQTT wildcard matching (the one implementation both buses use)."""

from __future__ import annotations

import pytest

from bptwin.database.bus import topics


def test_topic_builders_follow_the_contract() -> None:
    assert topics.reading_topic("r1", "ph") == "bptwin/v1/r1/sensors/ph"
    assert topics.snapshot_topic("r1") == "bptwin/v1/r1/sensors"
    assert topics.prediction_topic("r1", "od600") == "bptwin/v1/r1/predictions/od600"
    assert topics.alarm_topic("r1", "do_low") == "bptwin/v1/r1/alarms/do_low"
    assert topics.status_topic("r1", "acquisition") == "bptwin/v1/r1/status/acquisition"
    assert topics.setpoint_topic("r1", "temp") == "bptwin/v1/r1/setpoints/temp"
    assert topics.reading_topic("r1", "ph", prefix="lab/a") == "lab/a/v1/r1/sensors/ph"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "x#", "a\x00"])
def test_topic_builders_refuse_levels_that_would_change_the_tree(bad: str) -> None:
    with pytest.raises(ValueError, match="reactor"):
        topics.reading_topic(bad, "ph")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("bptwin/v1/r1/sensors/ph", ("r1", "ph")),
        ("bptwin/v1/r1/sensors", ("r1", None)),
        ("lab/site/v1/vessel-2/sensors/do", ("vessel-2", "do")),
    ],
)
def test_parse_reading_topic(topic: str, expected: tuple[str, str | None]) -> None:
    assert topics.parse_reading_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    ["bptwin/v1/r1/alarms/x", "bptwin/v2/r1/sensors/ph", "sensors/ph", "bptwin/v1//sensors"],
)
def test_parse_reading_topic_refuses_other_topics(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        topics.parse_reading_topic(topic)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/b/c", "a/b", False),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/x/y/c", False),
        ("a/+", "a/", True),  # an empty level is a level
        ("+/+", "a/b", True),
        ("+", "a/b", False),
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/b/c/d", True),
        ("a/#", "b/c", False),
        ("#", "anything/at/all", True),
        ("#", "$SYS/broker/uptime", False),
        ("+/broker/uptime", "$SYS/broker/uptime", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("bptwin/v1/+/sensors/+", "bptwin/v1/r1/sensors/ph", True),
        ("bptwin/v1/+/sensors/+", "bptwin/v1/r1/sensors", False),
    ],
)
def test_wildcard_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topics.matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["", "a/#/b", "a#", "a/b+", "a/+x/c"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        topics.validate_pattern(pattern)


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "a\x00b", "x" * 2000])
def test_invalid_publish_topics_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        topics.validate_topic(topic)
