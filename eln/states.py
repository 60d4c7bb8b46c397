"""The notebook's vocabulary: roles, campaign phases and the states of batches, deviations and
decisions. Plain enums (stored as their string values), usable without the database."""

from __future__ import annotations

from enum import Enum


class OperatorRole(str, Enum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"


class CampaignPhase(str, Enum):
    A = "A"  # shakedown
    B = "B"  # training batches
    C = "C"  # hold-out, never used for training


class BatchStatus(str, Enum):
    SETUP = "setup"
    RUNNING = "running"
    COMPLETE = "complete"
    ABORTED = "aborted"


class DeviationStatus(str, Enum):
    OPEN = "open"
    REVIEWED = "reviewed"
    CLOSED = "closed"


class AcceptanceDecision(str, Enum):
    ACCEPT = "accept"  # the batch enters the training-set registry
    REJECT = "reject"


class SignatureMeaning(str, Enum):
    """What a signer means by an electronic signature (printed with it)."""

    REVIEWED = "reviewed"
    APPROVED = "approved"
    CLOSED = "closed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AuditAction(str, Enum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
