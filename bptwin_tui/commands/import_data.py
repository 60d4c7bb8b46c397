"""``bptwin import``: a lab's own exports and an import map (TOML) into a dataset folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

COMMAND = "import"  # the module cannot be called import.py: a Python keyword


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help="import a lab's exports (CSV/TXT/Parquet) into a dataset folder with an import map",
        description=(
            "Read a lab's sensor and sample exports as they are (encoding, delimiter, decimal "
            "comma, header and unit rows stated in the import map or detected; local times "
            "with a time zone; elapsed-time files), convert them to bptwin's channels, merge "
            "each batch's files on time and write a dataset folder (docs/dataset.md). Any cell "
            "that cannot be read stops the import with its file, line and column. Exit code 0 "
            "on success, 1 when the data cannot be imported, 2 for a bad import map or "
            "arguments."
        ),
    )
    parser.add_argument("map", type=Path, help="import map (TOML), see docs/dataset.md")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder")
    parser.add_argument(
        "--batch", type=int, action="append", metavar="N", help="only batch N (repeatable)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in DIR")
    parser.add_argument(
        "--verbose", action="store_true", help="also print what was detected in each file"
    )
    parser.set_defaults(func=run_import)


def run_import(args: argparse.Namespace, settings: Any = None) -> int:
    from bptwin.eln.text_safety import terminal_safe
    from bptwin.twin.dataset import DatasetError
    from bptwin.twin.lab_import import MapError, import_lab

    try:
        result = import_lab(args.map, args.out, batches=args.batch, overwrite=args.overwrite)
    except MapError as exc:
        print(terminal_safe(f"bptwin import: {exc}"), file=sys.stderr)
        return 2
    except (DatasetError, OSError) as exc:
        print(terminal_safe(f"bptwin import: {exc}\nnothing was written"), file=sys.stderr)
        return 1
    for item in result.batches:
        record = item.record
        if args.verbose:
            for note in item.findings.notes:
                print(terminal_safe(f"  {note}"))  # findings quote the lab's files
        for warning in item.findings.warnings:
            print(terminal_safe(f"bptwin import: warning: {warning}"), file=sys.stderr)
        print(
            f"batch {record.number}: {record.duration_s / 3600:.1f} h, "
            f"{len(record.channels)} channels, {len(record.sample_times_s)} samples"
        )
    print(
        f"wrote {len(result.batches)} batch(es) to {result.directory} in {result.seconds:.1f} s "
        f"({len(result.warnings)} warning(s))"
    )
    return 0
