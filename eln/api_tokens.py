"""Tokens of the read-only HTTP API: created and revoked by a supervisor, audited, stored hashed.

A token is ``bptwin_`` followed by 43 random URL-safe characters (256 bits from ``secrets``). It
is shown once, when it is made; the notebook keeps only its SHA-256 and its first characters (so
a list can tell tokens apart). A plain hash is enough here, unlike a PIN: nobody can search a
256-bit random space, so the hash gives nothing away and one lookup checks a request quickly.

``ApiToken`` lives on the notebook's metadata (eln.models imports this module) and is audited
like every notebook table: creating and revoking a token are entries of the audit trail in the
supervisor's name. Created by migration 0007.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String
from sqlmodel import Field, col, select

from bptwin.eln import form_rules as check
from bptwin.eln import models
from bptwin.eln.columns import UTCDateTime, utc_now
from bptwin.eln.errors import NotebookNotFoundError, NotebookPermissionError
from bptwin.eln.models import LABEL_LENGTH, NAME_LENGTH, AuditedTable, OperatorRole
from bptwin.eln.operators import OperatorService
from bptwin.eln.records import view_of
from bptwin.eln.unit_of_work import AggregateService, where

TOKEN_PREFIX = "bptwin_"
TOKEN_RANDOM_BYTES = 32
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
MAX_TOKEN_LENGTH = 128  # anything longer presented as a token is refused without a lookup


class ApiToken(AuditedTable, table=True):
    """One API token: who made it, what for, whether it is revoked; never the token itself."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(default="", sa_type=String(LABEL_LENGTH), nullable=False)
    token_hash: str = Field(sa_type=String(64), nullable=False, unique=True)
    shown_prefix: str = Field(sa_type=String(16), nullable=False)
    created_by: str = Field(
        sa_type=String(NAME_LENGTH), foreign_key="operator.name", nullable=False, index=True
    )
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime(), nullable=False)
    revoked_by: str | None = Field(
        default=None, sa_type=String(NAME_LENGTH), foreign_key="operator.name", nullable=True
    )
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime(), nullable=True)


@dataclass(frozen=True, slots=True)
class ApiTokenView:
    """A token's record without its hash: what ``bptwin api token list`` shows."""

    id: int | None
    label: str
    shown_prefix: str
    created_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewApiToken:
    """A token just made: the secret (shown once, then only its hash exists) and its record."""

    secret: str
    record: ApiTokenView


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiTokenService(AggregateService):
    """Create, revoke, list and check API tokens (a supervisor's name and PIN for changes)."""

    def create_token(self, supervisor: str, pin: str, label: str) -> NewApiToken:
        """A new token for ``label`` (who or what will use it), audited as ``supervisor``."""
        label = check.text("label", label, max_length=LABEL_LENGTH, required=True)
        name = self._supervisor(supervisor, pin)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)
        row = ApiToken(
            label=label,
            token_hash=token_hash(secret),
            shown_prefix=secret[:SHOWN_PREFIX_LENGTH],
            created_by=name,
            created_at=self.unit.now(),
        )
        with self.unit.write(name, supervisor=True) as session:
            session.add(row)
        return NewApiToken(secret, view_of(ApiTokenView, row))

    def revoke_token(self, supervisor: str, pin: str, token_id: int) -> ApiTokenView:
        """Revoke token ``token_id`` at once; revoking it again is refused (nothing to do)."""
        name = self._supervisor(supervisor, pin)
        with self.unit.write(name, supervisor=True) as session:
            row = session.get(ApiToken, token_id)
            if row is None:
                raise NotebookNotFoundError("token", f"there is no API token {token_id}")
            if row.revoked_at is not None:
                raise NotebookNotFoundError(
                    "token", f"API token {token_id} was already revoked by {row.revoked_by}"
                )
            row.revoked_by = name
            row.revoked_at = self.unit.now()
        return view_of(ApiTokenView, row)

    def list_tokens(self, supervisor: str, pin: str) -> list[ApiTokenView]:
        """Every token ever made, oldest first (revoked ones stay, for the record)."""
        self._supervisor(supervisor, pin)
        with self.unit.read() as session:
            rows = session.exec(select(ApiToken).order_by(col(ApiToken.id))).all()
        return [view_of(ApiTokenView, row) for row in rows]

    def active_token(self, secret: str) -> ApiTokenView | None:
        """The record of ``secret`` when it is a token that is not revoked, else None."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
            return None
        statement = where(select(ApiToken), col(ApiToken.token_hash) == token_hash(secret))
        with self.unit.read() as session:
            row = session.exec(statement).first()
        if row is None or row.revoked_at is not None:
            return None
        return view_of(ApiTokenView, row)

    def _supervisor(self, name: str, pin: str) -> str:
        """``name`` when it is an active supervisor whose PIN is ``pin``; one message else."""
        operator = OperatorService(self.unit).get_operator(name) if isinstance(name, str) else None
        if (
            operator is None
            or not OperatorService(self.unit).check_pin(name, pin)
            or operator.role != OperatorRole.SUPERVISOR
        ):
            raise NotebookPermissionError("unknown supervisor or wrong PIN")
        return operator.name


# Every notebook table is audited; eln.models keeps the list (see test_audit).
if ApiToken not in models.AUDITED_TABLES:
    models.AUDITED_TABLES = (*models.AUDITED_TABLES, ApiToken)
