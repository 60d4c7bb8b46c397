"""``bptwin audit verify``: check the notebook's hash-chained audit trail and its electronic
signatures."""

from __future__ import annotations

import argparse

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
        help="recompute the hash chain; name the first broken link",
        description="Recompute the chain from the first entry, then check every electronic "
        "signature: the signed record still hashes to the signed content, the signer existed "
        "with the role the signature needs, and the signature row is the one the audit trail "
        "recorded. Exit 0 when all holds, 1 when an entry was altered, removed or inserted (the "
        "first such entry is named) or a signature does not hold (each is named).",
    )
    verify.set_defaults(func=handle_verify)


def handle_verify(args: argparse.Namespace, settings: Settings) -> int:
    from bptwin.database.relational import DatabaseUnavailable
    from bptwin.eln.services import NotebookService

    try:
        notebook = NotebookService.from_url(settings.notebook_url())
        broken = notebook.audit.verify_audit_chain()
        newest = notebook.audit.audit_trail(limit=1)
        signatures = notebook.signatures.list_signatures()
        problems = notebook.signatures.verify_signatures()
    except DatabaseUnavailable as exc:
        raise SettingsError(f"notebook.url: {exc}") from None
    if broken is not None:
        entry_id, reason = broken
        print(f"audit chain BROKEN at entry {entry_id}: {reason}")
    else:
        # Entry ids run without gaps from 1, so the newest id is the number of entries checked.
        count = newest[0].id if newest else 0
        print(f"audit chain OK: {count} entries verified")
    for problem in problems:
        print(f"signature BROKEN: {problem}")
    if not problems:
        print(f"signatures OK: {len(signatures)} verified")
    return 1 if broken is not None or problems else 0
