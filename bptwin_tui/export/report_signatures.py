"""The report's "Signatures" section: each electronic signature's manifestation (§11.50).

Kept apart from report.py's other sections: printed name, role, meaning, date and time in UTC
and at the station (with its UTC offset), what was signed (record and the start of its content
hash), and whether the signature is in force or superseded by a later one (with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bptwin.tui.export.report import Paragraph, Section, Table

if TYPE_CHECKING:
    from bptwin.eln.models import Signature

RECORD_LABELS = {
    "batch_closure": "Batch closure",
    "deviation": "Deviation",
    "calibration_record": "Calibration",
    "process_change": "Process change",
    "batch_acceptance": "Acceptance decision",
}
HASH_SHOWN = 16  # hex digits of the content hash printed (the full one is in the CSV export)


def signed_record(signature: Signature) -> str:
    label = RECORD_LABELS.get(signature.table_name, signature.table_name)
    return f"{label} #{signature.record_id}"


def signature_status(signature: Signature, by_id: dict[int, Signature]) -> str:
    if signature.superseded_at is None:
        return "in force"
    later = by_id.get(signature.superseded_by or -1)
    text = f"superseded {signature.superseded_at:%Y-%m-%d %H:%M} UTC"
    if later is not None:
        text += f" by #{later.id} ({later.reason or 'no reason given'})"
    return text


def signatures_section(signatures: Sequence[Signature]) -> Section:
    """One row per signature, oldest first; superseded signatures stay listed."""
    from bptwin.eln.signatures import local_time

    by_id = {int(signature.id or 0): signature for signature in signatures}
    rows = tuple(
        (
            f"#{signature.id}",
            signed_record(signature),
            signature.meaning.value,
            f"{signature.printed_name} ({signature.signer}, {signature.signer_role.value})",
            f"{signature.signed_at:%Y-%m-%d %H:%M:%S} UTC",
            f"{local_time(signature):%Y-%m-%d %H:%M:%S %z}"
            + (f" {signature.time_zone}" if signature.time_zone else ""),
            signature.content_hash[:HASH_SHOWN],
            signature_status(signature, by_id),
        )
        for signature in signatures
    )
    blocks: list = [
        Paragraph(
            "Electronic signatures, each given with the signer's name and PIN at the moment of "
            "signing and bound to the SHA-256 of the record's content; a signed record changes "
            "only under a new signature, the old one is kept as superseded. "
            "'bptwin audit verify' checks them."
        ),
        Table(
            (
                "id",
                "record",
                "meaning",
                "printed name",
                "signed (UTC)",
                "signed (local)",
                "content SHA-256",
                "status",
            ),
            rows,
            caption="Signatures",
            empty="no signatures recorded",
        ),
    ]
    if (
        signatures
        and not any(s.table_name == "batch_closure" and s.superseded_at is None for s in signatures)
    ) or not signatures:
        blocks.append(Paragraph("the batch closure is not signed yet", "warn"))
    return Section("signatures", "Signatures", blocks)
