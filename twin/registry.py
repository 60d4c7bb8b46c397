"""Versioned OD600 model artifacts: ``<root>/<version>/model.txt`` + ``card.json``.

The registry root holds one folder per version, a ``CURRENT`` file naming the version in
service and ``HISTORY.json``, an append-only record of every promotion and every restore in
order, each with its time and actor (replaying it gives the models that were in service, which is
what :meth:`Registry.restore_previous` steps back through). A model is only promoted when it beats
the current one on the hold-out MRE (or when forced, which the history records).

The shipped default lives in the repository's ``models/`` folder; a user's own trained models
go to ``<data_dir>/models`` (see :func:`resolve_model_path`).
"""

from __future__ import annotations

import getpass
import json
import math
import os
import platform
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bptwin.twin.metrics import json_safe

if TYPE_CHECKING:
    import lightgbm

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MODEL_FILE = "model.txt"
FALLBACK_FILE = "fallback.txt"
CARD_FILE = "card.json"
CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY.json"
CARD_FORMAT = "bptwin-model-card"
CARD_FORMAT_VERSION = 1
TARGET_LOG_OD600 = "log_od600"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
LIBRARIES = ("lightgbm", "optuna", "numpy", "pandas", "pyarrow")
# Modules whose code decides the feature values: a model trained on other code may see other
# numbers under the same feature names (skew the name check cannot catch).
PIPELINE_MODULES = ("cleaning.py", "offgas.py", "units.py", "windows.py", "features.py")


class ModelError(Exception):
    """A model that cannot be loaded or used; the message says which file and why."""


class FeatureMismatchError(ModelError):
    """The model was trained on other features (or another order) than the pipeline makes."""


@dataclass
class ModelCard:
    """What a model is, what it was trained on and how well it did (stored as card.json)."""

    version: str
    feature_names: list[str]
    target: str = TARGET_LOG_OD600
    label: str = "samples"
    label_method: str = ""
    training_batches: list[int] = field(default_factory=list)
    # batch number → batch identity (dataset.batch_identity): recognises a training batch in
    # any dataset, whatever number it has there.
    training_batch_ids: dict[str, str] = field(default_factory=dict)
    holdout_batches: list[int] = field(default_factory=list)
    data_fingerprint: str = ""
    pipeline_fingerprint: str = ""
    dataset: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 0
    interval: dict[str, float] = field(default_factory=dict)  # log-residual quantiles
    fallback: dict[str, Any] | None = None  # model used when a sensor is lost
    metrics: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    created: str = ""
    notes: str = ""
    # Set by the registry at promotion: earlier promotions chosen on the same hold-out.
    promotion: dict[str, Any] = field(default_factory=dict)
    # Decile bins of every feature over the training windows (twin/drift.py: drift watch).
    feature_reference: dict[str, Any] = field(default_factory=dict)
    format: str = CARD_FORMAT
    format_version: int = CARD_FORMAT_VERSION

    @property
    def holdout_mre(self) -> float:
        value = self.metrics.get("holdout", {}).get("mre_mean")
        return float(value) if isinstance(value, int | float) else math.nan

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "card") -> ModelCard:
        if data.get("format") != CARD_FORMAT:
            raise ModelError(f"{where} is not a bptwin model card (format {data.get('format')!r})")
        if data.get("format_version") != CARD_FORMAT_VERSION:
            raise ModelError(f"{where}: card format_version {data.get('format_version')!r} unknown")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"{where} lacks a required field: {exc}") from None


