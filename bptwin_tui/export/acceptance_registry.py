"""The training-set registry: the batches a supervisor accepted, as one dataset folder.

The folder (``DATA_DIR/training-set`` by default) is an ordinary ``bptwin-dataset`` folder
(docs/dataset.md): ``manifest.json`` plus ``batch_NN.parquet`` and ``batch_NN_samples.parquet``
per accepted batch, so ``bptwin train DATA_DIR/training-set`` (or plain ``bptwin train``) reads
it like any campaign. Beside the manifest, ``acceptance.json`` says for each batch which
decision put it there (id, supervisor, time, reason, verdict).

The notebook's decisions are the source of truth; the folder is their materialisation.
Accepting a batch exports it here, rejecting it (a later decision) takes it out, and
:func:`sync_training_set` makes the folder agree with the decisions in force (e.g. after a
failed export, or on another machine). Files are written to a staging folder first and moved
in, and the manifest is replaced atomically, so a reader never sees half a batch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.models import BatchAcceptance
    from bptwin.eln.services import NotebookService
    from bptwin.twin.dataset import BatchRecord, Dataset

TRAINING_SET_DIRNAME = "training-set"
REGISTER_NAME = "acceptance.json"
DESCRIPTION = "bptwin training set: the batches a supervisor accepted for training"

Progress = Callable[[float, str], None]


class TrainingSetError(RuntimeError):
    """The training-set folder cannot be read or written; the message says what and where."""


def training_set_dir(data_dir: Path) -> Path:
    """Where the registry lives by default (``bptwin train`` reads it when given no folder)."""
    return Path(data_dir).expanduser() / TRAINING_SET_DIRNAME


@dataclass
class SyncReport:
    """What :func:`sync_training_set` changed."""

    directory: Path
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- reading


def registered(directory: Path) -> dict[int, dict[str, Any]]:
    """Batch number -> the decision that put it in the folder (empty for a new folder)."""
    path = Path(directory) / REGISTER_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(entry["batch"]): entry for entry in data["batches"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingSetError(f"{path} is damaged ({exc}); run 'bptwin accept --sync'") from exc


def _manifest(directory: Path) -> Dataset:
    from bptwin.twin.dataset import MANIFEST_NAME, Dataset, DatasetError, read_manifest

    if not (directory / MANIFEST_NAME).is_file():
        return Dataset(source="recorded", description=DESCRIPTION)
    try:
        return read_manifest(directory)
    except DatasetError as exc:
        raise TrainingSetError(f"training set {directory}: {exc}") from exc


# ---------------------------------------------------------------------------- writing


def _replace_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old or the new file)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_manifest(directory: Path, dataset: Dataset) -> None:
    from bptwin.twin.dataset import MANIFEST_NAME

    dataset.created = datetime.now(tz=timezone.utc).isoformat()
    dataset.batches.sort(key=lambda record: record.number)
    _replace_json(directory / MANIFEST_NAME, dataset.manifest())


def _write_register(directory: Path, entries: dict[int, dict[str, Any]]) -> None:
    _replace_json(
        directory / REGISTER_NAME,
        {"description": DESCRIPTION, "batches": [entries[n] for n in sorted(entries)]},
    )


def decision_entry(number: int, decision: BatchAcceptance) -> dict[str, Any]:
    """The register line of a batch: which decision put it in the training set."""
    return {
        "batch": number,
        "decision_id": decision.id,
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at.isoformat(),
        "reason": decision.reason,
        "verdict": decision.verdict,
    }


def batch_dataset_record(
    notebook: NotebookService,
    store: TimeSeriesStore,
    number: int,
    *,
    reactor: str,
    progress: Progress | None = None,
) -> BatchRecord:
    """The batch as a dataset record: 1 Hz readings from the store, samples from the notebook.

    Built by the same code as ``bptwin export`` (bptwin_tui.export.collect, dataset_export), so
    the training set holds exactly what an export of the batch holds.
    """
    from bptwin.tui.export.collect import (
        BatchData,
        ExportError,
        collect_notebook,
        collect_series,
        utc_now,
    )
    from bptwin.tui.export.dataset_export import batch_record

    records = collect_notebook(notebook, number, reactor)
    batch = records.batch
    if batch.inoculated_at is None or batch.ended_at is None:
        raise ExportError(f"batch {batch.number} has not run to its end: nothing to train on")
    now = utc_now()
    start, end = batch.inoculated_at.timestamp(), batch.ended_at.timestamp()
    series = collect_series(store, records.reactor, start, end, progress)
    data = BatchData(
        notebook=records,
        series=series,
        model_version=None,
        store_name=store.name,
        collected_at=now,
    )
    return batch_record(data)


def add_batch(
    directory: Path,
    record: BatchRecord,
    decision: BatchAcceptance,
) -> Path:
    """Put (or replace) ``record`` in the training set, registered under ``decision``."""
    from bptwin.twin.dataset import write_batch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dataset = _manifest(directory)
    register = registered(directory)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staging-"))
    try:
        written = write_batch(staging, record)
        for name in written.files.values():
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    dataset.batches = [r for r in dataset.batches if r.number != record.number]
    dataset.batches.append(written.without_data())
    _write_manifest(directory, dataset)
    register[record.number] = decision_entry(record.number, decision)
    _write_register(directory, register)
    return directory


def remove_batch(directory: Path, number: int) -> bool:
    """Take batch ``number`` out of the training set; False when it was not in it."""
    directory = Path(directory)
    dataset = _manifest(directory)
    register = registered(directory)
    entry = next((r for r in dataset.batches if r.number == number), None)
    if entry is None and number not in register:
        return False
    dataset.batches = [r for r in dataset.batches if r.number != number]
    _write_manifest(directory, dataset)
    register.pop(number, None)
    _write_register(directory, register)
    for name in entry.files.values() if entry is not None else ():
        (directory / name).unlink(missing_ok=True)
    return True


def sync_training_set(
    notebook: NotebookService,
    store: TimeSeriesStore,
    directory: Path,
    *,
    reactor: str,
    progress: Progress | None = None,
) -> SyncReport:
    """Make the folder hold exactly the batches whose decision in force is accept.

    A batch accepted again after a later decision is re-exported; one whose export fails
    (e.g. the store is unreachable) is reported in ``problems`` and the others go on.
    """
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.eln.acceptance_service import decisions_in_force
    from bptwin.eln.errors import NotebookError
    from bptwin.eln.models import AcceptanceDecision
    from bptwin.tui.export.collect import ExportError

    directory = Path(directory)
    report = SyncReport(directory)
    in_force = decisions_in_force(notebook)
    wanted = {n: row for n, row in in_force.items() if row.decision == AcceptanceDecision.ACCEPT}
    present = {record.number for record in _manifest(directory).batches}
    register = registered(directory)
    for number in sorted(present | set(register)):
        if number not in wanted:
            remove_batch(directory, number)
            report.removed.append(number)
    for number, decision in sorted(wanted.items()):
        current = register.get(number, {})
        if number in present and current.get("decision_id") == decision.id:
            report.kept.append(number)
            continue
        try:
            batch = notebook.batches.get_batch(number)
            record = batch_dataset_record(
                notebook, store, number, reactor=batch.reactor_id or reactor, progress=progress
            )
            add_batch(directory, record, decision)
        except (ExportError, TimeSeriesError, NotebookError, OSError) as exc:
            report.problems[number] = str(exc)
            continue
        report.added.append(number)
    if not (directory / REGISTER_NAME).exists():
        directory.mkdir(parents=True, exist_ok=True)
        _write_manifest(directory, _manifest(directory))
        _write_register(directory, {})
    return report
