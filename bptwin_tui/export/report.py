"""The batch report as a document model: sections of key/value lists, tables and figures.

``build_report`` turns the collected batch into a :class:`Report`; the HTML, Markdown and PDF
writers (report_html, report_md, report_pdf) render that same model, so the three formats
always say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.eln.sample_math import residual_percent
from bptwin.twin.display import human_fields, human_number

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bptwin.eln.models import CalibrationRecord, Sample
    from bptwin.tui.export.collect import BatchData
    from bptwin.tui.export.plots import PlotImage
    from bptwin.tui.export.verdict import AcceptanceView

MAX_AUDIT_CHANGES = 80
MAX_ALARM_ROWS = 200
PASS, FAIL, OPEN = "PASS", "FAIL", "OPEN"
# One sign convention for the model residual, as the sample screen shows it (eln.sample_math).
RESIDUAL_HEADER = "residual (measured − predicted) / measured"
# A stored prediction this close to a sample (its 30 s window, with slack) is compared with it.
PREDICTION_MATCH_S = 120.0


@dataclass(frozen=True)
class Paragraph:
    text: str
    tone: str = ""  # "", "good", "bad", "warn": how the renderers colour it


@dataclass(frozen=True)
class KeyValues:
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    empty: str = "none recorded"


@dataclass(frozen=True)
class Figure:
    image: PlotImage


Block = Paragraph | KeyValues | Table | Figure


@dataclass
class Section:
    key: str  # anchor / file-safe name
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    verdict: str  # the acceptance verdict shown at the top ("pass", "fail", "incomplete", "")

    def section(self, key: str) -> Section:
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(key)

    def figures(self) -> list[PlotImage]:
        return [b.image for s in self.sections for b in s.blocks if isinstance(b, Figure)]


# -- formatting -----------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def num(value: float | None, digits: int = 3) -> str:
    """A number for people (3 470, 0.0123, 6.8), "—" for none."""
    return human_number(value, digits)


def percent(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:+.1f} %"


def hours_since(moment: datetime | None, start: float) -> str:
    if moment is None:
        return "—"
    return f"{(moment.timestamp() - start) / 3600.0:.2f}"


def duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min ({seconds / 3600.0:.2f} h)"


def mark(passed: bool | None) -> str:
    return OPEN if passed is None else (PASS if passed else FAIL)


def _plain(value: object) -> str:
    return str(getattr(value, "value", value))


def _compact(values: dict[str, object]) -> str:
    """A record's fields in words with units ("slope 98.7 %, drift —"), never a repr."""
    return human_fields(values)


# -- sections -------------------------------------------------------------------------------


def build_report(
    data: BatchData,
    figures: list[PlotImage],
    acceptance: AcceptanceView,
    *,
    software_version: str,
) -> Report:
    """The whole report of one batch."""
    from bptwin.tui.export.report_signatures import signatures_section

    by_name = {image.name: image for image in figures}
    sections = [
        _header(data, software_version),
        _calibrations(data),
        _inoculum(data),
        _samples(data),
        Section(
            "trends",
            "Trends of every channel",
            [Figure(image) for image in figures if image.name.startswith("trend_")]
            or [Paragraph("no sensor readings stored for this batch", "warn")],
        ),
        _od600(data, by_name.get("od600")),
        _offgas(data, by_name.get("offgas_rates")),
        _alarms(data),
        _deviations(data),
        _changes_and_notes(data),
        _closure(data),
        _acceptance(acceptance),
        # The printed manifestations of every signature, the acceptance decision's included.
        signatures_section(data.notebook.signatures),
        _audit(data),
        _completeness(data),
    ]
    batch = data.notebook.batch
    verdict = acceptance.evaluation.verdict if acceptance.evaluation is not None else ""
    return Report(
        title=f"Batch {batch.number} report",
        subtitle=(
            f"phase {_plain(batch.phase)} · {batch.strain or 'strain not recorded'} · "
            f"reactor {data.notebook.reactor} · exported {when(data.collected_at)}"
        ),
        sections=sections,
        verdict=verdict,
    )


