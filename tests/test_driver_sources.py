"""Several sources per reactor (drivers/sources.py): who owns which channel, and the errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import pytest

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import Reading
from bptwin.drivers.base import Driver, ReadingSink
from bptwin.drivers.simulated import SimulatedReactorDriver
from bptwin.drivers.sources import (
    SOURCE_KINDS,
    DriverConfigError,
    PlannedSource,
    SourceContext,
    SourceKind,
    SourceOptions,
    plan_legacy,
    plan_sources,
    register_kind,
)
from bptwin.tui.settings import Settings, SettingsError, load_settings

ALL = frozenset(CHANNELS_BY_NAME)
OFFGAS = frozenset({"offgas_o2", "offgas_co2", "offgas_flow"})
LAB_MAP = {"lab/vessel1/ph": "ph", "lab/vessel1/do": "do"}


def owners_of(plan: object, reactor: str) -> dict[str, str]:
    return {c: o for (r, c), o in plan.owners.items() if r == reactor}  # type: ignore[attr-defined]


def test_a_real_lab_reactor_off_gas_serial_probes_mqtt_rest_from_bptwin_topics() -> None:
    plan = plan_sources(
        [
            {"name": "offgas", "kind": "serial", "port": "/dev/ttyUSB0"},
            {"name": "probes", "kind": "mqtt", "topic_map": LAB_MAP},
            {"name": "plc", "kind": "bptwin", "channels": ["*"]},
        ],
        reactors=["R1"],
        bus_is_mqtt=True,
    )
    owners = owners_of(plan, "R1")
    assert {c for c, o in owners.items() if o == "offgas"} == OFFGAS
    assert {c for c, o in owners.items() if o == "probes"} == {"ph", "do"}
    assert {c for c, o in owners.items() if o == "plc"} == ALL - OFFGAS - {"ph", "do"}
    policy = plan.policy(max_clock_skew_s=5, history_horizon_s=3600, clock_fault_after_s=30)
    assert policy.bus_sources == {"plc"}
    assert policy.station_clock_sources == frozenset()
    assert plan.local_reactors == {"R1"}


def test_a_channel_claimed_by_two_sources_names_both() -> None:
    with pytest.raises(DriverConfigError) as refused:
        plan_sources(
            [
                {"name": "offgas", "kind": "serial", "port": "/dev/ttyUSB0"},
                {"name": "gateway", "kind": "bptwin", "channels": ["ph", "offgas_co2"]},
            ],
            reactors=["R1"],
            bus_is_mqtt=True,
        )
    message = str(refused.value)
    assert "'offgas_co2' of reactor 'R1'" in message
    assert "acquisition.sources[0] ('offgas')" in message
    assert "acquisition.sources[1] ('gateway')" in message


def test_two_sources_taking_the_rest_of_one_reactor_name_both() -> None:
    with pytest.raises(DriverConfigError, match=r"sources\[0\] \('sim'\).*sources\[1\] \('b'\)"):
        plan_sources(
            [{"name": "sim", "kind": "simulated"}, {"name": "b", "kind": "bptwin"}],
            reactors=["R1"],
            bus_is_mqtt=True,
        )


def test_the_rest_on_different_reactors_is_no_conflict() -> None:
    plan = plan_sources(
        [
            {"name": "sim", "kind": "simulated", "reactors": ["R1"]},
            {"name": "other-station", "kind": "bptwin", "reactors": ["R2"]},
        ],
        reactors=["R1", "R2"],
        bus_is_mqtt=True,
    )
    assert set(owners_of(plan, "R1").values()) == {"sim"}
    assert set(owners_of(plan, "R2").values()) == {"other-station"}
    assert plan.stamps_from_station_only is False


@pytest.mark.parametrize(
    ("tables", "named"),
    [
        ([{"name": "x", "kind": "opc"}], "kind 'opc' is not one of"),
        ([{"name": "x", "kind": "serial", "prot": "/dev/x"}], "prot: unknown setting"),
        ([{"name": "x", "kind": "serial"}], "port: Field required"),
        ([{"name": "x", "kind": "simulated", "channels": ["рh"]}], "unknown channels"),
        ([{"name": "x", "kind": "simulated", "reactors": ["R9"]}], "not in station.reactors"),
        ([{"name": "x", "kind": "serial", "port": "p", "reactors": ["R1", "R2"]}], "exactly one"),
        ([{"name": "x", "kind": "serial", "port": "p", "channels": ["ph"]}], "off-gas analyser"),
        ([{"name": "x", "kind": "mqtt", "topic_map": LAB_MAP}], "bus.backend = 'mqtt'"),
        ([{"name": "a b", "kind": "bptwin"}], "source name"),
        ([{"name": "x", "kind": "bptwin"}, {"name": "x", "kind": "bptwin"}], "unique"),
        ([{"name": "x", "kind": "simulated", "speed": -1}], "speed"),
    ],
)
def test_bad_source_settings_name_the_source_and_key(tables: list, named: str) -> None:
    with pytest.raises(DriverConfigError, match=named):
        plan_sources(tables, reactors=["R1", "R2"], bus_is_mqtt=False)


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("simulated", {}, {"R1": {"simulated"}, "R2": {"simulated"}}),
        ("none", {}, {"R1": {"bptwin-topics"}, "R2": {"bptwin-topics"}}),
        ("mqtt", {}, {"R1": {"bptwin-topics"}, "R2": {"bptwin-topics"}}),
        (
            "serial",
            {"serial_port": "/dev/ttyUSB0"},
            {"R1": {"offgas-analyser", "bptwin-topics"}, "R2": {"bptwin-topics"}},
        ),
        ("replay", {"replay_file": "batch.parquet"}, {"R1": {"replay"}, "R2": {"bptwin-topics"}}),
        (
            "mqtt",
            {"topic_map": LAB_MAP},
            {"R1": {"mqtt", "bptwin-topics"}, "R2": {"mqtt", "bptwin-topics"}},
        ),
    ],
)
def test_the_single_source_setting_keeps_working(
    source: str, values: dict, expected: dict[str, set[str]]
) -> None:
    plan = plan_legacy(source, reactors=["R1", "R2"], bus_is_mqtt=True, **values)
    for reactor, owners in expected.items():
        assert set(owners_of(plan, reactor).values()) == owners, reactor
        assert set(owners_of(plan, reactor)) == ALL  # every channel has exactly one owner


def test_settings_build_the_plan_and_refuse_mixing_both_forms() -> None:
    settings = Settings(
        acquisition={
            "sources": [
                {"name": "offgas", "kind": "serial", "port": "/dev/ttyUSB0"},
                {"name": "sim", "kind": "simulated", "speed": 60},
            ]
        }
    )
    plan = settings.acquisition.plan(["R1"], bus_is_mqtt=False)
    assert [s.name for s in plan.sources] == ["offgas", "sim"]
    assert "sim (simulated) on R1:" in plan.describe()[1]
    mixed = Settings(acquisition={"source": "serial", "sources": [{"name": "b", "kind": "bptwin"}]})
    with pytest.raises(SettingsError, match=r"acquisition\.source belongs to the single-source"):
        mixed.acquisition.plan(["R1"], bus_is_mqtt=True)


def test_a_typo_in_a_source_stops_the_settings_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "bptwin.toml"
    config.write_text('[[acquisition.sources]]\nname = "probes"\nkind = "mqtt"\ntopicmap = {}\n')
    with pytest.raises(SettingsError) as refused:
        load_settings(config)
    assert "acquisition.sources: sources[0] ('probes'): " in str(refused.value)
    assert "topicmap: unknown setting" in str(refused.value)


def test_a_source_emits_only_the_channels_it_owns() -> None:
    plan = plan_sources(
        [
            {"name": "sim", "kind": "simulated", "speed": 0, "channels": ["ph", "do"]},
            {"name": "rest", "kind": "bptwin"},
        ],
        reactors=["R1"],
        bus_is_mqtt=False,
    )
    got: list[tuple[str, Reading]] = []

    def sink_for(origin: str) -> ReadingSink:
        return lambda reading: got.append((origin, reading))

    (driver,) = plan.build_drivers(SourceContext(sink_for=sink_for, station_reactors=("R1",)))
    assert isinstance(driver, SimulatedReactorDriver)
    driver.duration_s = 20
    driver.run(threading.Event())
    assert {origin for origin, _ in got} == {"sim"}
    assert {reading.channel for _, reading in got} == {"ph", "do"}
    assert len(got) == 40


class _ProbeOptions(SourceOptions):
    kind: str = "probe"
    address: str


class _ProbeKind(SourceKind):
    """A stand-in for the OPC UA and Modbus sources: a kind plugs in by registering."""

    name = "probe"
    options_model: ClassVar[type[SourceOptions]] = _ProbeOptions
    built: ClassVar[list[str]] = []

    def default_channels(self, options: SourceOptions) -> list[str]:
        return ["ph", "do"]

    def build(
        self, source: PlannedSource, context: SourceContext, sink: ReadingSink
    ) -> list[Driver]:
        assert isinstance(source.options, _ProbeOptions)
        self.built.append(source.options.address)
        return []


def test_a_new_kind_of_source_plugs_in_by_registering() -> None:
    register_kind(_ProbeKind())
    try:
        plan = plan_sources(
            [
                {"name": "arc", "kind": "probe", "address": "10.0.0.7:502"},
                {"name": "sim", "kind": "simulated"},
            ],
            reactors=["R1"],
            bus_is_mqtt=False,
        )
        assert {c for c, o in owners_of(plan, "R1").items() if o == "arc"} == {"ph", "do"}
        plan.build_drivers(SourceContext(sink_for=lambda _: print, station_reactors=("R1",)))
        assert _ProbeKind.built == ["10.0.0.7:502"]
    finally:
        SOURCE_KINDS.pop("probe")


def test_the_worked_example_in_the_docs_plans_as_described(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "drivers.md").read_text()
    example = text.split("A worked example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "bptwin.toml"
    config.write_text(example)
    settings = load_settings(config)
    plan = settings.acquisition.plan(settings.station.reactors, bus_is_mqtt=True)
    r1 = owners_of(plan, "R1")
    assert {c for c, o in r1.items() if o == "offgas"} == OFFGAS
    assert {c for c, o in r1.items() if o == "probes"} == {"ph", "do"}
    assert {c for c, o in r1.items() if o == "plc"} == ALL - OFFGAS - {"ph", "do"}
    assert set(owners_of(plan, "R2").values()) == {"demo"}
    assert plan.describe()[0] == "offgas (serial) on R1: offgas_co2, offgas_flow, offgas_o2"


def test_doctor_names_both_sources_of_a_clash_and_lists_what_each_owns() -> None:
    from bptwin.tui.doctor import Status, check_serial, check_sources

    clash = Settings(
        acquisition={
            "sources": [
                {"name": "a", "kind": "bptwin", "channels": ["ph"]},
                {"name": "b", "kind": "bptwin", "channels": ["ph"]},
            ]
        }
    )
    result = check_sources(clash)
    assert result.status is Status.FAIL and "('a')" in result.detail and "('b')" in result.detail
    fine = Settings(
        acquisition={"sources": [{"name": "oga", "kind": "serial", "port": "/dev/nothing-here"}]}
    )
    assert check_sources(fine).status is Status.PASS
    port = check_serial(fine)
    assert not isinstance(port, list)
    assert port.status is Status.FAIL and "acquisition.sources[0] ('oga')" in port.detail
