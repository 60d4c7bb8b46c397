"""The examples of README.md and docs/*.md, collected and run by the test suite (sybil).

Registered in the root conftest; ``testpaths`` holds README.md and docs/, so ``make test`` runs
them (``pytest docs README.md`` runs them alone). What each fenced block is checked for:

- ``python``: run, top to bottom, in one namespace per document; the objects an API summary
  names (``settings_alarms``, ``reading``, a dataset folder "DIR", ...) are made by that
  document's set-up below. An invisible ``<!-- invisible-code-block: python -->`` may check what
  the example did.
- ``toml``: parsed, then validated as the settings file (``Settings``: an unknown key fails), its
  ``[alarms]`` through the alarm rule loader; a lab import map through the import-map loader.
- ``sh`` and unlabeled blocks: every ``bptwin ...`` line is parsed by bptwin's own command-line
  parser (a missing argument or an unknown option fails); every ``BPTWIN_...=`` assignment is
  loaded as an environment override (a variable naming no setting fails); a block whose
  commands are all quick and local (``bptwin db``, ``bptwin version``, ``openssl``,
  ``mosquitto_pub`` to the test broker, ``sqlite3``) is run in a temporary folder with a short
  time limit, paths under /etc/bptwin moved into it. Anything else must be marked.
- ``json``: an MQTT payload is decoded by the bus's payload models (readings, snapshots), an
  alarm transition by the alarm payload parser, a setpoint signed and verified, the acquisition
  claim read back; an annotated manifest (``// comments``, ``...``) is compared key by key with
  one the document's set-up wrote.

A block of signatures (``Name(params) -> result``, drivers.md) follows
``<!-- synopsis: next -->`` and is compared with the code: every parameter shown exists in the
same order with the same default (tests/docs_synopsis.py).

A block that cannot run here is marked in the document, with the reason, by
``<!-- skip: next "reason" -->`` just before it. The session ends with the count of examples
run and marked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DOCUMENTS = ["README.md", "docs/*.md"]
SHELL_TIMEOUT_S = 60.0
# Commands a block may hold to be run here: quick, local, nothing outside the temp folder.
RUNNABLE_WORDS = {"bptwin", "umask", "openssl", "mosquitto_pub", "sqlite3", "export"}
RUNNABLE_BPTWIN = {"db", "version"}
# Placeholders of a synopsis line, for the parser check only.
PLACEHOLDERS = {"S": "7", "N": "7", "H": "24", "V": "v1", "<version>": "v1"}

# ------------------------------------------------------------------ per-document set-up


def _chdir_to_temp(namespace: dict[str, Any]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bptwin-doc-"))
    previous = Path.cwd()
    os.chdir(folder)
    namespace["_cleanups"].append(lambda: os.chdir(previous))
    namespace["_cleanups"].append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


def _setup_alarms(namespace: dict[str, Any]) -> None:
    import time

    from bptwin.database.reading import Reading
    from bptwin.twin.cleaning import CleaningEvent
    from tests.control_states import make_state

    now = time.time()
    # The names the API summary leaves to the reader: a reading, a state, an alarm id, ...
    namespace.update(
        settings_alarms={"sensor_frozen": {"enabled": False}},
        reactor="R1",
        reading=Reading(now, "R1", "do", 14.0, "%sat"),
        ts=now,
        now=now,
        value=1.1,
        process_state=make_state(0, 40.0),
        event=CleaningEvent(now, "R1", "ph", 1.2, "below_physical_range"),
        at=now,
        measured_od600=12.0,
        predicted_od600=11.0,
        alarm_id="R1/impossible_value/ph",  # raised by the example's feed_cleaning_event
        actor="ana",
        reason="probe being replaced",
        until=now + 3600,
        transitions=(),
    )


def _setup_dataset(namespace: dict[str, Any]) -> None:
    import numpy as np
    import pandas as pd

    from bptwin.twin.campaign import generate_campaign

    folder = _chdir_to_temp(namespace)
    # "DIR": two campaign batches cut to one hour, 16 a hold-out batch.
    generate_campaign(folder / "DIR", 7, batches=[15, 16], hours=1.0, workers=1)
    # The lab's own export that import_table reads: ISO times, its own column names and units.
    times = pd.date_range("2026-02-01T08:00:00Z", periods=600, freq="1s")
    rng = np.random.default_rng(3)
    pd.DataFrame(
        {
            "Time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "DO [0-1]": 0.95 - np.linspace(0, 0.1, 600),
            "T broth [K]": 303.15 + rng.normal(0, 0.02, 600),
            "CO2 ppm": 400 + np.linspace(0, 3000, 600),
            "O2 %": 20.9 - np.linspace(0, 0.5, 600),
            "Agitation": 600.0,
            "Air": 1.0,
        }
    ).to_csv(folder / "run_2026_02_01.csv", index=False)
    pd.DataFrame(
        {
            "Sampled at": ["2026-02-01T08:01:00Z", "2026-02-01T08:09:00Z"],
            "OD": [1.2, 1.6],
            "DCW": [0.4, 0.5],
            "Glycerol": [40.0, 39.0],
            "Scope": ["no contamination", "no contamination"],
        }
    ).to_csv(folder / "samples.csv", index=False)


def _setup_data_model(namespace: dict[str, Any]) -> None:
    """The migration example writes its draft into a copy of the migrations, not the package."""
    import bptwin.database.migrate as migrate

    folder = _chdir_to_temp(namespace)
    copy = folder / "migrations"
    shutil.copytree(
        migrate.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    original = migrate.MIGRATIONS_DIR
    migrate.MIGRATIONS_DIR = copy
    namespace["_cleanups"].append(lambda: setattr(migrate, "MIGRATIONS_DIR", original))


def _recorded_station(namespace: dict[str, Any], number: int) -> None:
    """A data folder whose notebook and embedded store hold a short simulated batch ``number``,
    recorded as the station records one (tests/export_batches.py), with settings naming it."""
    import dataclasses
    from types import SimpleNamespace

    from bptwin.database.migrate import upgrade
    from bptwin.database.timeseries.embedded import EmbeddedStore
    from bptwin.eln.services import NotebookService
    from bptwin.tui.export.simulated import ensure_people, record_simulated_batch
    from bptwin.tui.settings import Settings
    from tests import export_batches

    folder = _chdir_to_temp(namespace)
    settings = Settings(station={"data_dir": folder / "data"})  # type: ignore[arg-type]
    settings.data_dir.mkdir()
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    store = EmbeddedStore(settings.timeseries_path())
    namespace["_cleanups"].append(store.close)
    if number == export_batches.BATCH:
        recorded = export_batches.record_batch(notebook, store)
    else:
        record = dataclasses.replace(export_batches.simulated_batch(), number=number)
        ensure_people(notebook)
        recorded = record_simulated_batch(
            notebook,
            store,
            record,
            predictor=export_batches.predictor(),
            operator="ana",
            supervisor="sam",
        )
    namespace.update(
        settings=settings,
        data_dir=settings.data_dir,
        notebook=notebook,
        store=store,
        station=SimpleNamespace(store=store),
        pin="4321",  # the supervisor's
        recorded=recorded,
    )


def _setup_export(namespace: dict[str, Any]) -> None:
    from bptwin.tui.export import export_batch

    _recorded_station(namespace, 16)
    export_batch(namespace["settings"], 16, "DIR", ("md",), store=namespace["store"])


def _notebook(namespace: dict[str, Any], clock: Callable[[], Any] | None = None) -> Any:
    """A migrated SQLite notebook in a temp data folder, with supervisor sam and operator ana."""
    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import make_engine
    from bptwin.eln.services import NotebookService
    from bptwin.tui.export.simulated import ensure_people

    folder = _chdir_to_temp(namespace)
    url = f"sqlite:///{folder / 'notebook.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    namespace["_cleanups"].append(engine.dispose)
    notebook = NotebookService(engine, clock=clock) if clock else NotebookService(engine)
    ensure_people(notebook)
    namespace.update(notebook=notebook, data_dir=folder, pin="4321")
    return notebook


def _setup_acceptance(namespace: dict[str, Any]) -> None:
    """Batch 7 run through the notebook as tests/test_acceptance.py runs a good batch, with the
    balance's readings (10 s) in the store so the dropout can be counted."""
    from bptwin.database.reading import Reading
    from bptwin.database.timeseries.embedded import EmbeddedStore
    from tests.fixtures.notebook import SettableClock
    from tests.test_acceptance import T0, run_batch

    clock = SettableClock(T0)
    notebook = _notebook(namespace, clock)
    notebook.operators.create_operator("sam", "olga", "operator", "1234", "Olga Op")
    run_batch(notebook, clock, 7)
    store = EmbeddedStore(namespace["data_dir"] / "timeseries.sqlite")
    namespace["_cleanups"].append(store.close)
    start = T0.timestamp()
    store.write(
        [Reading(start + 10.0 * i, "R1", "vessel_weight", 1000.0, "g") for i in range(8280)]
    )
    store.flush()
    namespace["store"] = store


