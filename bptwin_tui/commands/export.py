"""``bptwin export``: one batch as a report (HTML, Markdown, PDF) and a Parquet dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.tui.settings import Settings

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a batch's report (HTML/Markdown/PDF) and its dataset (Parquet)",
        description=(
            "Read batch N from the notebook and its series from the configured time-series "
            "store and write the batch report and the dataset (docs/export.md). The HTML "
            "report is one self-contained file (plots embedded, no network); the dataset "
            "follows docs/dataset.md, with checksums in its manifest and in export.json."
        ),
    )
    parser.add_argument("--batch", type=int, required=True, metavar="N", help="batch number")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: <data_dir>/exports/batch_NN)",
    )
    parser.add_argument(
        "--format",
        default="html",
        metavar="LIST",
        help="report formats, comma-separated: html, md, pdf (default: html)",
    )
    parser.add_argument("--no-dataset", action="store_true", help="only the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.tui.export import ExportError, export_batch, parse_formats

    try:
        formats = parse_formats(args.format)
    except ExportError as exc:
        print(f"bptwin export: {exc}", file=sys.stderr)
        return 2
    if not formats and args.no_dataset:
        print("bptwin export: nothing to write (no format and --no-dataset)", file=sys.stderr)
        return 2
    if args.batch < 1:
        print(
            f"bptwin export: --batch must be a positive number, got {args.batch}", file=sys.stderr
        )
        return 2
    with _ProgressBar(enabled=not args.quiet) as bar:
        try:
            result = export_batch(
                settings,
                args.batch,
                args.out,
                formats,
                progress=bar.update,
                dataset=not args.no_dataset,
            )
        except ExportError as exc:
            bar.stop()
            print(f"bptwin export: {exc}", file=sys.stderr)
            return 1
    print(f"exported {result.summary()}")
    for exported in result.files:
        if exported.kind != "plot":
            print(f"  {exported.path}")
    return 0


class _ProgressBar:
    """A rich progress bar on stderr (nothing when disabled or stderr is not a terminal)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]export"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f} %"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=1.0)
        return self

    def update(self, fraction: float, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=fraction, description=text[:60])

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
