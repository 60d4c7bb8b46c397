"""``bptwin export``: one batch as a report (HTML, Markdown, PDF) and a dataset (Parquet).

:func:`export_batch` opens the configured notebook and time-series store and writes::

    OUT/batch_NN_report.html      self-contained (plots inlined), prints cleanly
    OUT/batch_NN_report.md        + OUT/batch_NN_plots/*.png
    OUT/batch_NN_report.pdf       composed directly (reportlab)
    OUT/dataset/                  docs/dataset.md format + windows and predictions files
    OUT/export.json               every file written with its size and sha256

Files are written to a staging folder inside OUT and moved into place only when everything
is written, so a failed or cancelled export leaves the previous export as it was. The same
function runs from the CLI and from the app's export screen (``progress`` feeds the bar).
Heavy libraries (pandas, matplotlib, reportlab) are imported only when an export runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.tui.export.collect import ExportCancelled, ExportError, Progress

if TYPE_CHECKING:
    from bptwin.database.timeseries.base import TimeSeriesStore
    from bptwin.eln.services import NotebookService
    from bptwin.tui.settings import Settings

__all__ = [
    "FORMATS",
    "ExportCancelled",
    "ExportError",
    "ExportResult",
    "ExportedFile",
    "default_out_dir",
    "export_batch",
    "export_from",
    "export_job",
    "parse_formats",
]

FORMATS = ("html", "md", "pdf")
MANIFEST_NAME = "export.json"
EXPORT_FORMAT = "bptwin-export"
EXPORT_FORMAT_VERSION = 1
DATASET_DIR = "dataset"

# Share of the progress bar each step takes (reading the store dominates).
_STEPS = {
    "notebook": (0.0, 0.05),
    "series": (0.05, 0.55),
    "acceptance": (0.55, 0.60),
    "dataset": (0.60, 0.72),
    "plots": (0.72, 0.88),
    "reports": (0.88, 0.98),
}


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    size: int
    sha256: str
    kind: str  # report-html, report-md, report-pdf, plot, dataset, manifest


@dataclass
class ExportResult:
    """What an export wrote; ``summary()`` is the sentence the CLI and the app show."""

    batch_number: int
    out_dir: Path
    files: list[ExportedFile] = field(default_factory=list)
    verdict: str = ""
    seconds: float = 0.0
    rows: int = 0

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    def path_of(self, kind: str) -> Path | None:
        for exported in self.files:
            if exported.kind == kind:
                return exported.path
        return None

    def summary(self) -> str:
        reports = [f.path.name for f in self.files if f.kind.startswith("report-")]
        verdict = f", acceptance {self.verdict}" if self.verdict else ""
        return (
            f"batch {self.batch_number}: {', '.join(reports) or 'no report'} and the dataset "
            f"({self.rows:,} rows) in {self.out_dir} ({self.seconds:.1f} s{verdict})"
        )


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"html,pdf"`` -> ("html", "pdf"); unknown names are an ExportError naming them."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = [p.strip().lower() for p in parts if p.strip()]
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown report format {', '.join(unknown)}; choose from html, md, pdf")
    return tuple(dict.fromkeys(chosen))


def default_out_dir(settings: Settings, batch_number: int) -> Path:
    return settings.data_dir / "exports" / f"batch_{batch_number:02d}"


def export_batch(
    settings: Settings,
    batch_number: int,
    out_dir: Path | str | None = None,
    formats: Iterable[str] | str = ("html",),
    progress: Progress | None = None,
    *,
    dataset: bool = True,
    store: TimeSeriesStore | None = None,
) -> ExportResult:
    """Export batch ``batch_number`` from the configured notebook and time-series store.

    ``store``: an already open store to read from (the running station's); None opens the
    configured one for reading and closes it afterwards. Raises ExportError (unknown batch,
    store or notebook unreachable, folder not writable) or ExportCancelled when ``progress``
    raised it.
    """
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.eln.services import NotebookService

    chosen = parse_formats(formats)
    target = Path(out_dir) if out_dir is not None else default_out_dir(settings, batch_number)
    try:
        notebook = NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise ExportError(f"notebook.url: {exc}") from None
    try:
        with reading_store(settings, store) as reading:
            return export_from(
                notebook,
                reading,
                batch_number,
                target,
                chosen,
                reactor=settings.station.reactors[0],
                model_version=_model_version(settings),
                progress=progress,
                dataset=dataset,
            )
    except (DatabaseUnavailable, TimeSeriesError) as exc:
        raise ExportError(str(exc)) from None
    finally:
        notebook.engine.dispose()


def export_job(
    settings: Settings,
    batch_number: int,
    formats: Iterable[str] | str = FORMATS,
    out_dir: Path | str | None = None,
    *,
    store: TimeSeriesStore | None = None,
) -> Callable[[Progress], ExportResult]:
    """The callable the app's ExportScreen runs: ``job(progress) -> ExportResult``."""

    def job(progress: Progress) -> ExportResult:
        return export_batch(settings, batch_number, out_dir, formats, progress, store=store)

    return job


@contextlib.contextmanager
def reading_store(settings: Settings, given: TimeSeriesStore | None) -> Iterator[TimeSeriesStore]:
    """``given`` as it is (its owner closes it), else the configured store opened for reading.

    An InfluxDB store gets a spool of its own in a temporary folder: the station's spool
    belongs to the station's flusher, and an export never writes.
    """
    from bptwin.tui.runtime.stores import build_store

    if given is not None:
        yield given
        return
    with contextlib.ExitStack() as stack:
        chosen = settings
        if settings.timeseries.backend != "embedded":
            private = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="bptwin-export-"))
            )
            chosen = settings.model_copy(
                update={"station": settings.station.model_copy(update={"data_dir": private})}
            )
        try:
            store = build_store(chosen)
        except Exception as exc:  # SettingsError naming the timeseries key
            raise ExportError(str(exc)) from None
        try:
            yield store
        finally:
            store.close()