def _setup_calibrations(namespace: dict[str, Any]) -> None:
    """A pH calibration as the wizard records it (eln/calibration.py), and batch 12 to start."""
    import time

    from bptwin.database.reading import Reading
    from bptwin.eln.calibration import evaluate_ph

    notebook = _notebook(namespace)
    outcome = evaluate_ph(2.0, 171.0, 25.0)
    notebook.calibrations.record_calibration(
        "ana",
        channel="ph",
        kind=outcome.kind.value,
        measured=outcome.measured,
        results=outcome.results,
        passed=outcome.passed,
    )
    notebook.batches.create_batch("ana", 12, "B", strain="X-33", reactor_id="R1")
    namespace["reading"] = Reading(time.time(), "R1", "ph", 5.0, "pH")


def _setup_serial_protocol(namespace: dict[str, Any]) -> None:
    namespace["body"] = "OGA,17,20.512,0.734,OK"


def _setup_mqtt(namespace: dict[str, Any]) -> None:
    namespace["gate"] = lambda topic: True
    # The Python example names the machine's broker; the fixture may have started its own.
    namespace["_machine_broker"] = tuple(namespace["mqtt_broker"]) == ("127.0.0.1", 1883)


SETUPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "alarms.md": _setup_alarms,
    "dataset.md": _setup_dataset,
    "data-model.md": _setup_data_model,
    "serial-protocol.md": _setup_serial_protocol,
    "mqtt.md": _setup_mqtt,
    "export.md": _setup_export,
    "acceptance.md": _setup_acceptance,
    "operator-guide-setup.md": _setup_calibrations,
}


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_cleanups"] = []
    namespace["_set_up"] = False


