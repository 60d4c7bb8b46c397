"""``bptwin simulate``: write the simulated 18-batch campaign (or one batch) as a dataset."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bptwin.twin.dataset import BatchRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate the 18-batch campaign (or one batch) into a dataset folder",
        description=(
            "Simulate the 18-batch campaign of docs/process.md (A: 1-3 shake-down, B: 4-15 planned "
            "variation, C: 16-18 hold-out) with the mechanistic reactor model and write "
            "one Parquet file per batch plus manifest.json (format: docs/dataset.md)."
        ),
    )
    parser.add_argument("--campaign", action="store_true", help="all 18 batches")
    parser.add_argument(
        "--batch",
        type=int,
        action="append",
        metavar="N",
        help="only batch N (1-18); may be repeated",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="campaign seed (default 0)"
    )
    parser.add_argument(
        "--faults", action="store_true", help="switch on sensor faults and foam/antifoam events"
    )
    parser.add_argument(
        "--hours",
        type=float,
        metavar="H",
        help="stop every batch after H hours (quick looks); default: 1.5 h after depletion",
    )
    parser.add_argument(
        "--profile",
        default="home",
        metavar="NAME",
        help="reactor/strain profile: home (default, the training campaign's reactor), lab-b "
        "(another lab's reactor, probe and strain), lab-c (the home reactor with another OD "
        "probe); docs/simulator.md",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace, settings: Any = None) -> int:
    # Imported here, not at the top: the dataset module pulls in pandas, and every command's
    # parser is built at start-up (a browser session's process included).
    from bptwin.twin.campaign import CAMPAIGN_SIZE, generate_campaign
    from bptwin.twin.dataset import DatasetError
    from bptwin.twin.sim_profiles import PROFILES

    if not args.campaign and not args.batch:
        print("bptwin simulate: give --campaign or --batch N", file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"bptwin simulate: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    numbers = None if args.campaign else list(args.batch)
    bad = [n for n in numbers or [] if not 1 <= n <= CAMPAIGN_SIZE]
    if bad:
        print(f"bptwin simulate: --batch must be 1-{CAMPAIGN_SIZE}, got {bad}", file=sys.stderr)
        return 2
    if args.hours is not None and not 0 < args.hours <= 48:
        print(f"bptwin simulate: --hours must be in (0, 48], got {args.hours}", file=sys.stderr)
        return 2
    if args.profile not in PROFILES:
        known = ", ".join(PROFILES)
        print(
            f"bptwin simulate: unknown --profile {args.profile!r}; known: {known}", file=sys.stderr
        )
        return 2
    started = time.monotonic()

    def progress(done: int, total: int, record: BatchRecord) -> None:
        if args.quiet:
            return
        depletion = (
            f"{record.depletion_time_s / 3600:5.1f} h" if record.depletion_time_s else "  none"
        )
        print(
            f"\rbatch {record.number:2d} ({record.phase}, {record.variation[:30]:30s}) "
            f"depletion {depletion}  [{done}/{total}, {time.monotonic() - started:5.1f} s]",
            end="" if done < total else "\n",
            file=sys.stderr,
            flush=True,
        )

    try:
        dataset = generate_campaign(
            args.out,
            args.seed,
            faults=args.faults,
            batches=numbers,
            hours=args.hours,
            progress=progress,
            profile=args.profile,
        )
    except (DatasetError, ValueError, OSError) as exc:
        print(f"\nbptwin simulate: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(dataset.batches)} batches to {args.out}")
    return 0