def _model_version(settings: Settings) -> str | None:
    """The version of the model the station serves (from its card; LightGBM not loaded)."""
    from bptwin.twin.registry import CARD_FILE, ModelError, read_card, resolve_model_path

    try:
        path = resolve_model_path(settings.model.path, settings.data_dir)
        card = path / CARD_FILE if path.is_dir() else path
        if card.suffix != ".json":
            card = card.parent / CARD_FILE
        return read_card(card).version
    except (ModelError, OSError):
        return None


def export_from(
    notebook: NotebookService,
    store: TimeSeriesStore,
    batch_number: int,
    out_dir: Path,
    formats: Iterable[str] = ("html",),
    *,
    reactor: str = "R1",
    model_version: str | None = None,
    progress: Progress | None = None,
    dataset: bool = True,
    now: Callable[[], float] = time.time,
) -> ExportResult:
    """Export from already opened services (the CLI, the app, tests and benchmarks)."""
    from bptwin.eln.errors import NotebookError
    from bptwin.tui import __version__
    from bptwin.tui.export.collect import (
        BatchData,
        batch_interval,
        collect_notebook,
        collect_series,
        utc_now,
    )

    chosen = parse_formats(formats)
    started = time.monotonic()
    report = _Reporter(progress)
    out = Path(out_dir).expanduser()
    report.step("notebook", 0.0, f"reading batch {batch_number} from the notebook")
    try:
        records = collect_notebook(notebook, batch_number, reactor)
    except NotebookError as exc:
        raise ExportError(str(exc)) from None
    start, end = batch_interval(records.batch, store, records.reactor, now())
    series = collect_series(
        store,
        records.reactor,
        start,
        end,
        progress=lambda fraction, text: report.step("series", fraction, text),
    )
    data = BatchData(
        notebook=records,
        series=series,
        model_version=model_version,
        store_name=store.name,
        collected_at=utc_now(),
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = out / f".export-{batch_number}-{secrets.token_hex(4)}"
        staging.mkdir()
    except OSError as exc:
        raise ExportError(f"cannot write to {out}: {exc.strerror or exc}") from None
    try:
        written, verdict, sums = _write_all(
            data, staging, chosen, dataset, report, __version__, notebook
        )
        report.step("reports", 1.0, "moving the files into place")
        files = _move_into_place(staging, out, written, sums)
    except OSError as exc:
        raise ExportError(f"cannot write the export to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(
        batch_number=batch_number,
        out_dir=out,
        files=files,
        verdict=verdict,
        seconds=time.monotonic() - started,
        rows=len(series.readings),
    )
    report.done(result.summary())
    return result


class _Reporter:
    """Maps each step's own 0..1 onto its share of the bar; lets the caller cancel."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    def step(self, name: str, fraction: float, text: str) -> None:
        if self.progress is None:
            return
        lo, hi = _STEPS[name]
        self.progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), text)

    def done(self, text: str) -> None:
        """The files are in place: a late cancel or a failing progress sink changes nothing."""
        if self.progress is not None:
            with contextlib.suppress(Exception):
                self.progress(1.0, text)


@dataclass
class _Written:
    relative: Path
    kind: str


def _write_all(
    data: object,
    staging: Path,
    formats: tuple[str, ...],
    dataset: bool,
    report: _Reporter,
    software_version: str,
    notebook: NotebookService,
) -> tuple[list[_Written], str, dict[Path, tuple[int, str]]]:
    """Every file into ``staging``; returns them, the verdict and (size, sha256) per file."""
    from bptwin.tui.export.collect import BatchData
    from bptwin.tui.export.dataset_export import write_dataset_folder
    from bptwin.tui.export.plots import all_figures
    from bptwin.tui.export.report import build_report
    from bptwin.tui.export.verdict import acceptance_view

    assert isinstance(data, BatchData)
    number = data.notebook.batch.number
    stem = f"batch_{number:02d}"
    written: list[_Written] = []
    report.step("acceptance", 0.0, "evaluating the acceptance criteria")
    depletion_s = data.series.depletion_s
    acceptance = acceptance_view(
        notebook,
        number,
        data.series.dropout_pct,
        None if depletion_s is None else depletion_s / 3600.0,
    )
    if dataset:
        report.step("dataset", 0.0, "writing the dataset (Parquet)")
        for path in write_dataset_folder(staging / DATASET_DIR, data):
            written.append(_Written(path.relative_to(staging), "dataset"))
    report.step("plots", 0.0, "drawing the plots")
    figures = all_figures(data)
    model = build_report(data, figures, acceptance, software_version=software_version)
    report.step("reports", 0.0, "writing the report")
    if "html" in formats:
        from bptwin.tui.export.report_html import render_html

        path = staging / f"{stem}_report.html"
        path.write_text(render_html(model), encoding="utf-8")
        written.append(_Written(path.relative_to(staging), "report-html"))
    if "md" in formats:
        from bptwin.tui.export.report_md import render_markdown

        plot_dir = staging / f"{stem}_plots"
        plot_dir.mkdir()
        for image in figures:
            (plot_dir / f"{image.name}.png").write_bytes(image.png)
            written.append(_Written(Path(plot_dir.name) / f"{image.name}.png", "plot"))
        path = staging / f"{stem}_report.md"
        path.write_text(render_markdown(model, plot_dir.name), encoding="utf-8")
        written.append(_Written(path.relative_to(staging), "report-md"))
    if "pdf" in formats:
        report.step("reports", 0.4, "composing the PDF")
        from bptwin.tui.export.report_pdf import render_pdf

        path = staging / f"{stem}_report.pdf"
        path.write_bytes(render_pdf(model))
        written.append(_Written(path.relative_to(staging), "report-pdf"))
    audit_head = notebook.audit.head()
    sums = _write_manifest(staging, data, written, model.verdict, software_version, audit_head)
    written.append(_Written(Path(MANIFEST_NAME), "manifest"))
    return written, model.verdict, sums


def _write_manifest(
    staging: Path,
    data: object,
    written: list[_Written],
    verdict: str,
    software_version: str,
    audit_head: tuple[int, str] | None = None,
) -> dict[Path, tuple[int, str]]:
    from bptwin.tui.export.collect import BatchData
    from bptwin.twin.dataset import sha256_of

    assert isinstance(data, BatchData)
    batch = data.notebook.batch
    sums = {
        item.relative: (
            (staging / item.relative).stat().st_size,
            sha256_of(staging / item.relative),
        )
        for item in written
    }
    entries = [
        {
            "path": item.relative.as_posix(),
            "kind": item.kind,
            "bytes": sums[item.relative][0],
            "sha256": sums[item.relative][1],
        }
        for item in written
    ]
    manifest = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "created": data.collected_at.isoformat(),
        "software": f"bptwin {software_version}",
        "batch": batch.number,
        "phase": str(getattr(batch.phase, "value", batch.phase)),
        "reactor": data.notebook.reactor,
        "status": str(getattr(batch.status, "value", batch.status)),
        "start_timestamp": data.series.start,
        "end_timestamp": data.series.end,
        "model_version": data.model_version,
        "timeseries_store": data.store_name,
        "acceptance_verdict": verdict or None,
        # An anchor of the notebook's audit trail outside the database: a later chain that
        # does not hold this entry was cut or rewritten (docs/security.md).
        "audit_trail": None
        if audit_head is None
        else {"entries": audit_head[0], "head_hash": audit_head[1]},
        "files": entries,
    }
    path = staging / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    sums[Path(MANIFEST_NAME)] = (path.stat().st_size, sha256_of(path))
    return sums


def _move_into_place(
    staging: Path, out: Path, written: list[_Written], sums: dict[Path, tuple[int, str]]
) -> list[ExportedFile]:
    """Move every staged file over its destination (the manifest, written last, moves last)."""
    files = []
    for item in written:
        source, target = staging / item.relative, out / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        size, digest = sums[item.relative]
        files.append(ExportedFile(target, size, digest, item.kind))
    return files
