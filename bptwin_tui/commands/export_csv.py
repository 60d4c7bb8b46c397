"""``bptwin export-csv``: channel ranges from the time-series store and notebook tables as CSV.

    bptwin export-csv channels [--reactor R] [--channels do,ph|all]
                               (--batch N | --start T --end T) [--layout long|wide] [--out FILE]
    bptwin export-csv notebook [--batch N] [--table NAME] [--out FILE|DIR]

See docs/csv-and-grafana.md for the columns. Without ``--out`` a single CSV goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bptwin.tui.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bptwin.eln.services import NotebookService


def register(subparsers: argparse._SubParsersAction) -> None:
    from bptwin.tui.export.csv_export import LAYOUTS, TABLES

    parser = subparsers.add_parser(
        "export-csv",
        help="export channel ranges or notebook tables as CSV",
        description="CSV export for spreadsheets and other tools (docs/csv-and-grafana.md).",
    )
    kinds = parser.add_subparsers(dest="csv_kind", metavar="WHAT", required=True)
    channels = kinds.add_parser(
        "channels",
        help="readings of some channels over a time range",
        description="Readings from the time-series store, half-open range [start, end).",
    )
    channels.add_argument("--reactor", help="reactor (default: the batch's, else the first)")
    channels.add_argument(
        "--channels",
        default="all",
        help="comma-separated channel names, or 'all' (every series of the reactor; default)",
    )
    channels.add_argument("--batch", type=int, metavar="N", help="the batch's run as the range")
    channels.add_argument("--start", help="ISO 8601 (UTC if no zone) or Unix seconds")
    channels.add_argument("--end", help="ISO 8601 (UTC if no zone) or Unix seconds")
    channels.add_argument("--layout", choices=LAYOUTS, default="long", help="default long")
    channels.add_argument("--out", type=Path, metavar="FILE", help="default: stdout")
    channels.set_defaults(func=handle_channels)

    notebook = kinds.add_parser(
        "notebook",
        help="notebook tables (batches, samples, calibrations, deviations, alarms, notes...)",
        description=(
            "One table to FILE (or stdout) with --table, else every table as DIR/<table>.csv."
        ),
    )
    notebook.add_argument("--batch", type=int, metavar="N", help="only this batch's rows")
    notebook.add_argument(
        "--table", choices=TABLES, help="one table (default: all, into --out DIR)"
    )
    notebook.add_argument("--out", type=Path, metavar="PATH", help="FILE with --table, else DIR")
    notebook.set_defaults(func=handle_notebook)


def _say(message: str) -> None:
    from bptwin.eln.text_safety import terminal_safe

    # Messages may quote channel names or notebook text: never raw escapes on the terminal.
    print(terminal_safe(f"bptwin export-csv: {message}"), file=sys.stderr, flush=True)


def _notebook(settings: Settings) -> NotebookService:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService

    try:
        return NotebookService.from_url(settings.notebook_url())
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None


def _range(args: argparse.Namespace, settings: Settings) -> tuple[float, float, str | None]:
    """(start, end, the batch's reactor or None) from --batch or --start/--end."""
    from bptwin.tui.export.csv_export import parse_time

    if args.batch is not None:
        if args.start or args.end:
            raise ValueError("give either --batch or --start/--end, not both")
        notebook = _notebook(settings)
        try:
            batch = notebook.batches.get_batch(args.batch)
        finally:
            notebook.engine.dispose()
        if batch.inoculated_at is None:
            raise ValueError(f"batch {batch.number} was never inoculated: it has no run")
        end = batch.ended_at.timestamp() + 1.0 if batch.ended_at else None
        if end is None:
            import time

            end = time.time()
        return batch.inoculated_at.timestamp(), end, batch.reactor_id or None
    if not (args.start and args.end):
        raise ValueError("give --batch N, or both --start and --end")
    return parse_time(args.start), parse_time(args.end), None


def handle_channels(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.timeseries.base import TimeSeriesError
    from bptwin.eln.errors import NotebookError
    from bptwin.tui.export.csv_export import CsvExportError, stored_channels, write_channels_csv
    from bptwin.tui.runtime.stores import build_store

    try:
        start, end, batch_reactor = _range(args, settings)
    except (ValueError, NotebookError) as exc:
        _say(str(exc))
        return 2
    reactor = args.reactor or batch_reactor or settings.station.reactors[0]
    store = build_store(settings)
    try:
        available = stored_channels(store, reactor)
        if args.channels.strip().lower() == "all":
            channels = available
        else:
            channels = [c.strip() for c in args.channels.split(",") if c.strip()]
            unknown = [c for c in channels if c not in available]
            if unknown:
                _say(
                    f"reactor {reactor!r} has no series {', '.join(unknown)} in the store "
                    f"(it has: {', '.join(available) or 'none'})"
                )
                return 2
        with ExitStack() as stack:
            out: IO[str] = sys.stdout
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline=""))
            rows = write_channels_csv(out, store, reactor, channels, start, end, layout=args.layout)
    except CsvExportError as exc:
        _say(str(exc))
        return 2
    except (TimeSeriesError, OSError) as exc:
        _say(str(exc))
        return 1
    finally:
        store.close()
    if args.out is not None:
        _say(f"{rows} rows of {len(channels)} series written to {args.out}")
    return 0


def handle_notebook(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.eln.errors import NotebookError
    from bptwin.tui.export.csv_export import CsvExportError, write_table_csv, write_tables

    if args.table is None and args.out is None:
        _say("give --table NAME (one CSV, stdout allowed) or --out DIR (every table)")
        return 2
    notebook = _notebook(settings)
    try:
        if args.table is None:
            counts = write_tables(args.out, notebook, batch=args.batch)
            for table, count in counts.items():
                print(f"{args.out / (table + '.csv')}: {count} rows")
            return 0
        with ExitStack() as stack:
            out: IO[str] = sys.stdout
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline=""))
            count = write_table_csv(out, notebook, args.table, batch=args.batch)
        if args.out is not None:
            _say(f"{count} rows of {args.table} written to {args.out}")
        return 0
    except (CsvExportError, NotebookError) as exc:
        _say(str(exc))
        return 2
    except OSError as exc:
        _say(str(exc))
        return 1
    finally:
        notebook.engine.dispose()
