"""Alarm rules from the settings file: defaults, merging, and errors that name rule and field."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bptwin.twin.alarm_rules import (
    DEFAULT_CONFIG,
    DEFAULT_RULES,
    AlarmConfigError,
    EventRule,
    LevelKind,
    LimitLevel,
    LimitRule,
    Priority,
    RateOfChangeRule,
    StaleRule,
    rules_from_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def by_name(rules):
    return {rule.name: rule for rule in rules}


def test_default_rules_hold_the_sop_limits():
    rules = by_name(DEFAULT_RULES)
    do_low = rules["do_low"]
    assert isinstance(do_low, LimitRule) and do_low.source == "do"
    levels = {level.kind: level for level in do_low.levels}
    assert levels[LevelKind.LO] == LimitLevel(LevelKind.LO, 20.0, Priority.WARNING, 300.0, 0.0)
    assert levels[LevelKind.LO_LO] == LimitLevel(
        LevelKind.LO_LO, 15.0, Priority.CRITICAL, 120.0, 0.0
    )
    temperature = {level.kind: level.limit for level in rules["temperature"].levels}
    assert temperature == {LevelKind.HI: 30.3, LevelKind.LO: 29.7}
    ph = {level.kind: level.limit for level in rules["ph"].levels}
    assert ph == {LevelKind.HI: 5.1, LevelKind.LO: 4.9}
    assert isinstance(rules["glycerol_depleted"], EventRule)
    assert rules["glycerol_depleted"].priority is Priority.INFO


def test_empty_config_gives_the_defaults():
    assert tuple(rules_from_config({})) == DEFAULT_RULES
    assert tuple(rules_from_config(None)) == DEFAULT_RULES


def test_toml_table_overrides_merges_disables_and_adds():
    text = """
    [alarms.do_low]
    lo = { limit = 25.0, priority = "warning", on_delay_s = 600 }

    [alarms.sensor_frozen]
    enabled = false

    [alarms.rq_high]
    type = "limit"
    source = "rq"
    hi = 1.3
    priority = "warning"
    on_delay_s = 300
    """
    data = tomllib.loads(text)["alarms"]
    rules = by_name(rules_from_config(data))
    assert "sensor_frozen" not in rules
    do_levels = {level.kind: level for level in rules["do_low"].levels}
    assert do_levels[LevelKind.LO].limit == 25.0 and do_levels[LevelKind.LO].on_delay_s == 600
    # untouched keys of the default survive the merge
    assert do_levels[LevelKind.LO_LO].limit == 15.0 and rules["do_low"].deadband == 1.0
    rq = rules["rq_high"]
    assert rq.source == "rq" and rq.levels[0].on_delay_s == 300.0


def test_include_defaults_false_keeps_only_the_given_rules():
    data = {
        "include_defaults": False,
        "co2_rate": {"type": "rate", "source": "offgas_co2", "max_rise_per_min": 0.2},
    }
    rules = rules_from_config(data)
    assert [rule.name for rule in rules] == ["co2_rate"]
    assert isinstance(rules[0], RateOfChangeRule) and rules[0].conditions == ("rise",)


def test_changing_the_type_of_a_default_replaces_it():
    rules = by_name(rules_from_config({"ph": {"type": "stale", "channels": ["ph"]}}))
    assert isinstance(rules["ph"], StaleRule)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"do_low": {"on_delay_s": -5}}, "alarms.do_low.on_delay_s must be >= 0"),
        ({"do_low": {"lo": {"limit": 20, "on_delay_s": -1}}}, "alarms.do_low.lo.on_delay_s"),
        ({"do_low": {"source": "dissolved"}}, "alarms.do_low.source"),
        ({"do_low": {"deadband": "one"}}, "alarms.do_low.deadband must be a number"),
        ({"do_low": {"lo": {"limit": 10}}}, "alarms.do_low.lo.limit (10) must be >= lo_lo.limit"),
        ({"ph": {"lo": 5.2}}, "alarms.ph.hi.limit (5.1) must be > lo.limit (5.2)"),
        ({"ph": {"priority": "urgent"}}, "alarms.ph.priority must be one of"),
        ({"ph": {"on_dealy_s": 3}}, "alarms.ph: unknown field 'on_dealy_s'"),
        ({"ph": {"hi": {"limt": 5.1}}}, "alarms.ph.hi: unknown field 'limt'"),
        ({"x": {"type": "limit", "source": "ph"}}, "alarms.x needs at least one of"),
        ({"x": {"type": "gauge"}}, "alarms.x.type must be one of"),
        ({"x": {"type": "limit", "hi": 1}}, "alarms.x.source is required"),
        ({"x": {"type": "stale"}}, "alarms.x.channels is required"),
        ({"x": {"type": "stale", "channels": ["ph", "nope"]}}, "alarms.x.channels: unknown"),
        ({"x": {"type": "stale", "channels": ["ph"], "max_age_s": 0}}, "alarms.x.max_age_s"),
        ({"x": {"type": "frozen", "channels": []}}, "alarms.x.channels must be a non-empty"),
        ({"x": {"type": "rate", "source": "ph"}}, "alarms.x needs max_rise_per_min"),
        ({"x": {"type": "rate", "source": "ph", "max_fall_per_min": -1}}, "max_fall_per_min"),
        ({"x": {"type": "event", "event": "boom"}}, "alarms.x.event must be one of"),
        ({"x": {"type": "model_disagreement", "max_percent": float("nan")}}, "must be finite"),
        ({"Bad-Name": {"type": "limit"}}, "alarms.Bad-Name: a rule name"),
        ({"x": 3}, "alarms.x must be a table"),
        ({"x": {"type": "stale", "channels": ["ph"], "enabled": "no"}}, "alarms.x.enabled"),
        ({"x": {"type": "stale", "channels": ["ph"], "reactors": "R1"}}, "alarms.x.reactors"),
        ({"include_defaults": "yes"}, "alarms.include_defaults"),
    ],
)
def test_bad_rules_are_rejected_with_rule_and_field(data, message):
    with pytest.raises(AlarmConfigError) as excinfo:
        rules_from_config(data)
    assert message in str(excinfo.value)


def test_rules_built_in_code_are_validated_too():
    with pytest.raises(AlarmConfigError, match=r"alarms\.t\.lo\.on_delay_s must be >= 0"):
        LimitRule("t", "temp_broth", (LimitLevel(LevelKind.LO, 29.0, on_delay_s=-1.0),))
    rule = StaleRule("s", ("ph",), max_age_s=10, priority="critical")
    assert rule.priority is Priority.CRITICAL and isinstance(rule.max_age_s, float)


def test_default_config_is_plain_toml_data():
    # Everything in DEFAULT_CONFIG must be writable to and readable from a settings file.
    def check(value):
        if isinstance(value, dict):
            for key, item in value.items():
                assert isinstance(key, str)
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)
        else:
            assert isinstance(value, (str, int, float, bool))

    check(DEFAULT_CONFIG)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "alarms.md"
CONFIGURATION = DOCS.with_name("configuration.md")


def toml_blocks(path: Path = DOCS) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_docs_list_exactly_the_default_rules():
    defaults_block = toml_blocks()[0]
    documented = tomllib.loads(defaults_block)["alarms"]
    assert documented == DEFAULT_CONFIG
    assert tuple(rules_from_config(documented, include_defaults=False)) == DEFAULT_RULES


def test_docs_settings_example_loads():
    example = tomllib.loads(toml_blocks()[1])["alarms"]
    rules = by_name(rules_from_config(example))
    assert "sensor_frozen" not in rules and rules["rq_high"].reactors == ("R1",)
    lo = next(level for level in rules["do_low"].levels if level.kind is LevelKind.LO)
    assert lo.limit == 25.0


def test_configuration_docs_alarms_example_loads_and_does_what_it_says():
    block = next(b for b in toml_blocks(CONFIGURATION) if "[alarms." in b)
    rules = by_name(rules_from_config(tomllib.loads(block)["alarms"]))
    assert "sensor_frozen" not in rules
    lo = next(level for level in rules["do_low"].levels if level.kind is LevelKind.LO)
    assert lo.on_delay_s == 240.0 and lo.limit == 20.0


@pytest.mark.parametrize("include_defaults", [True, False])
def test_a_table_naming_no_rule_is_refused_instead_of_ignored(include_defaults):
    # [alarms.frozen] enabled = false used to be accepted while sensor_frozen stayed on.
    data = {"include_defaults": include_defaults, "frozen": {"enabled": False}}
    with pytest.raises(AlarmConfigError, match=r"alarms\.frozen: there is no rule named 'frozen'"):
        rules_from_config(data)


@pytest.mark.parametrize("key", ["on_delay_s", "priority"])
def test_a_rule_wide_default_every_level_overrides_is_refused(key):
    # [alarms.do_low] on_delay_s = 240 changed nothing: lo and lo_lo carry their own delays.
    value = 240 if key == "on_delay_s" else "critical"
    with pytest.raises(AlarmConfigError, match=rf"alarms\.do_low\.{key} does nothing"):
        rules_from_config({"do_low": {key: value}})


def test_a_rule_wide_default_that_a_level_inherits_is_kept():
    rules = by_name(rules_from_config({"do_low": {"off_delay_s": 60}, "ph": {"on_delay_s": 90}}))
    assert {level.off_delay_s for level in rules["do_low"].levels} == {60.0}
    assert {level.on_delay_s for level in rules["ph"].levels} == {90.0}


def test_a_rule_switched_off_is_still_checked():
    with pytest.raises(AlarmConfigError, match=r"alarms\.ph\.hi\.limit"):
        rules_from_config({"ph": {"enabled": False, "hi": "high"}})