def _teardown(namespace: dict[str, Any]) -> None:
    for cleanup in reversed(namespace.get("_cleanups", [])):
        cleanup()


def _ensure_setup(example: Example) -> None:
    namespace = example.namespace
    if namespace.get("_set_up"):
        return
    namespace["_set_up"] = True
    setup = SETUPS.get(Path(example.path).name)
    if setup is not None:
        setup(namespace)


# What each example was checked by, for the summary: (document, line) -> kind.
_kinds: dict[tuple[str, int], str] = {}


def _note(example: Example, kind: str) -> None:
    _kinds[(Path(example.path).name, example.line)] = kind


class DocPythonEvaluator(PythonEvaluator):
    def __call__(self, example: Example) -> str | None:
        _ensure_setup(example)
        if example.namespace.get("_machine_broker") is False and "1883" in str(example.parsed):
            pytest.skip("names the broker on 127.0.0.1:1883, which this machine does not run")
        opening = example.document.text[example.region.start : example.region.start + 16]
        invisible = opening.lstrip().startswith("<!--")
        _note(example, "python check (invisible)" if invisible else "python run")
        return super().__call__(example)


# ------------------------------------------------------------------------------ TOML


def check_toml(source: str, where: str) -> None:
    """Settings (every key known) or a lab import map; AssertionError/exception otherwise."""
    from bptwin.tui.settings import Settings

    data = tomllib.loads(source)
    sections = set(Settings.model_fields)
    if set(data) <= sections:
        # Through the settings loader itself: a key it does not know fails here as at start.
        with tempfile.TemporaryDirectory() as folder:
            # Files the example names under /etc/bptwin (certificates, keys) are made, empty,
            # in the temp folder: their paths are checked, not their contents.
            for named in sorted(set(re.findall(r'"/etc/bptwin/([^"]+)"', source))):
                made = Path(folder, "etc", "bptwin", named)
                made.parent.mkdir(parents=True, exist_ok=True)
                made.touch(mode=0o600)
            source = source.replace('"/etc/bptwin/', f'"{folder}/etc/bptwin/')
            path = Path(folder) / "bptwin.toml"
            path.write_text(source, encoding="utf-8")
            from bptwin.tui.settings import load_settings

            settings = load_settings(path)
            if "alarms" in data:
                from bptwin.twin.alarm_rules import rules_from_config

                rules_from_config(settings.alarms)
            if "acquisition" in data:
                settings.acquisition.plan(
                    settings.station.reactors, bus_is_mqtt=settings.bus.backend == "mqtt"
                )
        return
    if "batches" in data or "files" in data:
        from bptwin.twin.lab_import.column_map import parse_map

        parse_map(data, base_dir=Path("."), where=where)
        return
    unknown = sorted(set(data) - sections)
    raise AssertionError(
        f"{where}: TOML is neither settings (unknown sections {unknown}) nor an import map"
    )


