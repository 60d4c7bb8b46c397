"""What a batch is set up with before it starts: the medium made up for it and its one inoculum
(with the go/no-go against the OD600 window). No UI code here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import col

from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import Deviation, Inoculum, MediaPreparation
from bptwin.eln.sample_math import DILUTION_RANGE, INOCULUM_OD600_RANGE, OD_RAW_RANGE
from bptwin.eln.unit_of_work import AggregateService, find_batch, of_batch, row_id


class PreparationService(AggregateService):
    """Media preparations and inocula of batches."""

    def record_media_preparation(
        self,
        actor: str,
        number: int,
        *,
        recipe: Mapping[str, float],
        autoclave_cycle: str = "",
        sterility_ok: bool | None = None,
        prepared_at: datetime | None = None,
        notes: str = "",
    ) -> MediaPreparation:
        """The medium made up for a batch: recipe amounts (name -> amount), autoclave cycle."""
        if not isinstance(recipe, Mapping) or not recipe:
            raise NotebookValidationError("recipe", "the recipe needs at least one ingredient")
        amounts = {
            check.text("ingredient", name, max_length=64, required=True): check.number(
                f"amount of {name}", amount, minimum=0.0
            )
            for name, amount in recipe.items()
        }
        record = MediaPreparation(
            recipe=amounts,
            autoclave_cycle=check.identifier("autoclave cycle", autoclave_cycle),
            sterility_ok=sterility_ok,
            prepared_at=check.moment("preparation time", prepared_at, now=self.unit.now()),
            prepared_by=actor,
            notes=check.text("notes", notes),
        )
        return self.unit.add_to_batch(actor, number, record)

    def list_media_preparations(self, number: int) -> list[MediaPreparation]:
        """The media made up for a batch, oldest first."""
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return list(
                session.exec(
                    of_batch(MediaPreparation, batch).order_by(
                        col(MediaPreparation.prepared_at), col(MediaPreparation.id)
                    )
                )
            )

    def record_inoculum(
        self,
        actor: str,
        number: int,
        *,
        od600_raw: check.NumberInput,
        dilution: check.NumberInput = 1.0,
        volume_ml: check.NumberInput,
        microscopy_clean: bool,
        notes: str = "",
        out_of_spec_reason: str | None = None,
    ) -> Inoculum:
        """The batch's one inoculum. Out of 2.0-6.0 OD600 or unclean it is refused, unless
        ``out_of_spec_reason`` is given: then it is stored as no-go with a level-3 deviation."""
        raw = check.number(
            "inoculum OD600 reading", od600_raw, minimum=0.0, maximum=OD_RAW_RANGE[1]
        )
        factor = check.number(
            "dilution", dilution, minimum=DILUTION_RANGE[0], maximum=DILUTION_RANGE[1]
        )
        volume = check.number(
            "inoculum volume",
            volume_ml,
            minimum=0.0,
            maximum=5000.0,
            unit="mL",
            exclusive_minimum=True,
        )
        assert raw is not None and factor is not None and volume is not None
        od600 = raw * factor
        low, high = INOCULUM_OD600_RANGE
        problems = []
        if not low <= od600 <= high:
            problems.append(f"inoculum OD600 {od600:.3g} is outside {low:.1f}-{high:.1f}")
        if not microscopy_clean:
            problems.append("inoculum microscopy is not clean")
        reason = check.text("out-of-spec reason", out_of_spec_reason) or None
        if problems and reason is None:
            raise NotebookValidationError("inoculum", "; ".join(problems))
        inoculum = Inoculum(
            od600_raw=raw,
            dilution=factor,
            od600=od600,
            volume_ml=volume,
            microscopy_clean=bool(microscopy_clean),
            go=not problems,
            notes=check.text("notes", notes),
            recorded_by=actor,
            recorded_at=self.unit.now(),
        )
        with self.unit.write(actor) as session:
            batch = find_batch(session, number)
            if session.exec(of_batch(Inoculum, batch)).first():
                raise NotebookValidationError(
                    "inoculum", f"batch {batch.number} already has its inoculum recorded"
                )
            inoculum.batch_id = row_id(batch)
            session.add(inoculum)
            if problems:
                session.add(
                    Deviation(
                        batch_id=row_id(batch),
                        level=3,
                        category="inoculum",
                        title="Inoculum out of spec",
                        description="; ".join(problems),
                        impact=reason or "",
                        started_at=self.unit.now(),
                        reported_by=actor,
                    )
                )
        return inoculum

    def get_inoculum(self, number: int) -> Inoculum | None:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return session.exec(of_batch(Inoculum, batch)).first()
