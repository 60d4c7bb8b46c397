"""``bptwin audit verify``: the audit trail's chain, seals and anchor, every audited row, and
the electronic signatures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bptwin.tui.settings import Settings, SettingsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="check the audit trail of the lab notebook",
        description="Audit-trail tools. Every notebook change is an entry holding the hash of "
        "the previous one, so an altered or removed entry breaks the chain.",
    )
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the chain, its key and anchor, every audited row and every signature",
        description="Recompute the chain from the first entry and check each entry's seal "
        "with the station's audit key (notebook.audit_key_file) and the anchor of the newest "
        "entry this station wrote (notebook.audit_anchor_file); then compare every row of "
        "every audited table with its last audit entry. Exit 0 when all holds, 1 naming each "
        "problem: the first broken entry, a truncated or rewritten chain, and every row "
        "changed, deleted or inserted outside the notebook (table, row id, columns). Every "
        "electronic signature is checked too: the signed record still hashes to the signed "
        "content, the signer existed with the role the signature needs, and the signature row "
        "is the one the audit trail recorded.",
    )
    verify.add_argument(
        "--manifest",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an export manifest (export.json); the audit entry it names must still be in the "
        "chain with the same hash (repeatable)",
    )
    verify.set_defaults(func=handle_verify)


def handle_verify(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService
    from bptwin.eln.text_safety import terminal_safe

    anchors = {str(path): _manifest_anchor(path) for path in getattr(args, "manifest", [])}
    try:
        notebook = NotebookService.from_url(settings.notebook_url())
        report = notebook.audit.verify_trail(settings.audit_seal(), anchors)
        signatures = notebook.signatures.list_signatures()
        signature_problems = notebook.signatures.verify_signatures()
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    for problem in report.problems():
        print(terminal_safe(problem))
    for problem in signature_problems:
        print(terminal_safe(f"signature BROKEN: {problem}"))
    if not report.ok or signature_problems:
        count = len(report.problems()) + len(signature_problems)
        print(f"audit trail NOT OK: {count} problem(s)")
        return 1
    print(f"audit chain OK: {report.entries} entries verified")
    print(
        f"  seals: {report.sealed} checked with the audit key"
        + (f", {report.unsealed} written without it" if report.unsealed else "")
    )
    if report.anchor is not None:
        print(f"  anchor: entry {report.anchor[0]} is the one this station wrote")
    else:
        print("  anchor: none yet (this station has not written to the notebook)")
    print(f"  rows: every audited table matches its audit trail (head {report.head_hash[:16]})")
    print(f"signatures OK: {len(signatures)} verified")
    return 0


def _manifest_anchor(path: Path) -> tuple[int, str]:
    """The (entries, head hash) an export manifest recorded of the audit trail."""
    try:
        trail = json.loads(path.read_text(encoding="utf-8"))["audit_trail"]
        return int(trail["entries"]), str(trail["head_hash"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"--manifest {path}: no audit_trail anchor in it ({exc})") from None