def _header(data: BatchData, software_version: str) -> Section:
    batch = data.notebook.batch
    series = data.series
    rows = (
        ("Batch", str(batch.number)),
        ("Campaign phase", _plain(batch.phase)),
        ("Strain", batch.strain or "—"),
        ("Medium lot", batch.medium_lot or "—"),
        ("Vessel", batch.vessel or "—"),
        ("Reactor", data.notebook.reactor),
        ("Operator", batch.operator),
        ("Status", _plain(batch.status)),
        ("Created", when(batch.created_at)),
        ("Inoculated", when(batch.inoculated_at)),
        ("Ended", when(batch.ended_at) if batch.ended_at else "still running (exported so far)"),
        ("Duration", duration(series.duration_s)),
        ("Glycerol depletion", depletion_text(data)),
        ("Model version", data.model_version or "no model in service"),
        ("Time-series store", data.store_name),
        ("Readings exported", f"{series.point_count:,} points"),
        ("Exported", f"{when(data.collected_at)} by bptwin {software_version}"),
    )
    blocks: list[Block] = [KeyValues(rows)]
    if batch.notes:
        blocks.append(Paragraph(f"Batch notes: {batch.notes}"))
    blocks.append(
        Paragraph(
            "Model version: the model in service when the report was made; predictions in "
            "the store do not carry their version."
        )
    )
    return Section("header", "Batch", blocks)


def _calibrations(data: BatchData) -> Section:
    rows = tuple(
        (
            record.channel,
            record.kind,
            when(record.performed_at),
            record.performed_by,
            _compact(record.results),
            mark(record.passed) + (" (override)" if record.override_reason else ""),
            record.override_reason or "",
            when(record.valid_until) if record.valid_until else "—",
        )
        for record in data.notebook.calibrations
    )
    failed = unresolved_failures(data.notebook.calibrations, data.notebook.batch.inoculated_at)
    blocks: list[Block] = [
        Table(
            (
                "channel",
                "kind",
                "performed",
                "by",
                "results",
                "result",
                "override reason",
                "valid until",
            ),
            rows,
        )
    ]
    if failed:
        channels = ", ".join(sorted({r.channel for r in failed}))
        blocks.append(Paragraph(f"Failed calibrations without override: {channels}", "bad"))
    return Section("calibrations", "Calibrations", blocks)


def unresolved_failures(
    calibrations: Sequence[CalibrationRecord], inoculated_at: datetime | None
) -> list[CalibrationRecord]:
    """Failed calibrations without an override that no passing calibration of the same probe
    and kind replaced before the inoculation (a failed first try, then a pass, is in order)."""
    failed = []
    for record in calibrations:
        if record.passed or record.override_reason:
            continue
        superseded = any(
            other.passed
            and other.channel == record.channel
            and other.kind == record.kind
            and other.performed_at > record.performed_at
            and (inoculated_at is None or other.performed_at <= inoculated_at)
            for other in calibrations
        )
        if not superseded:
            failed.append(record)
    return failed


def _inoculum(data: BatchData) -> Section:
    inoculum = data.notebook.inoculum
    blocks: list[Block] = []
    if inoculum is None:
        blocks.append(Paragraph("no inoculum recorded", "warn"))
    else:
        blocks.append(
            KeyValues(
                (
                    ("Recorded", f"{when(inoculum.recorded_at)} by {inoculum.recorded_by}"),
                    (
                        "OD600 reading × dilution",
                        f"{num(inoculum.od600_raw)} × {num(inoculum.dilution)}",
                    ),
                    ("OD600", num(inoculum.od600)),
                    ("Volume", f"{num(inoculum.volume_ml)} mL"),
                    ("Microscopy", "clean" if inoculum.microscopy_clean else "NOT clean"),
                    ("Go / no-go", "go" if inoculum.go else "NO-GO"),
                    ("Notes", inoculum.notes or "—"),
                )
            )
        )
    media_rows = tuple(
        (
            when(m.prepared_at),
            m.prepared_by,
            _compact(m.recipe),
            m.autoclave_cycle or "—",
            mark(m.sterility_ok) if m.sterility_ok is not None else "not checked",
        )
        for m in data.notebook.media
    )
    blocks.append(
        Table(
            ("prepared", "by", "recipe", "autoclave cycle", "sterility"),
            media_rows,
            caption="Media preparation",
        )
    )
    return Section("inoculum", "Inoculum and medium", blocks)