def pipeline_fingerprint() -> str:
    """sha256 over the code of the feature pipeline's modules (see PIPELINE_MODULES).

    Hashes each module's syntax tree without docstrings, so editing a comment or a docstring
    does not make the shipped model "another version"; any change to the code does.
    """
    import ast
    import hashlib

    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in PIPELINE_MODULES:
        tree = ast.parse((folder / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        digest.update(name.encode())
        digest.update(ast.dump(tree, include_attributes=False).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def utc_now() -> str:
    return datetime.now(tz=timezone.utc).isoformat(timespec="seconds")


def new_version_name(when: datetime | None = None) -> str:
    when = when or datetime.now(tz=timezone.utc)
    return "od600-" + when.strftime("%Y%m%d-%H%M%S")


def check_feature_names(model_features: list[str], pipeline_features: tuple[str, ...]) -> None:
    """Raise :class:`FeatureMismatchError` naming the first difference, if any."""
    if list(model_features) == list(pipeline_features):
        return
    missing = [n for n in pipeline_features if n not in model_features]
    extra = [n for n in model_features if n not in pipeline_features]
    parts = []
    if missing:
        parts.append(f"the pipeline makes {len(missing)} feature(s) the model lacks: {missing[:5]}")
    if extra:
        parts.append(f"the model expects {len(extra)} feature(s) the pipeline lacks: {extra[:5]}")
    if not parts:
        first = next(
            i
            for i, (a, b) in enumerate(zip(model_features, pipeline_features, strict=False))
            if a != b
        )
        parts.append(
            f"same features in another order (position {first}: model "
            f"{model_features[first]!r}, pipeline {pipeline_features[first]!r})"
        )
    raise FeatureMismatchError(
        "model does not match the feature pipeline: "
        + "; ".join(parts)
        + ". Retrain it with 'bptwin train' on this version of bptwin."
    )


class ModelArtifact:
    """A loaded model: the LightGBM booster and its card."""

    def __init__(
        self,
        booster: lightgbm.Booster,
        card: ModelCard,
        path: Path | None = None,
        fallback: lightgbm.Booster | None = None,
    ):
        self.booster = booster
        self.card = card
        self.path = path
        self.fallback = fallback if card.fallback else None
        triggers = (card.fallback or {}).get("trigger_features", [])
        positions = [card.feature_names.index(n) for n in triggers if n in card.feature_names]
        self.fallback_positions = np.asarray(positions, dtype=int)

    def needs_fallback(self, matrix: np.ndarray) -> np.ndarray:
        """Rows (of a 2-D feature matrix) whose lost-sensor features are missing."""
        if self.fallback is None or self.fallback_positions.size == 0:
            return np.zeros(matrix.shape[0], dtype=bool)
        rows: np.ndarray = np.isnan(matrix[:, self.fallback_positions]).any(axis=1)
        return rows

    @property
    def version(self) -> str:
        return self.card.version

    def pipeline_warning(self) -> str | None:
        """A message when the feature code changed since this model was trained, else None."""
        recorded = self.card.pipeline_fingerprint
        if not recorded or recorded == pipeline_fingerprint():
            return None
        return (
            f"model {self.version} was trained with another version of the feature pipeline "
            "(twin/features.py and friends changed): its features keep their names but may "
            "differ in value; retrain it ('make model' or 'bptwin train')"
        )

    def check_features(self, pipeline_features: tuple[str, ...] | None = None) -> None:
        if pipeline_features is None:
            from bptwin.twin.features import FEATURE_NAMES

            pipeline_features = FEATURE_NAMES
        check_feature_names(self.card.feature_names, pipeline_features)
        for booster in (self.booster, self.fallback):
            if booster is not None and list(booster.feature_name()) != self.card.feature_names:
                raise FeatureMismatchError(
                    f"model file and card disagree on the features ({self.path}): the card "
                    "was edited or belongs to another model"
                )

    def save(self, folder: Path) -> Path:
        """Write model.txt and card.json into ``folder`` (created)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE))
        if self.fallback is not None:
            self.fallback.save_model(str(folder / FALLBACK_FILE))
        (folder / CARD_FILE).write_text(self.card.to_json(), encoding="utf-8")
        self.path = folder
        return folder


def read_card(path: Path) -> ModelCard:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model card {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model card {path} must hold a JSON object")
    return ModelCard.from_dict(data, str(path))


def load_artifact(path: Path | str, *, check: bool = True) -> ModelArtifact:
    """Load a model from its folder, its card.json or its model.txt; check the features."""

    target = Path(path).expanduser()
    folder = target if target.is_dir() else target.parent
    card = read_card(folder / CARD_FILE)
    model_file = folder / MODEL_FILE
    if not model_file.is_file():
        raise ModelError(f"model file {model_file} not found (card {folder / CARD_FILE})")
    booster = _read_booster(model_file)
    fallback = None
    if card.fallback:
        fallback_file = folder / str(card.fallback.get("file", FALLBACK_FILE))
        if not fallback_file.is_file():
            raise ModelError(f"fallback model {fallback_file} named by the card is missing")
        fallback = _read_booster(fallback_file)
    artifact = ModelArtifact(booster, card, folder, fallback)
    if check:
        artifact.check_features()
    return artifact


def _read_booster(path: Path) -> lightgbm.Booster:
    import lightgbm

    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as exc:
        raise ModelError(f"model file {path} cannot be read by LightGBM: {exc}") from None


PROMOTE = "promote"
RESTORE = "restore"


@dataclass(frozen=True)
class Promotion:
    """One entry of HISTORY.json: ``version`` went into service in place of ``previous``."""

    version: str
    previous: str | None
    when: str
    reason: str
    action: str = PROMOTE  # "promote" or "restore"; entries written before restores had none
    actor: str = ""


def default_actor() -> str:
    """The user running the command, for the history when no operator is named."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container without /etc/passwd entry)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


class Registry:
    """A folder of model versions with a CURRENT pointer and a promotion history."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    def folder(self, version_name: str) -> Path:
        if not VERSION_PATTERN.match(version_name):
            raise ModelError(f"invalid model version name {version_name!r}")
        return self.root / version_name

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CARD_FILE).is_file())

    def current_version(self) -> str | None:
        pointer = self.root / CURRENT_FILE
        if not pointer.is_file():
            return None
        name = pointer.read_text(encoding="utf-8").strip()
        return name or None

    def load(self, version_name: str = "current", *, check: bool = True) -> ModelArtifact:
        if version_name == "current":
            current = self.current_version()
            if current is None:
                raise ModelError(f"no current model in {self.root} (no {CURRENT_FILE} file)")
            version_name = current
        folder = self.folder(version_name)
        if not folder.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise ModelError(f"model version {version_name!r} not in {self.root} (known: {known})")
        return load_artifact(folder, check=check)

    def add(self, artifact: ModelArtifact) -> Path:
        """Store a new version (not yet in service)."""
        folder = self.folder(artifact.version)
        if folder.exists():
            raise ModelError(f"model version {artifact.version!r} already exists in {self.root}")
        return artifact.save(folder)

    def history(self) -> list[Promotion]:
        """Every promotion and restore, oldest first."""
        path = self.root / HISTORY_FILE
        if not path.is_file():
            return []
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            history = [Promotion(**entry) for entry in entries]
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelError(f"{path} is damaged: {exc}") from None
        for entry in history:
            if entry.action not in (PROMOTE, RESTORE):
                raise ModelError(f"{path} is damaged: unknown action {entry.action!r}")
        return history

    def in_service(self) -> list[str]:
        """The models put in service and not stepped back from, oldest first (from the history)."""
        stack: list[str] = []
        for entry in self.history():
            if entry.action == PROMOTE:
                stack.append(entry.version)
            elif stack:
                stack.pop()
        return stack

    def _append(self, entry: Promotion) -> None:
        """Record ``entry`` after every earlier one, then point CURRENT at its version."""
        self.root.mkdir(parents=True, exist_ok=True)
        history = [*self.history(), entry]
        text = json.dumps([asdict(p) for p in history], indent=2) + "\n"
        _atomic_write(self.root / HISTORY_FILE, text)
        _atomic_write(self.root / CURRENT_FILE, entry.version + "\n")

    def promote(self, version_name: str, *, force: bool = False, actor: str = "") -> Promotion:
        """Put ``version_name`` in service if its hold-out MRE beats the current model's."""
        candidate = self.load(version_name, check=False).card
        current = self.current_version()
        if current == version_name:
            raise ModelError(f"model {version_name} is already in service")
        reason = "first model"
        if current is not None:
            incumbent = self.load(current, check=False).card
            new, old = candidate.holdout_mre, incumbent.holdout_mre
            if math.isfinite(new) and math.isfinite(old) and new < old:
                reason = f"hold-out MRE {100 * new:.2f} % < {100 * old:.2f} % of {current}"
            elif force:
                reason = f"forced (hold-out MRE {_pct(new)} vs {_pct(old)} of {current})"
            else:
                raise ModelError(
                    f"model {version_name} does not beat {current} on hold-out "
                    f"(MRE {_pct(new)} vs {_pct(old)}); not promoted (use --force to override)"
                )
            if candidate.holdout_batches != incumbent.holdout_batches:
                reason += (
                    f"; note: hold-out batches differ ({candidate.holdout_batches} vs "
                    f"{incumbent.holdout_batches})"
                )
        reused = self._earlier_promotions_on(candidate)
        if reused:
            reason += (
                f"; hold-out {candidate.holdout_batches} already chose {len(reused)} earlier "
                f"promotion(s) ({', '.join(reused)}): its MRE is no longer an unbiased estimate"
            )
        candidate.promotion = {
            "promoted": utc_now(),
            "holdout_batches": list(candidate.holdout_batches),
            "earlier_promotions_on_this_holdout": reused,
            "note": (
                f"the hold-out batches were used to choose {len(reused)} earlier promotion(s): "
                "a fresh hold-out is needed for an unbiased score"
                if reused
                else "first promotion chosen on this hold-out"
            ),
        }
        _atomic_write(self.folder(version_name) / CARD_FILE, candidate.to_json())
        promotion = Promotion(
            version_name, current, utc_now(), reason, PROMOTE, actor or default_actor()
        )
        self._append(promotion)
        return promotion

    def _earlier_promotions_on(self, candidate: ModelCard) -> list[str]:
        """Promoted versions whose choice used the candidate's hold-out (same data, batches)."""
        reused: list[str] = []
        for entry in self.history():
            if entry.action != PROMOTE:
                continue
            if entry.version == candidate.version or entry.version in reused:
                continue
            try:
                card = self.load(entry.version, check=False).card
            except ModelError:
                continue  # removed since: its choice still counted, but cannot be compared
            same_batches = card.holdout_batches == candidate.holdout_batches
            if same_batches and card.data_fingerprint == candidate.data_fingerprint:
                reused.append(entry.version)
        return reused

    def restore_previous(self, *, actor: str = "") -> Promotion:
        """One step back: the model that was in service before the current one.

        The restore is an entry of its own; the promotion it steps back from stays on record.
        """
        in_service = self.in_service()
        current = self.current_version()
        if len(in_service) < 2 or in_service[-1] != current:
            raise ModelError(f"no previous model to restore in {self.root}")
        previous = in_service[-2]
        if not (self.root / previous / CARD_FILE).is_file():
            raise ModelError(f"previous model {previous} is no longer in {self.root}")
        restore = Promotion(
            previous,
            current,
            utc_now(),
            f"restored in place of {current}",
            RESTORE,
            actor or default_actor(),
        )
        self._append(restore)
        return restore

    def remove(self, version_name: str) -> None:
        if version_name == self.current_version():
            raise ModelError(f"model {version_name} is in service; promote another first")
        shutil.rmtree(self.folder(version_name))


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %" if math.isfinite(value) else "unknown"


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def user_registry(data_dir: Path) -> Registry:
    return Registry(Path(data_dir).expanduser() / "models")


def resolve_model_path(configured: Path | None, data_dir: Path | None = None) -> Path:
    """The model to serve: the configured card/folder, else the user's current, else shipped."""
    if configured is not None:
        return Path(configured).expanduser()
    candidates = [user_registry(data_dir)] if data_dir is not None else []
    candidates.append(Registry(SHIPPED_MODELS_DIR))
    for registry in candidates:
        current = registry.current_version()
        if current is not None:
            return registry.folder(current)
    raise ModelError(
        f"no model configured and none shipped in {SHIPPED_MODELS_DIR}; run 'make model' "
        "or 'bptwin train'"
    )


def load_model(
    reference: Path | str | None = None, *, data_dir: Path | None = None, check: bool = True
) -> ModelArtifact:
    """Load by path (folder, card.json or model.txt), by ``"current"`` or by version name."""
    if reference is None or str(reference) == "current":
        return load_artifact(resolve_model_path(None, data_dir), check=check)
    path = Path(reference).expanduser()
    if path.exists():
        return load_artifact(path, check=check)
    for registry in ([user_registry(data_dir)] if data_dir else []) + [
        Registry(SHIPPED_MODELS_DIR)
    ]:
        if str(reference) in registry.versions():
            return registry.load(str(reference), check=check)
    raise ModelError(f"model {reference!s} not found (neither a path nor a known version)")