def evaluate_toml(example: Example) -> None:
    _note(example, "TOML validated")
    check_toml(example.parsed, f"{example.path}:{example.line}")


# ------------------------------------------------------------------------------ JSON


def evaluate_json(example: Example) -> None:
    name = Path(example.path).name
    if name in ANNOTATED_JSON_CHECKS:
        _ensure_setup(example)
        _note(example, "annotated manifest compared with a real one")
        ANNOTATED_JSON_CHECKS[name](annotated_json(example.parsed))
        return
    _note(example, "JSON payload decoded")
    data = json.loads(example.parsed)
    checker = JSON_CHECKS.get(name)
    if checker is None:
        raise AssertionError(f"no check for a JSON example in {name}: add one or mark it")
    checker(data)


def _check_mqtt_json(data: dict[str, Any]) -> None:
    from bptwin.database.bus.payloads import ReadingPayload, decode_reading, decode_snapshot

    if "values" in data:
        readings = decode_snapshot(json.dumps(data), reactor="R1", now=_instant(data["ts"]))
        assert {r.channel for r in readings} == set(data["values"])
    elif data.get("type") == "object":  # the JSON schema of a single reading
        fields = set(ReadingPayload.model_fields) | {
            f.alias for f in ReadingPayload.model_fields.values() if f.alias
        }
        assert set(data["properties"]) <= fields, set(data["properties"]) - fields
        assert set(data["required"]) <= set(data["properties"])
        quality = data["properties"]["quality"]["enum"]
        for value in quality:
            decode_reading(
                json.dumps({"ts": 1.8e9, "value": 1.0, "quality": value}),
                reactor="R1",
                channel="ph",
                now=1.8e9,
            )
    else:
        reading = decode_reading(
            json.dumps(data), reactor="R1", channel="ph", now=_instant(data["ts"])
        )
        assert reading.value == data["value"]