def _samples(data: BatchData) -> Section:
    from bptwin.tui.export.dataset_export import depletion_moment, sample_kinds

    start = data.series.start
    rows = []
    kinds = sample_kinds(
        data.notebook.samples, data.notebook.batch.inoculated_at, depletion_moment(data)
    )
    for sample, kind in zip(data.notebook.samples, kinds, strict=True):
        residual = percent(residual_percent(sample.od600, sample.predicted_od600))
        if sample.microscopy_clean is None:
            microscopy = sample.microscopy_text or "—"
        else:
            microscopy = "clean" if sample.microscopy_clean else "NOT clean"
            if sample.microscopy_text:
                microscopy += f": {sample.microscopy_text}"
        rows.append(
            (
                num(sample.sop_timepoint_h) if sample.sop_timepoint_h is not None else kind,
                when(sample.taken_at),
                hours_since(sample.taken_at, start),
                num(sample.od600, 4),
                num(sample.dcw_g_per_l, 4),
                num(sample.glycerol_g_per_l, 3),
                microscopy,
                num(sample.predicted_od600, 4),
                residual,
                sample.entered_by,
            )
        )
    return Section(
        "samples",
        "Offline samples",
        [
            Table(
                (
                    "SOP h",
                    "taken",
                    "h",
                    "OD600",
                    "DCW g/L",
                    "glycerol g/L",
                    "microscopy",
                    "predicted OD600 at entry",
                    RESIDUAL_HEADER,
                    "entered by",
                ),
                tuple(rows),
                caption=(
                    f"{len(rows)} samples{_dry_only_note(data.notebook.samples)}; the prediction "
                    "is the one the station made for this batch when the sample was entered"
                ),
            )
        ],
    )


def _dry_only_note(samples: Sequence[Sample]) -> str:
    """ " (2 with a dry weight and no OD600)", or "" when every sample has an OD600."""
    dry_only = sum(1 for s in samples if s.od600 is None)
    return f" ({dry_only} with a dry weight and no OD600)" if dry_only else ""


def _od600(data: BatchData, image: PlotImage | None) -> Section:
    """Each sample against this batch's own predictions: those the station stored for the
    batch's reactor inside the batch's span (inoculation to end), nearest to the sample."""
    blocks: list[Block] = [Figure(image)] if image is not None else []
    predictions = data.series.predictions
    if len(predictions):
        inside_batch = (predictions["timestamp"] >= data.series.start) & (
            predictions["timestamp"] <= data.series.end + PREDICTION_MATCH_S
        )
        predictions = predictions[inside_batch]
    # A dry-weight-only sample has no OD600 to set against the prediction: said, not compared.
    samples = [s for s in data.notebook.samples if s.od600 is not None]
    if len(samples) < len(data.notebook.samples):
        skipped = len(data.notebook.samples) - len(samples)
        blocks.append(
            Paragraph(
                f"{skipped} sample(s) with a dry weight and no OD600 are not compared with "
                "the OD600 prediction"
            )
        )
    if len(predictions) and samples:
        stamps = predictions["timestamp"].to_numpy(dtype=float)
        values = predictions["od600_pred"].to_numpy(dtype=float)
        lower = predictions["od600_pred_lower"].to_numpy(dtype=float)
        upper = predictions["od600_pred_upper"].to_numpy(dtype=float)
        rows, residuals = [], []
        for sample in samples:
            measured = sample.od600
            assert measured is not None  # kept above
            at = sample.taken_at.timestamp()
            index = int(np.searchsorted(stamps, at))
            candidates = [i for i in (index - 1, index) if 0 <= i < len(stamps)]
            if not candidates:
                continue
            nearest = min(candidates, key=lambda i: abs(stamps[i] - at))
            if abs(stamps[nearest] - at) > PREDICTION_MATCH_S or not math.isfinite(values[nearest]):
                continue
            residual = residual_percent(measured, float(values[nearest]))
            if residual is not None:
                residuals.append(abs(residual))
            inside = lower[nearest] <= measured <= upper[nearest]
            rows.append(
                (
                    hours_since(sample.taken_at, data.series.start),
                    num(measured, 4),
                    num(values[nearest], 4),
                    f"{num(lower[nearest], 4)}–{num(upper[nearest], 4)}",
                    percent(residual),
                    "yes" if inside else "no",
                )
            )
        blocks.append(
            Table(
                ("h", "measured OD600", "predicted", "band", RESIDUAL_HEADER, "inside band"),
                tuple(rows),
                caption=(
                    "Each sample against the prediction stored for this batch's window "
                    "(reactor and time of the batch)"
                ),
                empty="no prediction within 2 min of a sample",
            )
        )
        if residuals:
            blocks.append(
                Paragraph(
                    f"Mean absolute residual of the prediction at the samples: "
                    f"{float(np.mean(residuals)):.1f} % over {len(residuals)} samples"
                )
            )
    elif not len(predictions):
        blocks.append(Paragraph("no predictions stored for this batch (no model running?)", "warn"))
    blocks.append(_depletion_paragraph(data))
    forecast = predictions["depletion_forecast"].to_numpy(dtype=float) if len(predictions) else []
    finite = [v for v in forecast if math.isfinite(v)]
    if finite:
        at = (finite[-1] - data.series.start) / 3600.0
        blocks.append(Paragraph(f"Last depletion forecast: {at:.2f} h after inoculation"))
    return Section("od600", "Measured vs predicted OD600", blocks)


