"""Model versions for the API: the cards of the shipped and the user's registry (twin.registry).

Only the cards and the promotion history are read, never the models: listing stays cheap and a
damaged card is reported under ``problems`` instead of failing the whole answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from bptwin.tui.api.schemas import ModelRegistryOut, ModelVersionOut, PromotionOut
from bptwin.twin.registry import CARD_FILE, ModelError, Registry, read_card


def model_registry_listing(registries: Iterable[tuple[str, Registry]]) -> ModelRegistryOut:
    versions: list[ModelVersionOut] = []
    promotions: list[PromotionOut] = []
    problems: list[str] = []
    for name, registry in registries:
        try:
            current = registry.current_version()
            for version in registry.versions():
                try:
                    card = read_card(registry.folder(version) / CARD_FILE)
                except ModelError as exc:
                    problems.append(f"{name} registry: {exc}")
                    continue
                mre = card.holdout_mre
                versions.append(
                    ModelVersionOut(
                        version=card.version,
                        registry=name,
                        current=version == current,
                        created=card.created,
                        target=card.target,
                        label=card.label,
                        training_batches=list(card.training_batches),
                        holdout_batches=list(card.holdout_batches),
                        holdout_mre=mre if math.isfinite(mre) else None,
                        data_fingerprint=card.data_fingerprint,
                        pipeline_fingerprint=card.pipeline_fingerprint,
                        notes=card.notes,
                    )
                )
            promotions.extend(
                PromotionOut(
                    registry=name,
                    version=step.version,
                    previous=step.previous,
                    when=step.when,
                    reason=step.reason,
                )
                for step in registry.history()
            )
        except (ModelError, OSError, ValueError) as exc:
            problems.append(f"{name} registry {registry.root}: {exc}")
    return ModelRegistryOut(versions=versions, promotions=promotions, problems=problems)