def _check_alarm_json(data: dict[str, Any]) -> None:
    from bptwin.twin.alarms.payloads import transition_from_payload

    transition = transition_from_payload(data, now=_instant(data["at"]))
    assert transition.alarm_id == data["alarm_id"]


def _check_setpoint_json(data: dict[str, Any]) -> None:
    """The documented fields, signed with a fresh key, pass every check of a receiver."""
    from bptwin.twin.setpoints import ControlKey, SetpointVerifier, signed_payload

    unsigned = {key: value for key, value in data.items() if key != "sig"}
    topic = f"bptwin/v1/{data['reactor']}/setpoints/{data['parameter']}"
    key = ControlKey.generate()
    verifier = SetpointVerifier(key, clock=lambda: _instant(data["ts"]), reactors={"R1"})
    command = verifier.verify(topic, signed_payload(topic, unsigned, key))
    assert command.value == data["value"]


def _instant(text: Any) -> float:
    from datetime import datetime

    if isinstance(text, int | float):
        return float(text) / (1000 if text > 1e11 else 1)
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _check_acquisition_status_json(data: dict[str, Any]) -> None:
    """The retained claim: every field the station writes, read back by its parser."""
    from bptwin.tui.runtime.acquisition_lock import _claim_payload, owner_from_payload

    owner = owner_from_payload("vessel1", json.dumps(data))
    assert owner is not None and (owner.host, owner.pid) == (data["host"], data["pid"])
    written = _claim_payload("running", "host", "station", "/data", "instance")
    assert set(data) == set(written), set(data) ^ set(written)


def annotated_json(text: str) -> Any:
    """JSON shown with ``// comments`` and elisions (``...``, ``…`` as an entry) made plain."""
    lines = [re.sub(r"\s+//.*$", "", line) for line in text.splitlines()]
    plain = "\n".join(lines)
    plain = re.sub(r",\s*(?:\.\.\.|…)\s*(?=[}\]])", "", plain)
    plain = re.sub(r"(?<=[{\[])\s*(?:\.\.\.|…)\s*(?=[}\]])", "", plain)
    return json.loads(plain)


def _same_keys(
    shown: dict[str, Any], real: dict[str, Any], what: str, *, optional: tuple[str, ...] = ()
) -> None:
    missing = sorted(set(real) - set(shown))
    unknown = sorted(set(shown) - set(real) - set(optional))
    assert not missing and not unknown, (
        f"{what}: the document lacks {missing} and shows {unknown} that real files do not hold"
    )


def _check_dataset_manifest(shown: dict[str, Any]) -> None:
    """Against the manifest of the simulated dataset the document's set-up wrote ("DIR")."""
    real = json.loads(Path("DIR", "manifest.json").read_text(encoding="utf-8"))
    _same_keys(shown, real, "manifest")
    imported_only = ("process", "provenance")
    _same_keys(shown["batches"][0], real["batches"][0], "manifest batch", optional=imported_only)


def _check_export_manifest(shown: dict[str, Any]) -> None:
    """Against the export.json of the batch the document's set-up exported ("DIR")."""
    real = json.loads(Path("DIR", "export.json").read_text(encoding="utf-8"))
    _same_keys(shown, real, "export.json")
    _same_keys(shown["files"][0], real["files"][0], "export.json file entry")


ANNOTATED_JSON_CHECKS: dict[str, Callable[[Any], None]] = {
    "dataset.md": _check_dataset_manifest,
    "export.md": _check_export_manifest,
}


JSON_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "mqtt.md": _check_mqtt_json,
    "alarms.md": _check_alarm_json,
    "control.md": _check_setpoint_json,
    "operations.md": _check_acquisition_status_json,
}

# ------------------------------------------------------------------------- shell


ASSIGNMENT = re.compile(r"^(?:export\s+)?(BPTWIN_\w+)=(.*)$")