def depletion_text(data: BatchData) -> str:
    """Where the batch's glycerol ran out, from its own data (and the closure's entry)."""
    found = data.series.depletion_s
    closure = data.notebook.closure
    recorded = None if closure is None else closure.depletion_time_h
    if found is not None:
        at = data.series.start + found
        text = f"at {found / 3600.0:.2f} h ({when(_utc(at))}), found in the DO spike"
        if recorded is not None:
            text += f"; closure record says {recorded:.2f} h"
        return text
    if recorded is not None:
        return f"not found in the data; closure record says {recorded:.2f} h"
    return "not found in the data (no confirmed DO spike)"


def _depletion_paragraph(data: BatchData) -> Paragraph:
    tone = "" if data.series.depletion_s is not None else "warn"
    return Paragraph(f"Glycerol depletion: {depletion_text(data)}", tone)


def _utc(timestamp: float) -> datetime:
    from datetime import timezone

    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _offgas(data: BatchData, image: PlotImage | None) -> Section:
    blocks: list[Block] = [Figure(image)] if image is not None else []
    windows = data.series.windows
    rows = []
    for name, label in (
        ("our", "OUR"),
        ("cer", "CER"),
        ("rq", "RQ"),
        ("mu", "μ"),
        ("kla", "kLa"),
        ("cum_co2", "cumulative CO₂"),
        ("cum_o2", "cumulative O₂"),
    ):
        if name not in windows.columns:
            continue
        values = windows[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if not len(finite):
            continue
        unit = data.series.units.get(name, "")
        rows.append(
            (
                label,
                num(float(np.max(finite))),
                num(float(np.median(finite))),
                num(float(finite[-1])),
                unit,
            )
        )
    blocks.append(
        Table(
            ("series", "max", "median", "last", "unit"),
            tuple(rows),
            empty="no derived series stored",
        )
    )
    return Section("offgas", "CER, OUR and RQ", blocks)


@dataclass
class _Incident:
    """One alarm from its raise until it is back to normal and acknowledged."""

    raised_at: datetime
    rule: str
    channel: str
    priority: str
    acknowledged: str = "not acknowledged"
    shelved: str = "—"
    normal_at: datetime | None = None


_ANNUNCIATED = ("active_unacknowledged", "active_acknowledged", "returned_unacknowledged")


def alarm_incidents(events: list) -> list[_Incident]:
    """Pair the life-cycle transitions of each (rule, channel) into incidents."""
    open_incidents: dict[tuple[str, str], _Incident] = {}
    incidents: list[_Incident] = []
    for event in events:
        key = (event.rule, event.channel or "")
        incident = open_incidents.get(key)
        if incident is None:
            if event.state not in _ANNUNCIATED:
                continue  # e.g. shelved before it ever rose
            incident = _Incident(
                event.occurred_at, event.rule, event.channel or "—", event.priority
            )
            open_incidents[key] = incident
            incidents.append(incident)
        minutes = (event.occurred_at - incident.raised_at).total_seconds() / 60.0
        # Acknowledging an alarm that already returned takes it straight to normal.
        acknowledging = event.state == "active_acknowledged" or (
            event.state == "normal" and event.actor is not None
        )
        if acknowledging and incident.acknowledged == "not acknowledged":
            incident.acknowledged = f"{event.actor or 'system'} after {minutes:.0f} min"
        elif event.state == "shelved":
            incident.shelved = f"{event.actor or 'system'} after {minutes:.0f} min"
        elif event.state == "returned_unacknowledged":
            incident.normal_at = event.occurred_at
        if event.state in ("normal", "out_of_service"):
            incident.normal_at = incident.normal_at or event.occurred_at
            del open_incidents[key]
    return incidents


def _alarms(data: BatchData) -> Section:
    events = data.notebook.alarm_events
    incidents = alarm_incidents(events)
    ended = data.notebook.batch.ended_at is not None
    still_active = "still active at the batch's end" if ended else "still active at export"
    summary = tuple(
        (
            when(i.raised_at),
            hours_since(i.raised_at, data.series.start),
            i.rule,
            i.channel,
            i.priority,
            i.acknowledged,
            i.shelved,
            when(i.normal_at) if i.normal_at else still_active,
        )
        for i in incidents
    )
    start = data.series.start
    rows = tuple(
        (
            when(event.occurred_at),
            hours_since(event.occurred_at, start),
            event.rule,
            event.priority,
            event.state.replace("_", " "),
            event.channel or "—",
            num(event.value),
            event.actor or "system",
            event.message,
        )
        for event in events[:MAX_ALARM_ROWS]
    )
    unacknowledged = sum(1 for i in incidents if i.acknowledged == "not acknowledged")
    blocks: list[Block] = [
        Paragraph(
            f"{len(incidents)} alarm(s) raised, {unacknowledged} never acknowledged",
            "warn" if unacknowledged else "",
        ),
        Table(
            ("raised", "h", "rule", "channel", "priority", "acknowledged", "shelved", "normal"),
            summary,
            caption="Alarms and how they were handled",
            empty="no alarm raised",
        ),
        Table(
            ("time", "h", "rule", "priority", "state", "channel", "value", "by", "message"),
            rows,
            caption="Alarm life cycle (raise, acknowledge, shelve, clear)",
            empty="no alarm events",
        ),
    ]
    if len(events) > MAX_ALARM_ROWS:
        blocks.append(Paragraph(f"{len(events) - MAX_ALARM_ROWS} later alarm events not shown"))
    return Section("alarms", "Alarms and their handling", blocks)


def _deviations(data: BatchData) -> Section:
    deviations = data.notebook.deviations
    rows = tuple(
        (
            str(d.id),
            str(d.level),
            d.category,
            d.title,
            when(d.started_at),
            _plain(d.status),
            d.reported_by,
            f"{d.reviewed_by} {when(d.reviewed_at)}" if d.reviewed_by else "not reviewed",
            d.impact or "—",
            d.corrective_action or "—",
        )
        for d in deviations
    )
    counts = {level: sum(1 for d in deviations if d.level == level) for level in (1, 2, 3)}
    open_major = [d for d in deviations if d.level >= 2 and _plain(d.status) == "open"]
    blocks: list[Block] = [
        Paragraph(
            f"Level 1: {counts[1]} · level 2: {counts[2]} · level 3: {counts[3]}",
            "bad" if counts[3] else "",
        ),
        Table(
            (
                "id",
                "level",
                "category",
                "title",
                "started",
                "state",
                "reported by",
                "reviewed",
                "impact",
                "corrective action",
            ),
            rows,
        ),
    ]
    if open_major:
        blocks.append(
            Paragraph(f"{len(open_major)} level 2/3 deviation(s) not yet reviewed", "warn")
        )
    return Section("deviations", "Deviations", blocks)


def _changes_and_notes(data: BatchData) -> Section:
    changes = tuple(
        (
            when(c.planned_at),
            c.parameter,
            f"{c.old_value} → {c.new_value}",
            c.reason or "—",
            c.requested_by,
            f"{c.approved_by} {when(c.approved_at)}" if c.approved_by else "not approved",
        )
        for c in data.notebook.process_changes
    )
    notes = tuple((when(n.created_at), n.author, n.text) for n in data.notebook.notes)
    return Section(
        "notes",
        "Process changes and notes",
        [
            Table(
                ("planned", "parameter", "change", "reason", "requested by", "approved"),
                changes,
                caption="Process changes",
            ),
            Table(("time", "author", "note"), notes, caption="Notes"),
        ],
    )


def _closure(data: BatchData) -> Section:
    closure = data.notebook.closure
    if closure is None:
        return Section(
            "closure", "Batch closure", [Paragraph("the batch is not closed yet", "warn")]
        )
    rows = (
        ("Closed", when(closure.closed_at)),
        ("Outcome", closure.outcome),
        ("Final OD600", num(closure.final_od600, 4)),
        ("Final DCW", f"{num(closure.final_dcw_g_per_l, 4)} g/L"),
        ("Harvest volume", f"{num(closure.harvest_volume_ml, 5)} mL"),
        ("Runtime", f"{num(closure.runtime_h, 4)} h"),
        ("Glycerol depletion", f"{num(closure.depletion_time_h, 4)} h"),
        ("DO spike", f"{num(closure.do_spike_time_h, 4)} h"),
        ("Base used", f"{num(closure.base_used_ml, 4)} mL"),
        ("Harvest", closure.harvest or "—"),
        ("Missing samples reason", closure.missing_samples_reason or "—"),
        (
            "Signed off",
            f"{closure.signed_off_by} {when(closure.signed_off_at)}"
            if closure.signed_off_by
            else "not signed off",
        ),
    )
    return Section("closure", "Batch closure", [KeyValues(rows)])


def _acceptance(view: AcceptanceView) -> Section:
    blocks: list[Block] = []
    evaluation = view.evaluation
    if evaluation is None:
        blocks.append(Paragraph(view.problem or "acceptance not evaluated", "warn"))
    else:
        tone = {"pass": "good", "fail": "bad"}.get(evaluation.verdict, "warn")
        blocks.append(
            Paragraph(
                f"Automatic verdict: {evaluation.verdict.upper()} "
                f"(evaluated {when(evaluation.evaluated_at)})",
                tone,
            )
        )
        blocks.append(
            Table(
                ("#", "criterion", "result", "evidence"),
                tuple(
                    (str(c.number), c.name, mark(c.passed), "; ".join(c.evidence))
                    for c in evaluation.criteria
                ),
            )
        )
    decision = view.decision
    if decision is None:
        blocks.append(Paragraph("No supervisor decision recorded yet."))
    else:
        tone = "good" if decision.decision == "accept" else "bad"
        blocks.append(
            Paragraph(
                f"Supervisor decision: {decision.decision.upper()} by {decision.decided_by} "
                f"on {when(decision.decided_at)} (verdict then: {decision.verdict}). "
                f"Reason: {decision.reason or '—'}",
                tone,
            )
        )
    return Section("acceptance", "Acceptance for training", blocks)


def _audit(data: BatchData) -> Section:
    audit = data.notebook.audit
    chain = (
        "verified: every entry's hash matches"
        if audit.chain_ok
        else f"BROKEN at {audit.chain_problem}"
    )
    blocks: list[Block] = [
        KeyValues(
            (
                ("Entries about this batch", str(audit.entries)),
                ("First", when(audit.first)),
                ("Last", when(audit.last)),
                ("By", ", ".join(f"{actor} ({n})" for actor, n in audit.by_actor.items()) or "—"),
                ("Audit chain", chain),
            )
        ),
        Table(
            ("table", "inserts", "updates", "deletes"),
            tuple(
                (table, str(c.get("insert", 0)), str(c.get("update", 0)), str(c.get("delete", 0)))
                for table, c in audit.by_table.items()
            ),
            caption="Entries by table",
        ),
        Table(
            ("time", "actor", "action", "table", "record", "fields changed"),
            tuple(
                (when(c.at), c.actor, c.action, c.table, c.record_id, ", ".join(c.fields) or "—")
                for c in audit.changes[:MAX_AUDIT_CHANGES]
            ),
            caption="Changes after entry (updates and deletes)",
            empty="no record was changed after it was entered",
        ),
    ]
    if not audit.chain_ok:
        blocks.insert(
            0, Paragraph(f"The audit chain does not verify: {audit.chain_problem}", "bad")
        )
    if len(audit.changes) > MAX_AUDIT_CHANGES:
        blocks.append(
            Paragraph(f"{len(audit.changes) - MAX_AUDIT_CHANGES} later changes not shown")
        )
    return Section("audit", "Audit summary", blocks)


def _completeness(data: BatchData) -> Section:
    readings = data.series.readings
    rows = []
    for name, missing in data.series.dropout_pct.items():
        values = readings[name].to_numpy(dtype=float) if name in readings.columns else np.array([])
        finite = values[np.isfinite(values)]
        unit = data.series.units.get(name) or CHANNELS_BY_NAME[name].unit
        rows.append(
            (
                name,
                unit,
                str(len(finite)),
                f"{missing:.2f} %",
                num(float(np.min(finite)), 4) if len(finite) else "—",
                num(float(np.max(finite)), 4) if len(finite) else "—",
            )
        )
    return Section(
        "data",
        "Data completeness",
        [
            Table(
                ("channel", "unit", "readings", "missing", "min", "max"),
                tuple(rows),
                empty="no sensor channel stored",
            )
        ],
    )