def command_lines(source: str) -> Iterator[str]:
    """Logical lines (backslash continuations joined); in a transcript (lines with a ``$ ``
    prompt) only the prompted lines, the rest being output."""
    transcript = any(line.startswith("$ ") for line in source.splitlines())
    pending = ""
    for raw in source.splitlines():
        if transcript and not raw.startswith("$ ") and not pending:
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line.startswith("$ "):
            line = line[2:]
        if line and not line.startswith("#"):
            yield line


def bptwin_arguments(line: str, *, strict: bool = True) -> list[str] | None:
    """The arguments of a ``bptwin ...`` line (placeholders filled), else None.

    Not ``strict`` (unlabeled blocks, which also hold diagrams and output): only a line whose
    second word is a sub-command or an option counts as a command.
    """
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    if not words or Path(words[0]).name != "bptwin":
        return None
    if (
        not strict
        and len(words) > 1
        and not (words[1].startswith("-") or words[1] in _sub_commands())
    ):
        return None
    arguments = []
    for word in words[1:]:
        word = word.strip("[]")
        if word in ("...", "…", ""):
            continue
        arguments.append(PLACEHOLDERS.get(word, word))
    return arguments


def _sub_commands() -> set[str]:
    import argparse

    from bptwin.tui.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def check_command(arguments: list[str], where: str) -> None:
    """Parse with bptwin's own parser: a missing argument or unknown option fails."""
    from bptwin.tui.cli import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(arguments)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(
                f"{where}: 'bptwin {' '.join(arguments)}' is refused by bptwin's parser:\n"
                f"{errors.getvalue()}"
            ) from None


def check_environment(assignments: dict[str, str], where: str) -> None:
    from bptwin.tui.settings import Settings
    from bptwin.tui.settings_env import unknown_variables

    problems = unknown_variables(assignments, Settings)
    assert not problems, f"{where}: {problems}"
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        config = Path(folder) / "bptwin.toml"
        config.write_text("")
        for name, value in assignments.items():
            patch.setenv(name, value)
        from bptwin.tui.settings import load_settings

        load_settings(config)


def evaluate_shell(example: Example) -> None:
    where = f"{example.path}:{example.line}"
    labeled = example.region.parsed[0] != ""
    lines = list(command_lines(example.parsed))
    assignments: dict[str, str] = {}
    runnable = True
    for line in lines:
        match = ASSIGNMENT.match(line)
        if match:
            value = shlex.split(match.group(2))
            assignments[match.group(1)] = value[0] if value else ""
            continue
        arguments = bptwin_arguments(line, strict=labeled)
        if arguments is not None:
            check_command(arguments, where)
            if not arguments or arguments[0] not in RUNNABLE_BPTWIN:
                runnable = False
            continue
        if not labeled:
            runnable = False  # text beside the commands: check the commands only
            continue
        words = {shlex.split(part)[0] for part in re.split(r"[;|&]+", line) if part.strip()}
        if not words <= RUNNABLE_WORDS:
            raise AssertionError(
                f"{where}: '{line}' cannot be run by the docs tests; mark the block with "
                '<!-- skip: next "reason" --> or make it runnable'
            )
    _note(example, "commands parsed by the CLI")
    if assignments:
        _note(example, "environment loaded")
        check_environment(assignments, where)
    if runnable and len(assignments) < len(lines):
        _note(example, "shell run")
        run_shell(example, example.parsed)


def run_shell(example: Example, source: str) -> None:
    where = f"{example.path}:{example.line}"
    folder = Path(tempfile.mkdtemp(prefix="bptwin-doc-sh-"))
    try:
        (folder / ".venv").symlink_to(VENV_BIN.parent)
        (folder / "etc" / "bptwin").mkdir(parents=True)
        script = source.replace("/etc/bptwin/", f"{folder}/etc/bptwin/")
        broker = example.namespace.get("mqtt_broker")
        if broker is not None:
            script = script.replace("-h 127.0.0.1", f"-h {broker[0]} -p {broker[1]}")
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("BPTWIN_")
        }
        environment.update(HOME=str(folder), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
        name = Path(example.path).name
        prepare = SHELL_PREPARE.get(name)
        if prepare is not None:
            prepare(folder)
        around = SHELL_AROUND.get(name, _nothing_around)
        with around(example.namespace) as check_after:
            done = subprocess.run(
                ["bash", "-e", "-c", script],
                cwd=folder,
                env=environment,
                capture_output=True,
                text=True,
                timeout=SHELL_TIMEOUT_S,
            )
            assert done.returncode == 0, (
                f"{where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
            check_after()
        after = SHELL_CHECKS.get(name)
        if after is not None:
            after(folder, done.stdout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _after_control(folder: Path, output: str) -> None:
    from bptwin.twin.setpoints import ControlKey

    ControlKey.from_file(folder / "etc" / "bptwin" / "control.key")


def _prepare_stores(home: Path) -> None:
    """The station's stores where the examples look: ~/.local/share/bptwin (HOME is the temp)."""
    from bptwin.database.spool import Spool
    from bptwin.database.timeseries.embedded import EmbeddedStore

    data = home / ".local" / "share" / "bptwin"
    (data / "spool").mkdir(parents=True)
    EmbeddedStore(data / "timeseries.sqlite").close()
    Spool(data / "spool" / "influx.sqlite").close()


@contextlib.contextmanager
def _nothing_around(namespace: dict[str, Any]) -> Iterator[Callable[[], None]]:
    yield lambda: None


@contextlib.contextmanager
def _mqtt_listener(namespace: dict[str, Any]) -> Iterator[Callable[[], None]]:
    """What mosquitto_pub sends, received from the broker and decoded as the station does."""
    import threading
    import time

    from bptwin.database.bus import MqttBus
    from bptwin.database.bus.payloads import decode_any
    from bptwin.database.bus.topics import parse_reading_topic

    host, port = namespace["mqtt_broker"]
    received: list[tuple[str, bytes]] = []
    arrived = threading.Condition()

    def keep(topic: str, payload: bytes) -> None:
        with arrived:
            received.append((topic, bytes(payload)))
            arrived.notify_all()

    bus = MqttBus(host, port)
    bus.start()
    bus.subscribe("bptwin/v1/R1/sensors/#", keep)

    def check() -> None:
        wanted = {"ph", "do", "od_probe", None}  # None: the snapshot topic
        seen: dict[str | None, list[Any]] = {}
        deadline = time.monotonic() + 30.0
        with arrived:
            while not wanted <= set(seen) and time.monotonic() < deadline:
                for topic, payload in received:
                    _, channel = parse_reading_topic(topic)
                    seen[channel] = decode_any(payload, reactor="R1", channel=channel)
                arrived.wait(0.2)
        assert wanted <= set(seen), f"not received from the broker: {wanted - set(seen)}"
        assert seen["ph"][0].value == 5.01 and seen["do"][0].value == 41.7
        assert seen["od_probe"][0].value != seen["od_probe"][0].value  # NaN, quality bad
        assert {reading.channel for reading in seen[None]} == {"ph", "do", "temp_broth"}

    try:
        yield check
    finally:
        bus.stop()


SHELL_PREPARE: dict[str, Callable[[Path], None]] = {"timeseries.md": _prepare_stores}
SHELL_AROUND: dict[str, Callable[[dict[str, Any]], Any]] = {"mqtt.md": _mqtt_listener}
SHELL_CHECKS: dict[str, Callable[[Path, str], None]] = {"control.md": _after_control}


# --------------------------------------------------------------------------- parsing


class BlockParser:
    """Fenced blocks by language; unlabeled blocks only when they hold bptwin command lines."""

    def __init__(self, languages: dict[str, Callable[[Example], Any]]) -> None:
        self.languages = languages
        self.lexer = FencedCodeBlockLexer(language=r"[\w-]*")

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.lexer(document):
            language = region.lexemes["language"]
            source = str(region.lexemes["source"])
            if language not in self.languages:
                continue
            if language == "" and not any(
                bptwin_arguments(line, strict=False) is not None for line in command_lines(source)
            ):
                continue
            region.parsed = (language, source)
            region.evaluator = self._evaluate
            yield region

    def _evaluate(self, example: Example) -> Any:
        language, source = example.parsed
        example.parsed = source
        try:
            return self.languages[language](example)
        finally:
            example.parsed = (language, source)


def _shell(example: Example) -> None:
    evaluate_shell(example)


class SynopsisParser:
    """``<!-- synopsis: next -->`` before a block of signatures (``Name(params) -> result``):
    each one naming an object of bptwin.drivers is compared with the code (tests/docs_synopsis.py)
    instead of being run."""

    def __init__(self) -> None:
        self.lexer = DirectiveInHTMLCommentLexer(directive="synopsis", arguments=r"next")

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.lexer(document):
            region.parsed = "next"
            region.evaluator = self._install
            yield region

    def _install(self, directive: Example) -> None:
        document = directive.document

        def check(example: Example) -> None:
            document.pop_evaluator(check)
            from tests.docs_synopsis import check_synopsis

            source = example.parsed[1] if isinstance(example.parsed, tuple) else example.parsed
            if check_synopsis(str(source)) == 0:
                raise AssertionError(
                    f"{example.path}:{example.line}: no signature of bptwin.drivers found"
                )
            _note(example, "signatures checked against the code")

        document.push_evaluator(check)


LANGUAGES: dict[str, Callable[[Example], Any]] = {
    "toml": evaluate_toml,
    "json": evaluate_json,
    "sh": _shell,
    "": _shell,
}


def _sybil(**options: Any) -> Sybil:
    return Sybil(
        parsers=[
            SkipParser(),
            SynopsisParser(),
            CodeBlockParser(language="python", evaluator=DocPythonEvaluator()),
            BlockParser(LANGUAGES),
        ],
        path=str(ROOT),
        setup=_setup,
        teardown=_teardown,
        **options,
    )


pytest_collect_file = (
    _sybil(patterns=DOCUMENTS, excludes=["docs/mqtt.md"])
    + _sybil(patterns=["docs/mqtt.md"], fixtures=["mqtt_broker"])
).pytest()


# ---------------------------------------------------------------------------- summary

_outcomes: Counter[str] = Counter()
_reasons: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if ".md" not in report.nodeid.split("::")[0]:
        return
    if report.when == "call" and report.passed:
        document = Path(report.nodeid.split("::")[0]).name
        line = re.search(r"line:(\d+)", report.nodeid)
        kind = _kinds.get((document, int(line.group(1)) if line else -1))
        if kind is None:  # a <!-- skip: ... --> directive, not an example
            return
        if kind.endswith("(invisible)"):
            _outcomes["invisible"] += 1
            return
        _outcomes["run"] += 1
        _outcomes[f"kind:{kind}"] += 1
    elif report.failed:
        _outcomes["failed"] += 1
    elif report.skipped:
        _outcomes["marked"] += 1
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _reasons[reason.removeprefix("Skipped: ")] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not sum(_outcomes.values()):
        return
    write = terminalreporter.write_line
    terminalreporter.section("documentation examples")
    write(
        f"{_outcomes['run']} examples run, {_outcomes['marked']} marked as not runnable here "
        f"(with the reason), {_outcomes['failed']} failed; {_outcomes['invisible']} invisible "
        "checks of what an example did"
    )
    kinds = sorted((key[5:], count) for key, count in _outcomes.items() if key.startswith("kind:"))
    write("  run: " + ", ".join(f"{count} {kind}" for kind, count in kinds))
    for reason, count in sorted(_reasons.items()):
        write(f"  marked ({count}): {reason}")


__all__ = ["pytest_collect_file", "pytest_runtest_logreport", "pytest_terminal_summary"]
